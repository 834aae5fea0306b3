"""Which meshes a run ingests: the configured selection (bundled subset + extra meshes), the mesh scan
of a folder, and the per-source outcome of an ingest. The ``objects`` stage and ``dexlite ingest``
both use these."""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dexlite_core.config import ObjectConfig, SelectConfig
from dexlite_core.objects.bundled import bundled_sources
from dexlite_core.objects.source import MESH_EXTENSIONS, ObjectSource


def mesh_files(path: str | Path, label: str = "") -> list[Path]:
    """A mesh file itself, or every mesh file under a folder (sorted). Raises FileNotFoundError,
    naming `label` (the setting or argument it came from), for a path that does not exist."""
    p = Path(path)
    if p.is_dir():
        return sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower().lstrip(".") in MESH_EXTENSIONS)
    if p.is_file():
        return [p]
    raise FileNotFoundError(f"{label + ': ' if label else ''}{p} does not exist")


def scaled(sources: dict[str, ObjectSource], scales: Sequence[float]) -> dict[str, ObjectSource]:
    """Each item once per longest edge in `scales` (``<item>@<scale>``, DexGraspNet's several sizes),
    or the items as they are when `scales` is empty. An instance is normalised to its scale even at
    real size (no unit scale); its name carries the scale (readable ids), its group the object."""
    if not scales:
        return sources
    return {f"{item}@{x:g}": dataclasses.replace(s, name=f"{s.name}@{x:g}", size=float(x), unit_scale=None,
                                                 group=s.group or s.name)
            for item, s in sources.items() for x in scales}


def select_sources(select: SelectConfig, objects: ObjectConfig | None = None) -> dict[str, ObjectSource]:
    """Item name -> ObjectSource for a selection: ``bundled:<name>`` (fnmatch patterns, sorted by
    name, the first ``max_objects``) then ``mesh:<path>`` for each mesh file of ``select.meshes``;
    with ``objects.scales``, each of them once per scale (:func:`scaled`)."""
    out: dict[str, ObjectSource] = {}
    if select.bundled:
        matched = sorted((s for s in bundled_sources(n_random=select.n_random)
                          if any(fnmatch.fnmatch(s.name, p) for p in select.bundled)), key=lambda s: s.name)
        if select.max_objects > 0:
            matched = matched[: select.max_objects]
        out.update({f"bundled:{s.name}": s for s in matched})
    for m in select.meshes:
        out.update({f"mesh:{p}": ObjectSource.from_path(p) for p in mesh_files(m, "select.meshes")})
    return scaled(out, objects.scales if objects is not None else ())


def ingest_rows(sources: Sequence[ObjectSource], report: Any) -> list[dict[str, Any]]:
    """Per source (input order): name, source, ok, object_id, path, error, from an ``IngestReport``."""
    ok: dict[str, list[Any]] = {}
    bad: dict[str, list[Any]] = {}
    for r in report.ok:
        ok.setdefault(r.name, []).append(r)
    for f in report.failures:
        bad.setdefault(f.name, []).append(f)
    rows = []
    for src in sources:
        row = {"name": src.name, "source": src.describe(), "ok": False, "object_id": None, "path": None,
               "error": "no result from ingest_many"}
        if ok.get(src.name):
            r = ok[src.name].pop(0)
            row.update(ok=True, object_id=r.object_id, path=str(r.path), error=None)
        elif bad.get(src.name):
            row.update(error=bad[src.name].pop(0).reason)
        rows.append(row)
    return rows

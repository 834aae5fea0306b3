"""An ingested object on disk (one folder, see docs/CONTRACTS.md "Object folder") and its loader."""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import trimesh

from dexlite_core.objects.sdf import SDFGrid
from dexlite_core.objects.source import ObjectLoadError

SUCCESS = "_SUCCESS"
META = "meta.json"
MESH = "mesh.obj"
POINTS = "points.npy"
NORMALS = "normals.npy"
SDF = "sdf.npy"
CONVEX_DIR = "convex"
TMP_PREFIX = ".tmp-"  # build folders; never complete objects (no _SUCCESS until renamed)


class ObjectAsset:
    """A loaded object: `object_id`, `path`, `meta` (dict), `points` `(N, 3)` float32 surface
    points, `normals` `(N, 3)` float32 outward unit normals, `sdf` (:class:`SDFGrid`, CPU; use
    ``asset.sdf.to(device)``), and lazily `mesh` (normalised :class:`trimesh.Trimesh`) and
    `convex_parts` (list of convex Trimesh). `reused` is True when ingest found the folder ready.
    """

    def __init__(
        self,
        path: Path,
        meta: dict[str, Any],
        points: np.ndarray,
        normals: np.ndarray,
        sdf: SDFGrid,
        reused: bool = False,
    ) -> None:
        self.path = Path(path)
        self.meta = meta
        self.object_id: str = meta["object_id"]
        self.points = points
        self.normals = normals
        self.sdf = sdf
        self.reused = reused

    @property
    def name(self) -> str:
        return str(self.meta.get("name", self.object_id))

    @property
    def group(self) -> str:
        """The object's identity shared by all its scales (``ObjectConfig.scales``); older folders: name."""
        return str(self.meta.get("group") or self.name)

    @cached_property
    def mesh(self) -> trimesh.Trimesh:
        return _load_mesh(self.path / MESH, self.path)

    @cached_property
    def convex_parts(self) -> list[trimesh.Trimesh]:
        files = sorted((self.path / CONVEX_DIR).glob("part_*.obj"))
        if not files:
            raise ObjectLoadError(f"{self.path}: no convex parts in {CONVEX_DIR}/")
        return [_load_mesh(f, self.path) for f in files]

    @property
    def convex_paths(self) -> list[Path]:
        """Convex part files (for simulators that load meshes from disk)."""
        return sorted((self.path / CONVEX_DIR).glob("part_*.obj"))

    def __repr__(self) -> str:
        return f"ObjectAsset({self.object_id!r}, points={self.points.shape}, sdf={self.sdf.shape})"


def is_complete(path: Path) -> bool:
    """A finished object folder: not a build folder, `_SUCCESS` present."""
    p = Path(path)
    return p.is_dir() and not p.name.startswith(".") and (p / SUCCESS).is_file()


def list_objects(root: str | Path) -> list[Path]:
    """Complete object folders under `root` (sorted); build leftovers and partial folders excluded."""
    r = Path(root)
    if not r.is_dir():
        return []
    return sorted(p for p in r.iterdir() if is_complete(p))


def load_object(path: str | Path, reused: bool = False) -> ObjectAsset:
    """Load an object folder; raises :class:`ObjectLoadError` naming the folder, file and reason."""
    p = Path(path)
    if not p.exists():
        raise ObjectLoadError(f"{p}: object folder not found")
    if not p.is_dir():
        raise ObjectLoadError(f"{p}: not a folder")
    if not (p / SUCCESS).is_file():
        raise ObjectLoadError(f"{p}: incomplete object folder (no {SUCCESS}; interrupted ingest?)")
    try:
        meta = json.loads((p / META).read_text())
    except FileNotFoundError as exc:
        raise ObjectLoadError(f"{p / META}: missing") from exc
    except (OSError, ValueError) as exc:
        raise ObjectLoadError(f"{p / META}: corrupt ({exc})") from exc
    if not isinstance(meta, dict) or "object_id" not in meta or "sdf" not in meta:
        raise ObjectLoadError(f"{p / META}: corrupt (missing object_id / sdf)")
    points = _load_array(p / POINTS, ndim=2, last=3)
    normals = _load_array(p / NORMALS, ndim=2, last=3)
    if normals.shape != points.shape:
        raise ObjectLoadError(f"{p / NORMALS}: shape {normals.shape} != points {points.shape}")
    values = _load_array(p / SDF, ndim=3)
    try:
        s = meta["sdf"]
        sdf = SDFGrid(values, s["lo"], s["hi"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ObjectLoadError(f"{p / SDF}: unusable SDF ({exc})") from exc
    if not (p / MESH).is_file():
        raise ObjectLoadError(f"{p / MESH}: missing")
    return ObjectAsset(p, meta, points.astype(np.float32), normals.astype(np.float32), sdf, reused=reused)


def _load_array(f: Path, ndim: int, last: int | None = None) -> np.ndarray:
    try:
        a = np.load(f, allow_pickle=False)
    except FileNotFoundError as exc:
        raise ObjectLoadError(f"{f}: missing") from exc
    except (OSError, ValueError, EOFError) as exc:
        raise ObjectLoadError(f"{f}: corrupt ({exc})") from exc
    if a.ndim != ndim or (last is not None and a.shape[-1] != last):
        raise ObjectLoadError(f"{f}: unexpected shape {a.shape}")
    if not np.isfinite(a).all():
        raise ObjectLoadError(f"{f}: contains NaN or inf")
    return a


def _load_mesh(f: Path, folder: Path) -> trimesh.Trimesh:
    try:
        m = trimesh.load(str(f), file_type="obj", process=False, force="mesh")
    except FileNotFoundError as exc:
        raise ObjectLoadError(f"{f}: missing") from exc
    except Exception as exc:  # noqa: BLE001
        raise ObjectLoadError(f"{f}: corrupt ({type(exc).__name__}: {exc})") from exc
    if not isinstance(m, trimesh.Trimesh) or len(m.faces) == 0:
        raise ObjectLoadError(f"{f}: corrupt (no triangles)")
    return m

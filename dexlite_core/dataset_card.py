"""Statistics and a dataset card of a grasp table (``dexlite dataset stats``).

Per split (the train stage's ``split.json``: ``train`` / ``val`` / ``test`` object lists, else one
split ``all``; with a split, objects in none of its lists go to ``unassigned`` and ``all`` is the total):

- ``objects``: distinct objects, i.e. groups: an object ingested at several scales is one object of
  several instances; its group is its ``meta.json`` ``"group"`` (:func:`object_groups`), else its
  object_id; ``instances``: distinct object_ids (= objects without group information);
- ``grasps``: rows, and rows per ``source`` and ``round``;
- ``lift_success`` and ``six_dir_success`` (the lift stage's columns): ``{n, k, rate, ci95}`` with a
  95% Wilson interval (:func:`dexlite_core.stats.rate_entry`; null = not tested, left out of n);
  None when the table has no such column;
- diversity, the evaluation report's measures (:mod:`dexlite_core.report`): per-joint entropy in bits
  (20 bins) and nats (100 bins, DGTR's), DexGraspBench's PCA cumulative variance of the top 5
  components (lower = more diverse).

:func:`build_card` adds what the data is, where it came from (``provenance``, given by the caller:
the generating stage, config digest, run) and the schema; :func:`render_markdown` and
:func:`write_card` write ``dataset_card.json`` and ``dataset_card.md``. Plain pyarrow/pandas/numpy.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from .atomic import atomic_write_text, json_default
from .hand.asset import POSE_DIM
from .report import joint_entropy, joint_entropy_nats, pca_cumvar
from .splits import group_of, read_groups
from .stats import format_rate, rate_entry

CARD_FORMAT = "dexlite.dataset_card/1"
CARD_JSON = "dataset_card.json"
CARD_MD = "dataset_card.md"
SPLIT_ORDER: tuple[str, ...] = ("train", "val", "test")
ALL = "all"
UNASSIGNED = "unassigned"
RATE_COLUMNS: tuple[str, ...] = ("lift_success", "six_dir_success")
DIVERSITY: dict[str, str] = {
    "diversity_joint_entropy_bits": "mean per-joint entropy of the 22 joint angles, 20 bins over each "
                                    "joint's range, bits (higher = more diverse; DexGraspNet)",
    "diversity_joint_entropy_nats": "the same with 100 bins, nats (DGTR / DexGraspNet evaluator)",
    "diversity_pca_cumvar5": "cumulative explained variance of the top 5 principal components of "
                             "[t, axis-angle, joints] (lower = more diverse; DexGraspBench)",
}
DESCRIPTION = (
    "Shadow Hand grasps synthesised by DexLite, one row per grasp: the object (object_id, an object "
    "folder), the pose q = [t (3), euler sxyz (3), 22 joints in DexGraspNet order] of the palm frame "
    "in the object frame (metres, radians), the source that produced it (seed energy optimisation, "
    "CVAE samples raw / expanded / post-optimised), and the MuJoCo lift test's verdicts: "
    "lift_success (lifted and held), six_dir_success (held against pushes in six directions)."
)


def object_groups(objects_root: str | Path, object_ids: Sequence[str]) -> dict[str, str] | None:
    """object_id -> group (:func:`dexlite_core.splits.read_groups`: ``meta.json`` ``"group"`` of
    ``<objects_root>/<object_id>/``, else the object_id); None when ``objects_root`` is not a folder."""
    root = Path(objects_root)
    return read_groups(root, object_ids) if root.is_dir() else None


def _columns(table: pa.Table | pd.DataFrame) -> tuple[np.ndarray, dict[str, pd.Series], np.ndarray | None]:
    """(object ids (N,) object array, other columns of interest as Series, poses (N, 28) or None)."""
    if isinstance(table, pa.Table):
        names = table.column_names
        ids = np.asarray(table.column("object_id").to_pylist(), dtype=object)
        cols = {c: table.column(c).to_pandas() for c in (*RATE_COLUMNS, "source", "round") if c in names}
        q = None
        if "q" in names:
            col = table.column("q")
            if table.num_rows == 0:
                q = np.zeros((0, POSE_DIM), np.float64)
            elif pa.types.is_fixed_size_list(col.type):
                q = np.asarray(col.combine_chunks().flatten().to_numpy(zero_copy_only=False),
                               np.float64).reshape(-1, POSE_DIM)
            else:
                q = np.asarray(col.to_pylist(), dtype=np.float64).reshape(-1, POSE_DIM)
    else:
        ids = np.asarray(table["object_id"].astype(str).to_numpy(), dtype=object)
        cols = {c: table[c].reset_index(drop=True) for c in (*RATE_COLUMNS, "source", "round") if c in table}
        q = None
        if "q" in table:
            q = (np.stack([np.asarray(x, np.float64) for x in table["q"]]) if len(table)
                 else np.zeros((0, POSE_DIM), np.float64))
    return ids, cols, q


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def _counts(s: pd.Series) -> dict[str, int]:
    """Rows per value (rounds as integers), sorted; nulls left out."""
    out: dict[str, int] = {}
    for v in s.dropna().tolist():
        key = str(int(v)) if isinstance(v, (int, float, np.number)) else str(v)
        out[key] = out.get(key, 0) + 1
    return dict(sorted(out.items(), key=lambda kv: (len(kv[0]), kv[0]) if kv[0].isdigit() else (0, kv[0])))


def _stats(mask: np.ndarray, ids: np.ndarray, groups: Mapping[str, str], cols: Mapping[str, pd.Series],
           q: np.ndarray | None) -> dict[str, Any]:
    sel = ids[mask]
    instances = set(sel.tolist())
    out: dict[str, Any] = {
        "objects": len({group_of(o, groups) for o in instances}),
        "instances": len(instances),
        "grasps": int(mask.sum()),
    }
    for c in RATE_COLUMNS:
        out[c] = rate_entry(cols[c][mask].astype(object).to_numpy()) if c in cols else None
    sub = None if q is None else q[mask]
    out["diversity_joint_entropy_bits"] = None if sub is None or not len(sub) else _finite(joint_entropy(sub))
    out["diversity_joint_entropy_nats"] = None if sub is None or not len(sub) else _finite(joint_entropy_nats(sub))
    out["diversity_pca_cumvar5"] = None if sub is None else _finite(pca_cumvar(sub))
    out["sources"] = _counts(cols["source"][mask]) if "source" in cols else {}
    out["rounds"] = _counts(cols["round"][mask]) if "round" in cols else {}
    return out


def split_of(object_ids: Sequence[str], split: Mapping[str, Sequence[str]] | None,
                  groups: Mapping[str, str] | None = None) -> dict[str, str]:
    """object_id -> split name: the first split (train, val, test, then the others in order) listing
    the object_id or its group; :data:`UNASSIGNED` when none does; :data:`ALL` without a split."""
    if split is None:
        return {o: ALL for o in object_ids}
    names = [s for s in SPLIT_ORDER if s in split] + [s for s in split if s not in SPLIT_ORDER]
    member = {s: set(map(str, split[s])) for s in names}
    groups = groups or {}
    out = {}
    for o in object_ids:
        g = group_of(o, groups)
        out[o] = next((s for s in names if o in member[s] or g in member[s]), UNASSIGNED)
    return out


def split_stats(table: pa.Table | pd.DataFrame, split: Mapping[str, Sequence[str]] | None = None,
                groups: Mapping[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """Split name -> its figures (module docstring), in the order train, val, test (those the split
    names), its other lists (e.g. ``unused``, when they hold rows), unassigned (when some object is),
    all. ``split``: split name -> object ids (or groups); ``groups``: object_id -> group (missing ids
    are their own group)."""
    ids, cols, q = _columns(table)
    groups = dict(groups or {})
    unique = sorted(set(ids.tolist()))
    where = split_of(unique, split, groups)
    row_split = np.asarray([where[o] for o in ids.tolist()], dtype=object)
    names: list[str] = []
    if split is not None:  # train / val / test as the split file has them; other lists when they hold rows
        used = set(where.values())
        names = [s for s in SPLIT_ORDER if s in split] + [s for s in split if s not in SPLIT_ORDER and s in used]
        if UNASSIGNED in used:
            names.append(UNASSIGNED)
    out = {s: _stats(row_split == s, ids, groups, cols, q) for s in names}
    out[ALL] = _stats(np.ones(len(ids), bool), ids, groups, cols, q)
    return out


def schema_info(schema: pa.Schema) -> dict[str, Any]:
    """Columns (name, type, nullable) and the ``dexlite.*`` metadata of a grasp table's schema."""
    meta: dict[str, Any] = {}
    for k, v in (schema.metadata or {}).items():
        key = k.decode("utf-8", "replace")
        if not key.startswith("dexlite."):
            continue
        text = v.decode("utf-8", "replace")
        try:
            meta[key] = json.loads(text) if text[:1] in "[{" else text
        except ValueError:
            meta[key] = text
    return {"columns": [{"name": f.name, "type": str(f.type), "nullable": f.nullable} for f in schema],
            "metadata": meta}


def build_card(
    table: pa.Table | pd.DataFrame,
    split: Mapping[str, Sequence[str]] | None = None,
    groups: Mapping[str, str] | None = None,
    *,
    file: str | None = None,
    provenance: Mapping[str, Any] | None = None,
    schema: pa.Schema | None = None,
    split_from: str | None = None,
    groups_from: str | None = None,
) -> dict[str, Any]:
    """The dataset card (JSON-able, no NaN): what the data is, :func:`split_stats`, totals,
    ``provenance`` (the caller's: generating stage / key / config digest / run), the schema
    (``schema``, else the table's) and where the split and the groups came from."""
    splits = split_stats(table, split, groups)
    total = splits[ALL]
    if schema is None:
        schema = table.schema if isinstance(table, pa.Table) else pa.Schema.from_pandas(table, preserve_index=False)
    return {
        "format": CARD_FORMAT,
        "name": "DexLite grasp dataset",
        "description": DESCRIPTION,
        "file": file,
        "grasps": total["grasps"],
        "objects": total["objects"],
        "instances": total["instances"],
        "splits": splits,
        "split_from": split_from,
        "groups_from": groups_from,
        "measures": {
            "objects": "distinct objects: instances sharing a meta.json group (one mesh at several scales) "
                       "count once" if groups is not None else "distinct object_ids (no group information)",
            "instances": "distinct object_ids (object folders)",
            "lift_success": "lifted and held by the MuJoCo lift test; 95% Wilson interval; n = grasps tested",
            "six_dir_success": "held against pushes along +-x, +-y, +-z; 95% Wilson interval",
            **DIVERSITY,
        },
        "provenance": dict(provenance or {}),
        "schema": schema_info(schema),
    }


def _num(v: Any, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def split_rows(card: Mapping[str, Any]) -> list[list[str]]:
    """The card's per-split figures as text cells: split, objects, instances, grasps, lift success,
    six-direction, joint entropy (bits), PCA cumulative variance (top 5)."""
    return [[name, str(s["objects"]), str(s["instances"]), str(s["grasps"]),
             format_rate(s["lift_success"]) if s["lift_success"] is not None else "(no column)",
             format_rate(s["six_dir_success"]) if s["six_dir_success"] is not None else "(no column)",
             _num(s["diversity_joint_entropy_bits"]), _num(s["diversity_pca_cumvar5"])]
            for name, s in card["splits"].items()]


SPLIT_HEADER: tuple[str, ...] = ("split", "objects", "instances", "grasps", "lift success", "six-direction",
                                 "joint entropy (bits)", "PCA cum. var. (top 5)")


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]], right: int = 1) -> list[str]:
    align = ["---" if i < right else "---:" for i in range(len(header))]
    return ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |",
            *("| " + " | ".join(r) + " |" for r in rows)]


def _groups_note(groups_from: str | None) -> str:
    return f"groups from {groups_from}" if groups_from else "no objects folder found: instances = objects"


def render_markdown(card: Mapping[str, Any]) -> str:
    """``dataset_card.md``: description, per-split table, sources, provenance, measures, schema."""
    lines = [f"# Dataset card: {card['name']}", "", card["description"], ""]
    if card.get("file"):
        lines += [f"File: `{card['file']}`", ""]
    lines += [f"**{card['grasps']} grasps** of **{card['objects']} objects** ({card['instances']} instances).", ""]
    lines += ["## Splits", ""]
    lines += _md_table(SPLIT_HEADER, split_rows(card))
    lines += ["", "Rates: percentage [95% Wilson interval] (n = grasps tested; untested grasps left out).",
              f"Split: {card.get('split_from') or 'none found (one split, all)'}.",
              f"Objects: {_groups_note(card.get('groups_from'))}.",
              ""]
    srcs = sorted({k for s in card["splits"].values() for k in s["sources"]})
    if srcs:
        lines += ["## Grasps per source", ""]
        lines += _md_table(["split", *srcs],
                           [[n, *(str(s["sources"].get(k, 0)) for k in srcs)] for n, s in card["splits"].items()])
        lines.append("")
    rounds = sorted({k for s in card["splits"].values() for k in s["rounds"]}, key=lambda r: int(r))
    if rounds:
        lines += ["## Grasps per round", ""]
        lines += _md_table(["split", *(f"round {r}" for r in rounds)],
                           [[n, *(str(s["rounds"].get(k, 0)) for k in rounds)] for n, s in card["splits"].items()])
        lines.append("")
    prov = card.get("provenance") or {}
    lines += ["## Provenance", ""]
    if prov:
        for k, v in prov.items():
            if isinstance(v, (dict, list)):
                block = json.dumps(v, indent=2, sort_keys=True).splitlines()
                lines += [f"- {k}:", "", "  ```json", *("  " + ln for ln in block), "  ```", ""]
            else:
                lines.append(f"- {k}: `{v}`")
    else:
        lines.append("- unknown (not a pipeline artifact)")
    lines += ["", "## Measures", ""]
    lines += [f"- {k}: {v}" for k, v in card["measures"].items()]
    lines += ["", "## Schema", ""]
    lines += _md_table(["column", "type", "nullable"],
                       [[f"`{c['name']}`", f"`{c['type']}`", "yes" if c["nullable"] else "no"]
                        for c in card["schema"]["columns"]], right=3)
    meta = card["schema"].get("metadata") or {}
    if meta:
        lines.append("")
        for k, v in meta.items():
            lines.append(f"- `{k}`: {', '.join(map(str, v)) if isinstance(v, list) else v}")
    return "\n".join(lines) + "\n"


def write_card(card: Mapping[str, Any], folder: str | Path) -> tuple[Path, Path]:
    """Write ``dataset_card.json`` and ``dataset_card.md`` into ``folder`` (created), atomically;
    returns their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    js, md = folder / CARD_JSON, folder / CARD_MD
    atomic_write_text(js, json.dumps(card, indent=2, allow_nan=False, default=json_default) + "\n")  # order kept
    atomic_write_text(md, render_markdown(card))
    return js, md

"""Grasp tables exported to the field's formats: :func:`export_grasps` (``dexlite export``).

Formats (:data:`EXPORT_FORMATS`; layouts under the output folder ``out``; docs/CONTRACTS.md "Exports"):

- ``dexgraspnet``: ``<out>/<object_id>.npy``, DexGraspNet's grasp file
  (:func:`storage.dexgraspnet.write_dexgraspnet_npy`; ``scale`` =
  :func:`storage.dexgraspnet.dexgraspnet_scale` of the object's ``mesh.obj``);
- ``dexgraspbench``: ``<out>/graspdata/<object_id>/<row>.npy`` + ``<out>/objects/<object_id>/``
  (:mod:`storage.dexgraspbench`);
- ``json``: ``<out>/grasps.json`` (or ``out`` itself when it ends in ``.json``): one list of records
  ``{object_id, group, scale, q, q_named, <other columns>}`` (:func:`write_grasps_json`);
- ``mjcf``: ``<out>/<object_id>.xml``, the Shadow Hand and the object with one keyframe ``grasp_<row>`` per
  grasp (:mod:`dexlite_core.sim.mjcf_export`).

``row`` is the grasp's 0-based row in the exported table. Objects come from ``objects_root/<object_id>/``
(complete object folders, docs/CONTRACTS.md); a missing one raises FileNotFoundError naming it.
"""

from __future__ import annotations

import json
import math
import os
import typing
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from dexlite_core.atomic import atomic_write_bytes, json_default
from dexlite_core.dataset import Q_TYPE, SCHEMA_METADATA
from dexlite_core.hand.asset import POSE_DIM, POSE_NAMES
from storage.dexgraspnet import table_rows

ExportFormat = Literal["dexgraspnet", "dexgraspbench", "json", "mjcf"]
EXPORT_FORMATS: tuple[ExportFormat, ...] = typing.get_args(ExportFormat)
JSON_NAME = "grasps.json"


def check_format(fmt: str) -> ExportFormat:
    """`fmt` if it names an export format, else ValueError naming it and the choices."""
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choices: {', '.join(EXPORT_FORMATS)}")
    return typing.cast(ExportFormat, fmt)


def object_folder(objects_root: str | os.PathLike[str], object_id: str) -> Path:
    """``objects_root/<object_id>`` if it is a complete object folder, else FileNotFoundError naming it."""
    folder = Path(objects_root) / object_id
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: object folder not found (object {object_id!r} of the grasp table)")
    if not (folder / "_SUCCESS").is_file():
        raise FileNotFoundError(f"{folder}: incomplete object folder (no _SUCCESS)")
    return folder


def object_meta(folder: Path) -> dict[str, Any]:
    """The object's ``meta.json`` (a dict); FileNotFoundError / ValueError naming the file."""
    path = folder / "meta.json"
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{path}: object meta not found") from e
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(meta).__name__}")
    return meta


def _json_value(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None  # NaN (and inf, which JSON cannot hold) -> null
    if isinstance(v, (list, tuple)):
        return [_json_value(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _json_value(x) for k, x in v.items()}
    return v


def json_records(table: Any, objects_root: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The records of :func:`write_grasps_json`, in table order."""
    table, ids, q = table_rows(table)
    q = q.astype(np.float32).astype(np.float64)  # the table's precision, written exactly
    metas = {oid: object_meta(object_folder(objects_root, oid)) for oid in dict.fromkeys(ids)}
    extra = {c: table.column(c).to_pylist() for c in table.column_names
             if c not in ("object_id", "q") and table.column(c).null_count < table.num_rows}  # fmt: skip
    records = []
    for i, oid in enumerate(ids):
        meta = metas[oid]
        row = q[i].tolist()
        rec: dict[str, Any] = {"object_id": str(oid), "group": meta.get("group"), "scale": meta.get("scale"),
                               "q": row, "q_named": dict(zip(POSE_NAMES, row, strict=True))}  # fmt: skip
        for c, values in extra.items():
            rec[c] = _json_value(values[i])
        records.append(rec)
    return records


def write_grasps_json(table: Any, objects_root: str | os.PathLike[str], path: str | os.PathLike[str]) -> Path:
    """One JSON file (atomically): a list of records, one per row in table order, ``{object_id, group,
    scale, q, q_named, ...}``: ``group`` / ``scale`` from the object's meta.json (scale: its longest bbox
    edge in metres, null at real size), ``q`` the 28 floats of the pose (float32 values written exactly),
    ``q_named`` the same keyed by :data:`~dexlite_core.hand.asset.POSE_NAMES`, then every other column
    of the table that holds a value in some row (NaN / inf / missing -> null)."""
    text = json.dumps(json_records(table, objects_root), indent=1, allow_nan=False, default=json_default)
    return atomic_write_bytes(path, (text + "\n").encode())


def read_grasps_json(path: str | os.PathLike[str]) -> pa.Table:
    """A file :func:`write_grasps_json` wrote, as a pyarrow table: ``object_id`` (string), ``q``
    (fixed_size_list<float32>[28]), then the records' other keys (``q_named`` dropped; nulls stay
    null), with DexLite's schema metadata. FileNotFoundError / ValueError naming the file and record."""
    name = os.fspath(path)
    try:
        records = json.loads(Path(name).read_text())
    except FileNotFoundError as e:
        raise FileNotFoundError(f"grasp JSON file not found: {name}") from e
    except (json.JSONDecodeError, UnicodeDecodeError, IsADirectoryError) as e:
        raise ValueError(f"{name}: not a JSON file ({e})") from e
    if not isinstance(records, list):
        raise ValueError(f"{name}: expected a list of grasp records, got {type(records).__name__}")
    ids, q = [], np.zeros((len(records), POSE_DIM), dtype=np.float32)
    columns: dict[str, list[Any]] = {}
    for i, rec in enumerate(records):
        if not isinstance(rec, dict) or not isinstance(rec.get("object_id"), str) or not rec["object_id"]:
            raise ValueError(f"{name} record {i}: expected an object with a non-empty string 'object_id'")
        try:
            qi = np.asarray(rec.get("q"), dtype=np.float64)
        except (TypeError, ValueError):
            qi = np.zeros(0)
        if qi.shape != (POSE_DIM,) or not np.isfinite(qi).all():
            raise ValueError(f"{name} record {i} (object {rec['object_id']!r}): 'q' must be {POSE_DIM} finite numbers")
        ids.append(rec["object_id"])
        q[i] = qi
        for k in rec:
            if k not in ("object_id", "q", "q_named") and k not in columns:
                columns[k] = [None] * len(records)
        for k in columns:
            columns[k][i] = rec.get(k)
    arrays = [pa.array(ids, type=pa.string()),
              pa.FixedSizeListArray.from_arrays(pa.array(q.reshape(-1), type=pa.float32()), type=Q_TYPE)]
    names = ["object_id", "q"]
    for k, values in columns.items():
        try:
            arrays.append(pa.array(values))
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
            raise ValueError(f"{name}: key {k!r} mixes value types across records ({e})") from e
        names.append(k)
    return pa.Table.from_arrays(arrays, names=names).replace_schema_metadata(SCHEMA_METADATA)


def _by_object(ids: np.ndarray) -> dict[str, np.ndarray]:
    """Row indices per object id, objects in order of first appearance."""
    return {str(oid): np.flatnonzero(ids == oid) for oid in dict.fromkeys(ids.tolist())}


def export_grasps(
    table: Any,
    objects_root: str | os.PathLike[str],
    fmt: str,
    out: str | os.PathLike[str],
    *,
    dexgraspbench: Any = None,
) -> list[Path]:
    """Write `table` (pyarrow Table or pandas DataFrame: ``object_id``, ``q``, optional metric columns)
    in format `fmt` under `out` (module docstring); returns the files written (grasp files; for
    ``dexgraspbench`` also not the object folders). `dexgraspbench`: the
    :class:`~dexlite_core.config.DexGraspBenchConfig` of the pregrasp rule (default: its defaults).
    ValueError for an unknown format (naming it and the choices) or a bad table row;
    FileNotFoundError naming a missing object folder or file."""
    fmt = check_format(fmt)
    out = Path(out)
    if fmt == "json":
        path = out if out.suffix == ".json" else out / JSON_NAME
        return [write_grasps_json(table, objects_root, path)]
    table, ids, q = table_rows(table)
    groups = _by_object(ids)
    folders = {oid: object_folder(objects_root, oid) for oid in groups}  # fail before writing anything
    written: list[Path] = []
    if fmt == "dexgraspnet":
        import trimesh

        from storage.dexgraspnet import dexgraspnet_scale, write_dexgraspnet_npy

        for oid, rows in groups.items():
            mesh_file = folders[oid] / "mesh.obj"
            if not mesh_file.is_file():
                raise FileNotFoundError(f"{mesh_file}: object mesh not found")
            try:
                vertices = trimesh.load(mesh_file, force="mesh", process=False).vertices
            except Exception as e:  # noqa: BLE001 - name the file and the reason
                raise ValueError(f"{mesh_file}: unreadable mesh ({e})") from e
            scale = dexgraspnet_scale(vertices)
            written.append(write_dexgraspnet_npy(table.take(rows), out / f"{oid}.npy", scale))
    elif fmt == "dexgraspbench":
        from storage.dexgraspbench import export_dexgraspbench

        for oid, rows in groups.items():
            written += export_dexgraspbench(q[rows], rows.tolist(), folders[oid], out, dexgraspbench)
    else:  # mjcf
        from dexlite_core.sim.mjcf_export import write_grasp_scene

        for oid, rows in groups.items():
            names = [f"grasp_{r}" for r in rows.tolist()]
            written.append(write_grasp_scene(folders[oid], q[rows], out / f"{oid}.xml", names))
    return written

"""The grasp table: one explicit Arrow schema for every stage's grasps (seed, raw, expanded, postopt,
baseline).

One row per grasp. Columns (all tables carry every column; a stage leaves the others null):

- ``object_id`` string (not null): the object folder id (see ``docs/CONTRACTS.md``).
- ``q`` fixed_size_list<float32>[28] (not null): the pose ``[t (3), euler sxyz (3), joints (22)]``;
  names/order in the schema metadata ``dexlite.pose_names`` (= ``dexlite_core.hand.asset.POSE_NAMES``).
- ``source`` string (not null): one of :data:`SOURCES`.
- ``grasp_id`` int64: stable id within its producer (e.g. the entry index of a DexGraspNet file).
- lift test: ``lift_success`` bool, ``lift_ratio`` float32 (fraction of the lift height the object
  followed), ``object_moved_at_contact`` float32 (metres the object moved while the fingers closed),
  ``penetration_depth`` float32 (m), ``six_dir_success`` bool, ``slip`` float32 (m).
- energy terms: ``E_fc``, ``E_dis``, ``E_pen``, ``E_spen``, ``E_joints``, ``energy`` float32.
- ``dexlite grasp``: ``valid`` bool (every protocol passed, penetration gated), ``rank`` int32 (1 =
  its object's best grasp).
- ``round`` int32: the round whose training set the grasp joined (1: seed grasps; r > 1: held
  expansions of round r - 1 fed back by ``dexlite run --rounds``); null outside the dataset stage.

Plain numpy/pyarrow; no Prefect. Parquet I/O lives in :mod:`storage.parquet`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from dexlite_core.hand.asset import POSE_DIM, POSE_NAMES

SCHEMA_VERSION = 1
SOURCES: tuple[str, ...] = ("seed", "raw", "expanded", "postopt", "baseline")
LIFT_COLUMNS: tuple[str, ...] = (
    "lift_success",
    "lift_ratio",
    "object_moved_at_contact",
    "penetration_depth",
    "six_dir_success",
    "slip",
)
ENERGY_COLUMNS: tuple[str, ...] = ("E_fc", "E_dis", "E_pen", "E_spen", "E_joints", "energy")

META_POSE_NAMES = b"dexlite.pose_names"
META_EULER = b"dexlite.euler"
META_SCHEMA_VERSION = b"dexlite.schema_version"

Q_TYPE = pa.list_(pa.field("element", pa.float32(), nullable=False), POSE_DIM)

_FIELDS: list[pa.Field] = [
    pa.field("object_id", pa.string(), nullable=False),
    pa.field("q", Q_TYPE, nullable=False),
    pa.field("source", pa.string(), nullable=False),
    pa.field("grasp_id", pa.int64()),
    pa.field("lift_success", pa.bool_()),
    pa.field("lift_ratio", pa.float32()),
    pa.field("object_moved_at_contact", pa.float32()),
    pa.field("penetration_depth", pa.float32()),
    pa.field("six_dir_success", pa.bool_()),
    pa.field("slip", pa.float32()),
    # evaluation (dexlite_core/sim): grasp metrics, the lift test's stability flag, dexgraspbench
    pa.field("self_penetration", pa.float32()),
    pa.field("contact_count", pa.int32()),
    pa.field("q1", pa.float32()),
    pa.field("sim_unstable", pa.bool_()),
    pa.field("dgb_success", pa.bool_()),
    pa.field("dgb_failed", pa.string()),
    pa.field("dgb_sim_unstable", pa.bool_()),
    # `dexlite grasp` (dexlite_core/mesh_grasps.py): every protocol passed with penetration gated, and
    # the grasp's place among its object's grasps (1 = best)
    pa.field("valid", pa.bool_()),
    pa.field("rank", pa.int32()),
    *(pa.field(name, pa.float32()) for name in ENERGY_COLUMNS),
    pa.field("round", pa.int32()),
    pa.field("contact_idx", pa.list_(pa.field("element", pa.int16()))),  # the optimiser's chosen contact candidates
]

SCHEMA_METADATA: dict[bytes, bytes] = {
    META_POSE_NAMES: json.dumps(list(POSE_NAMES)).encode(),
    META_EULER: b"sxyz",
    META_SCHEMA_VERSION: str(SCHEMA_VERSION).encode(),
}

GRASP_SCHEMA: pa.Schema = pa.schema(_FIELDS, metadata=SCHEMA_METADATA)
REQUIRED_COLUMNS: tuple[str, ...] = ("object_id", "q", "source")
OPTIONAL_COLUMNS: tuple[str, ...] = tuple(f.name for f in _FIELDS if f.name not in REQUIRED_COLUMNS)


class GraspTableError(ValueError):
    """A grasp table (or the arrays meant for one) breaks the schema: names the row/column/object."""


def validate_poses(q: np.ndarray, object_ids: Sequence[str] | np.ndarray | None = None) -> np.ndarray:
    """Check ``q`` is ``(N, 28)`` and finite; return it as contiguous float32.

    Raises :class:`GraspTableError` naming the first bad row (and its object) and the bad count.
    """
    arr = np.asarray(q)
    if arr.ndim != 2 or arr.shape[1] != POSE_DIM:
        raise GraspTableError(f"poses must have shape (N, {POSE_DIM}), got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise GraspTableError(f"poses must be real numbers, got dtype {arr.dtype}")
    with np.errstate(over="ignore", invalid="ignore"):  # overflow to inf is reported below
        arr = np.ascontiguousarray(arr, dtype=np.float32)
    bad = ~np.isfinite(arr)
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        r = int(rows[0])
        cols = [POSE_NAMES[c] for c in np.flatnonzero(bad[r])]
        obj = f" (object {object_ids[r]!r})" if object_ids is not None and len(object_ids) > r else ""
        raise GraspTableError(
            f"{len(rows)} pose(s) hold NaN/inf (or overflow float32); first at row {r}{obj}, "
            f"columns {cols}"
        )
    return arr


def _to_numpy(values: Any) -> Any:
    """torch tensors (any device, with grad) -> numpy; anything else unchanged."""
    if hasattr(values, "detach") and hasattr(values, "cpu"):
        return values.detach().cpu().numpy()
    return values


def _column(name: str, values: Any, n: int) -> pa.Array:
    typ = GRASP_SCHEMA.field(name).type
    if values is None:
        return pa.nulls(n, typ)
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        arr = values.cast(typ)
    elif np.isscalar(values):
        arr = pa.array([values] * n, type=typ)
    else:
        vals = _to_numpy(values)
        if isinstance(vals, np.ndarray) and vals.ndim == 2 and pa.types.is_list(typ):
            vals = list(vals)  # (N, K) -> N lists
        if isinstance(vals, np.ndarray) and vals.dtype != object:
            if vals.ndim != 1:
                raise GraspTableError(f"column {name!r} must be 1-D, got shape {vals.shape}")
            if pa.types.is_floating(typ):
                vals = vals.astype(np.float32)
            elif pa.types.is_integer(typ) and not np.issubdtype(vals.dtype, np.integer):
                raise GraspTableError(f"column {name!r} must hold integers, got dtype {vals.dtype}")
        try:
            arr = pa.array(vals, type=typ)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError) as e:
            raise GraspTableError(f"column {name!r} cannot be stored as {typ}: {e}") from e
    if len(arr) != n:
        raise GraspTableError(f"column {name!r} has {len(arr)} values for {n} grasps")
    return arr


def grasps_to_table(
    object_ids: str | Sequence[str] | np.ndarray,
    q: np.ndarray,
    source: str | Sequence[str],
    **columns: Any,
) -> pa.Table:
    """Build a grasp table with :data:`GRASP_SCHEMA`.

    object_ids: one id for all rows or N ids; q: (N, 28) poses (numpy or torch); source: one of
    :data:`SOURCES` or N of them; columns: any of :data:`OPTIONAL_COLUMNS` as a scalar, an (N,)
    array/list (None entries are null) or None.
    Unknown column names, wrong lengths and NaN/inf poses raise :class:`GraspTableError`.
    """
    unknown = sorted(set(columns) - set(OPTIONAL_COLUMNS))
    if unknown:
        raise GraspTableError(f"unknown grasp column(s) {unknown}; known: {list(OPTIONAL_COLUMNS)}")
    q = np.asarray(_to_numpy(q))
    n = int(q.shape[0]) if q.ndim == 2 else 0
    ids = [object_ids] * n if isinstance(object_ids, str) else [str(o) for o in object_ids]
    qa = validate_poses(q, ids)
    if len(ids) != n:
        raise GraspTableError(f"{len(ids)} object ids for {n} poses")
    if any(not o for o in ids):
        raise GraspTableError("object_id must be a non-empty string")
    srcs = [source] * n if isinstance(source, str) else list(source)
    if len(srcs) != n:
        raise GraspTableError(f"{len(srcs)} sources for {n} poses")
    bad = sorted(set(srcs) - set(SOURCES))
    if bad:
        raise GraspTableError(f"unknown source value(s) {bad}; allowed: {list(SOURCES)}")
    arrays: list[pa.Array] = [
        pa.array(ids, type=pa.string()),
        pa.FixedSizeListArray.from_arrays(pa.array(qa.reshape(-1), type=pa.float32()), type=Q_TYPE),
        pa.array(srcs, type=pa.string()),
    ]
    arrays += [_column(name, columns.get(name), n) for name in OPTIONAL_COLUMNS]
    return pa.Table.from_arrays(arrays, schema=GRASP_SCHEMA)


def empty_table() -> pa.Table:
    """A grasp table with no rows."""
    return GRASP_SCHEMA.empty_table()


def pose_names(schema: pa.Schema | pa.Table) -> tuple[str, ...]:
    """Pose column names from the schema metadata; raises if absent."""
    sch = schema.schema if isinstance(schema, pa.Table) else schema
    meta = sch.metadata or {}
    if META_POSE_NAMES not in meta:
        raise GraspTableError("schema has no 'dexlite.pose_names' metadata: not a DexLite grasp table")
    return tuple(json.loads(meta[META_POSE_NAMES]))


def check_schema(schema: pa.Schema, require_columns: bool = True) -> None:
    """Raise :class:`GraspTableError` unless ``schema`` is a grasp schema (metadata, column types;
    with ``require_columns`` also object_id, q and source present)."""
    names = pose_names(schema)
    if names != POSE_NAMES:
        raise GraspTableError(f"pose names in the table metadata differ from POSE_NAMES: {list(names)}")
    euler = (schema.metadata or {}).get(META_EULER)
    if euler != b"sxyz":
        raise GraspTableError(f"table euler convention is {euler!r}, expected b'sxyz'")
    for name in REQUIRED_COLUMNS if require_columns else ():
        if name not in schema.names:
            raise GraspTableError(f"grasp table lacks required column {name!r}")
    for f in schema:
        if f.name in GRASP_SCHEMA.names and not f.type.equals(GRASP_SCHEMA.field(f.name).type):
            raise GraspTableError(
                f"column {f.name!r} has type {f.type}, expected {GRASP_SCHEMA.field(f.name).type}"
            )


def table_q(table: pa.Table | pa.RecordBatch) -> np.ndarray:
    """The poses of a grasp table as a ``(N, 28)`` float32 array (a copy)."""
    col = table.column("q")
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    if len(col) == 0:
        return np.zeros((0, POSE_DIM), dtype=np.float32)
    if col.null_count:
        raise GraspTableError(f"column 'q' holds {col.null_count} null pose(s)")
    flat = col.flatten().to_numpy(zero_copy_only=False)
    return np.array(flat, dtype=np.float32).reshape(-1, POSE_DIM)


def validate_table(table: pa.Table) -> pa.Table:
    """Check a table against the grasp schema (metadata, types, sources, finite poses); return it."""
    check_schema(table.schema)
    for name in REQUIRED_COLUMNS:
        if table.column(name).null_count:
            raise GraspTableError(f"column {name!r} holds {table.column(name).null_count} null(s)")
    srcs = set(table.column("source").unique().to_pylist())
    if srcs - set(SOURCES):
        raise GraspTableError(f"unknown source value(s) {sorted(srcs - set(SOURCES))}")
    validate_poses(table_q(table), table.column("object_id").to_pylist() if table.num_rows else None)
    return table


def conform(table: pa.Table) -> pa.Table:
    """Return ``table`` with exactly :data:`GRASP_SCHEMA`: missing optional columns added as nulls,
    columns reordered, metadata attached. Unknown columns raise (they would be silently dropped); a
    table whose metadata names another pose order raises; one without metadata is taken as ours."""
    if META_POSE_NAMES in (table.schema.metadata or {}) and pose_names(table) != POSE_NAMES:
        raise GraspTableError(f"table pose order differs from POSE_NAMES: {list(pose_names(table))}")
    extra = sorted(set(table.column_names) - set(GRASP_SCHEMA.names))
    if extra:
        raise GraspTableError(f"unknown grasp column(s) {extra}")
    for name in REQUIRED_COLUMNS:
        if name not in table.column_names:
            raise GraspTableError(f"grasp table lacks required column {name!r}")
    arrays = []
    for f in GRASP_SCHEMA:
        if f.name in table.column_names:
            try:
                arrays.append(table.column(f.name).cast(f.type))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as e:
                raise GraspTableError(f"column {f.name!r} cannot be cast to {f.type}: {e}") from e
        else:
            arrays.append(pa.nulls(table.num_rows, f.type))
    return pa.Table.from_arrays(arrays, schema=GRASP_SCHEMA)


def concat_tables(tables: Iterable[pa.Table]) -> pa.Table:
    """One grasp table from several (each conformed to the schema; pose orders must agree)."""
    parts = [conform(t) for t in tables]
    if not parts:
        return GRASP_SCHEMA.empty_table()
    return validate_table(pa.concat_tables(parts))


"""The CVAE's training set, round by round (the Dex1B generate -> validate -> retrain loop).

Round 1: the lift-tested seed grasps (successes only unless ``dataset.require_lift`` is off), at most
``dataset.max_per_object`` per object. Round r > 1: round r - 1's set plus that round's evaluated
grasps of ``dataset.feedback_sources`` that passed the lift test, their ``grasp_id`` offset so ids
stay unique across rounds. Every row carries the ``round`` it joined in.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dexlite_core.config import DatasetConfig
from dexlite_core.dataset import concat_tables

ROUND_ID_OFFSET = 10_000_000  # grasp_id += round * this for fed-back grasps


def first_per_group(table: pa.Table, n: int, by: Sequence[str] = ("object_id",)) -> pa.Table:
    """The first `n` rows (table order) of each group of equal `by` values; all rows when n <= 0."""
    if n <= 0 or table.num_rows == 0:
        return table
    keys = np.stack([np.asarray(table.column(c).to_pylist(), dtype=object) for c in by], axis=1)
    _, group = np.unique(keys.astype(str), axis=0, return_inverse=True)
    group = group.reshape(-1)
    order = np.argsort(group, kind="stable")
    starts = np.r_[0, np.flatnonzero(np.diff(group[order])) + 1]
    rank = np.empty(len(group), np.int64)
    rank[order] = np.arange(len(group)) - np.repeat(starts, np.diff(np.r_[starts, len(group)]))
    return table.filter(pa.array(rank < n))


def with_round(table: pa.Table, round_no: int) -> pa.Table:
    """`table` with its ``round`` column set to `round_no`."""
    col = pa.array([round_no] * table.num_rows, type=pa.int32())
    return table.set_column(table.schema.get_field_index("round"), table.schema.field("round"), col)


def held(table: pa.Table) -> pa.Array:
    """Rows that passed the lift test (null = not tested = not held)."""
    return pc.fill_null(table.column("lift_success"), False)


def first_round(lifted: pa.Table, cfg: DatasetConfig) -> pa.Table:
    """Round 1's training set from the lift-tested seed grasps."""
    table = lifted
    if cfg.require_lift and table.num_rows:
        table = table.filter(held(table))
    return with_round(first_per_group(table, cfg.max_per_object), 1)


def next_round(last: pa.Table, evaluated: pa.Table, round_no: int, sources: Sequence[str]) -> tuple[pa.Table, int]:
    """Round `round_no`'s training set: `last` plus the held `evaluated` grasps of `sources`;
    returns (the set, how many were fed back)."""
    ok = pc.and_(held(evaluated), pc.is_in(evaluated.column("source"), value_set=pa.array(list(sources))))
    fed = evaluated.filter(ok)
    ids = pc.add(fed.column("grasp_id"), round_no * ROUND_ID_OFFSET)
    fed = fed.set_column(fed.schema.get_field_index("grasp_id"), "grasp_id", ids)
    return concat_tables([last, with_round(fed, round_no)]), fed.num_rows


def stats(table: pa.Table, round_no: int, n_in: int, fed_back: int) -> dict[str, Any]:
    """``stats.json`` of a training set: round, counts, grasps per object."""
    per_object: dict[str, int] = {}
    for o in table.column("object_id").to_pylist():
        per_object[o] = per_object.get(o, 0) + 1
    return {"round": round_no, "grasps_in": n_in, "grasps": table.num_rows, "fed_back": fed_back,
            "objects": len(per_object), "per_object": per_object}

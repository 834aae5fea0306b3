"""Evaluate a grasp table under named protocols (``lift``, ``dexgraspbench``) with the validity gate.

One call runs every protocol on every grasp (one pool of worker processes, one model per object
and protocol per process) and summarises the result: for each protocol the physically valid success
rate (the protocol passed and penetration and self-penetration at most ``evaluate.max_penetration``),
the same at 1 mm, and the ungated rate, each with n and a 95% Wilson interval
(:mod:`dexlite_core.validity`), plus the analytic metrics and the count of unstable simulations.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from dexlite_core import report, validity
from dexlite_core.config import PipelineConfig
from dexlite_core.sim import dexgraspbench, lift

if TYPE_CHECKING:
    import pandas as pd

PROTOCOL_COLUMNS: dict[str, tuple[str, ...]] = {"lift": lift.COLUMNS, "dexgraspbench": dexgraspbench.COLUMNS}


def protocol_configs(cfg: PipelineConfig, protocols: Sequence[str]) -> tuple[Any, ...]:
    """The config of each named protocol, in the order given (see ``lift.ProtocolConfigs``)."""
    by_name = {"lift": cfg.lift, "dexgraspbench": cfg.dexgraspbench}
    unknown = [p for p in protocols if p not in by_name]
    if unknown:
        raise ValueError(f"unknown protocol(s) {unknown}; known: {list(by_name)}")
    return tuple(by_name[p] for p in protocols)


def result_columns(protocols: Sequence[str]) -> tuple[str, ...]:
    """Per-grasp result columns of a run of `protocols` (the grasp metrics once)."""
    cols: list[str] = list(lift.METRIC_COLUMNS)
    for p in protocols:
        cols += [c for c in PROTOCOL_COLUMNS[p] if c not in cols]
    return tuple(cols)


def evaluate_grasps(
    table: Any,
    objects_root: str | Path,
    cfg: PipelineConfig | None = None,
    workers: int = 1,
    protocols: Sequence[str] | None = None,
    six_directions: bool = True,
    six_dir_first: int = 0,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Run `protocols` (default ``cfg.evaluate.protocols``) on every grasp of `table`.

    Args:
        table: pandas DataFrame or pyarrow Table with ``object_id`` and ``q`` (28 floats).
        objects_root: folder holding ``<object_id>/`` object folders.
        cfg: the pipeline config (its ``lift``, ``dexgraspbench`` and ``evaluate`` sections).
        workers: processes; results do not depend on it.
        six_directions: the lift protocol's six-direction test too.
        six_dir_first: > 0: the six-direction test on each object's first that many grasps only.
    Returns:
        (one row per grasp in table order: ``object_id`` then :func:`result_columns`, the summary
        of :func:`summarise`).
    """
    t0 = time.perf_counter()
    cfg = cfg or PipelineConfig()
    protocols = tuple(protocols or cfg.evaluate.protocols)
    df = lift.run_protocols(table, objects_root, protocol_configs(cfg, protocols), workers, six_directions,
                            result_columns(protocols), six_dir_first)
    summary = summarise(df, protocols, cfg.evaluate.max_penetration)
    summary["wall_time_s"] = time.perf_counter() - t0
    return df, summary


def summarise(df: pd.DataFrame, protocols: Sequence[str], max_penetration: float) -> dict[str, Any]:
    """The report's figures of one group (:func:`dexlite_core.report.summarise`: rates with n and
    95% intervals per protocol, valid / at 1 mm / ungated, unstable counts, metric statistics) plus
    the same rates per object."""
    out: dict[str, Any] = {
        "protocols": list(protocols),
        "max_penetration_m": max_penetration,
        "valid_means": "the protocol passed and penetration and self-penetration <= max_penetration_m",
        **report.summarise(df, protocols=protocols, max_penetration=max_penetration),
    }
    if "object_id" in df:
        out["per_object"] = {str(o): validity.rate_table(g, protocols, max_penetration)
                             for o, g in df.groupby("object_id", sort=True)}
    return out


def evaluate_table(table: pa.Table, objects_root: str | Path, cfg: PipelineConfig, protocols: Sequence[str] = ("lift",),
                   workers: int = 1, six_dir_first: int = 0) -> tuple[pa.Table, dict[str, Any]]:
    """:func:`evaluate_grasps` of a grasp table (docs/CONTRACTS.md), returned as the same table with
    the result columns the grasp schema holds filled in, and the summary."""
    if table.num_rows == 0:
        return table, {"n": 0}
    df, summary = evaluate_grasps(table, objects_root, cfg, workers, protocols, six_dir_first=six_dir_first)
    if len(df) != table.num_rows:
        raise RuntimeError(f"evaluate_grasps returned {len(df)} rows for {table.num_rows} grasps")
    for col in df.columns:
        i = table.schema.get_field_index(col)
        if col == "object_id" or i < 0:
            continue
        values = df[col].to_numpy()
        if values.dtype == object:
            values = np.asarray([None if v is None else v for v in values], dtype=object)
        field = table.schema.field(col)
        table = table.set_column(i, field, pa.array(values, type=field.type, from_pandas=True))
    return table, dict(summary)

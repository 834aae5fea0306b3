"""Which evaluated grasps count: a protocol's verdict AND physical validity (a penetration gate).

Two MuJoCo protocols run on every grasp (columns of the evaluated grasp table):

- ``lift``: the write-up's 1 m lift (``lift_success``, already False for a blown-up simulation;
  ``sim_unstable``), plus the six-direction test (``six_dir_success``).
- ``dexgraspbench``: DexGraspBench's pregrasp -> grasp -> squeeze and six pushes (``dgb_success``,
  ``dgb_failed``, ``dgb_sim_unstable``); its columns exist only when it was run.

A grasp is *valid* when its hand-object penetration (``penetration_depth``) and hand-hand
penetration (``self_penetration``) are both <= the gate; a simulator can "hold" an object the hand
is sunk into, so a protocol pass alone is not a success. Plain pandas/numpy.
"""

from __future__ import annotations

import typing
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from .config import Protocol
from .stats import rate_entry

PROTOCOLS: tuple[str, ...] = typing.get_args(Protocol)  # the config's protocol names
SUCCESS_COLUMN: dict[str, str] = {"lift": "lift_success", "dexgraspbench": "dgb_success"}
UNSTABLE_COLUMN: dict[str, str] = {"lift": "sim_unstable", "dexgraspbench": "dgb_sim_unstable"}
PENETRATION_COLUMNS: tuple[str, ...] = ("penetration_depth", "self_penetration")

# 5 mm: the DexGraspNet benchmark as used to score learned grasp generators (UGG's evaluation
# config, and Dex1B's evaluation on that benchmark) counts a grasp only if its penetration is
# < 5 mm. DexGraspNet's own dataset filter and BODex use 1 mm, which the report gives beside it
# (STRICT_MAX_PENETRATION).
DEFAULT_MAX_PENETRATION = 0.005
STRICT_MAX_PENETRATION = 0.001
# Penetrations are stored as float32: 1 mm reads back as 1.00000005e-3 m. A nanometre of slack keeps
# a stored value equal to the gate on the valid side.
_GATE_SLACK_M = 1e-9


def _unknown(index: pd.Index) -> pd.Series:
    return pd.Series([None] * len(index), index=index, dtype=object)


def _flag(df: pd.DataFrame, col: str) -> pd.Series:
    """`col` as bool with missing column / null = False."""
    if col not in df:
        return pd.Series(False, index=df.index)
    s = df[col]
    return s.where(s.notna(), False).astype(bool)


def _measured(df: pd.DataFrame, col: str) -> bool:
    return col in df and bool(df[col].notna().any())


def gate_columns(df: pd.DataFrame) -> list[str]:
    """The penetration columns :func:`physically_valid` gates `df` on: those present with at least
    one value (a table written before a metric existed reads back with that column all null)."""
    return [c for c in PENETRATION_COLUMNS if _measured(df, c)]


def physically_valid(df: pd.DataFrame, max_penetration: float = DEFAULT_MAX_PENETRATION) -> pd.Series:
    """Bool per row: ``penetration_depth <= max_penetration`` and ``self_penetration <=
    max_penetration`` [m] (up to 1 nm of float32 rounding). A column that is missing, or null in
    every row (an old table), is not gated on (:func:`gate_columns`); otherwise a NaN / null value is
    invalid."""
    ok = pd.Series(True, index=df.index)
    for col in gate_columns(df):
        v = pd.to_numeric(df[col], errors="coerce").astype(np.float64)
        ok &= (v <= max_penetration + _GATE_SLACK_M).fillna(False).astype(bool)  # NaN <= x is False
    return ok


def was_run(df: pd.DataFrame, protocol: str) -> bool:
    """Whether any row of `df` has a verdict of `protocol`."""
    col = SUCCESS_COLUMN[protocol]
    return col in df and bool(df[col].notna().any())


def protocol_success(df: pd.DataFrame, protocol: str) -> pd.Series:
    """The protocol's verdict per row (object dtype: True / False, None where it was not run or the
    column is missing); a pass whose simulation went unstable counts as a failure."""
    col = SUCCESS_COLUMN[protocol]
    if col not in df:
        return _unknown(df.index)
    s = df[col]
    known = s.notna()
    ok = s.where(known, False).astype(bool) & ~_flag(df, UNSTABLE_COLUMN[protocol])
    return ok.astype(object).where(known, None)


def valid_success(df: pd.DataFrame, protocol: str, max_penetration: float = DEFAULT_MAX_PENETRATION) -> pd.Series:
    """Protocol success AND physically valid at `max_penetration` (object dtype; None where the
    protocol was not run)."""
    ps = protocol_success(df, protocol)
    known = ps.notna()
    ok = ps.where(known, False).astype(bool) & physically_valid(df, max_penetration)
    return ok.astype(object).where(known, None)


def six_direction_success(df: pd.DataFrame, max_penetration: float = DEFAULT_MAX_PENETRATION) -> pd.Series:
    """The lift protocol's six-direction verdict (``six_dir_success``), gated like the protocols:
    False when the lift simulation was unstable or the grasp is not physically valid; None where the
    test was not run."""
    if "six_dir_success" not in df:
        return _unknown(df.index)
    s = df["six_dir_success"]
    known = s.notna()
    ok = (s.where(known, False).astype(bool) & ~_flag(df, UNSTABLE_COLUMN["lift"])
          & physically_valid(df, max_penetration))  # fmt: skip
    return ok.astype(object).where(known, None)


def rate_table(
    df: pd.DataFrame,
    protocols: Sequence[str] = PROTOCOLS,
    max_penetration: float = DEFAULT_MAX_PENETRATION,
) -> dict[str, dict[str, Any]]:
    """Rates (:func:`dexlite_core.stats.rate_entry`) for each protocol of `protocols` run in `df`:
    ``p`` (valid at `max_penetration`), ``p_1mm`` (valid at 1 mm), ``p_ungated`` (the protocol's
    verdict alone); plus ``six_direction`` (gated at `max_penetration`) when that test was run."""
    out: dict[str, dict[str, Any]] = {}
    for p in protocols:
        if p not in SUCCESS_COLUMN:
            raise ValueError(f"unknown protocol {p!r}; known: {list(PROTOCOLS)}")
        if not was_run(df, p):
            continue
        out[p] = rate_entry(valid_success(df, p, max_penetration))
        out[f"{p}_1mm"] = rate_entry(valid_success(df, p, STRICT_MAX_PENETRATION))
        out[f"{p}_ungated"] = rate_entry(protocol_success(df, p))
    if "six_dir_success" in df and df["six_dir_success"].notna().any():
        out["six_direction"] = rate_entry(six_direction_success(df, max_penetration))
    return out


def unstable_counts(df: pd.DataFrame, protocols: Sequence[str] = PROTOCOLS) -> dict[str, int]:
    """Number of unstable (blown-up) simulations per protocol of `protocols` whose unstable column
    `df` records (present with at least one value)."""
    return {p: int(_flag(df, UNSTABLE_COLUMN[p]).sum()) for p in protocols if _measured(df, UNSTABLE_COLUMN[p])}

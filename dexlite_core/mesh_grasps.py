"""Grasps for the user's own objects (``dexlite grasp``): sample, post-optimise, validate, rank.

One call takes ingested object folders and a trained CVAE and returns every candidate with its
verdicts, in the order a user wants them:

1. sample ``n_candidates`` poses per object from the CVAE (pure synthesis, seeded per object);
2. post-optimise them (the write-up's 200 annealing steps, ``cfg.postopt``);
3. run the MuJoCo protocols (``cfg.evaluate.protocols``: the lift test with its six-direction test,
   DexGraspBench's squeeze-and-push) and the penetration gate (:mod:`dexlite_core.validity`);
4. rank each object's grasps (:func:`rank_grasps`): valid under more protocols first, then the
   six-direction verdict, then the grasp quality ``q1`` (Ferrari-Canny epsilon, larger is better),
   then the smaller penetration.

Poses are in the object folder's frame (the mesh re-centred on its bounding-box centre, at the size
it was ingested at; ``meta.json``'s ``normalization.center`` gives the offset back to the file's
frame). Plain Python/torch/pandas: no storage, no Prefect.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from . import validity
from .config import PipelineConfig

if TYPE_CHECKING:
    import pandas as pd

    from .sampling import GraspSampler


@dataclass
class GraspRun:
    """What :func:`grasp_objects` returns: every candidate (``table``, ranked) and where time went."""

    table: pa.Table  # grasp-table schema, source "postopt", with the protocols' columns, valid, rank
    protocols: tuple[str, ...]
    seconds: dict[str, float]  # sample, postopt, validate


def valid_columns(protocols: Sequence[str]) -> list[str]:
    """Names of the per-protocol validity columns :func:`rank_grasps` adds (``valid_lift``, ...)."""
    return [f"valid_{p}" for p in protocols]


def rank_grasps(df: pd.DataFrame, protocols: Sequence[str], max_penetration: float) -> pd.DataFrame:
    """Add ``valid_<protocol>`` (passed and penetration-gated), ``valid`` (every protocol) and
    ``rank`` (1 = the object's best) to `df` (one row per grasp: ``object_id``, the protocols'
    columns, ``q1``, ``penetration_depth``); returns a copy in object order (first appearance), best
    first within each object."""
    out = df.copy()
    cols = valid_columns(protocols)
    for p, c in zip(protocols, cols, strict=True):
        out[c] = validity.valid_success(out, p, max_penetration).fillna(False).astype(bool)
    out["valid"] = out[cols].all(axis=1) if cols else False
    six = validity.six_direction_success(out, max_penetration).fillna(False).astype(bool)
    key = {
        "_n_valid": -out[cols].sum(axis=1).to_numpy(),
        "_six": -six.to_numpy().astype(int),
        "_q1": -np.nan_to_num(out["q1"].to_numpy(dtype=float), nan=-np.inf) if "q1" in out else 0.0,
        "_pen": np.nan_to_num(out["penetration_depth"].to_numpy(dtype=float), nan=np.inf)
        if "penetration_depth" in out else 0.0,
    }
    order = {oid: k for k, oid in enumerate(dict.fromkeys(out["object_id"]))}
    out["_obj"] = out["object_id"].map(order)
    for k, v in key.items():
        out[k] = v
    out = out.sort_values(["_obj", *key], kind="stable")
    out["rank"] = out.groupby("_obj").cumcount().astype("int32") + 1
    return out.drop(columns=["_obj", *key]).reset_index(drop=True)


def grasp_objects(
    sampler: GraspSampler,
    folders: Mapping[str, Path],
    cfg: PipelineConfig,
    n_candidates: int,
    *,
    seed: int = 0,
    device: Any = "cpu",
    workers: int = 1,
    protocols: Sequence[str] | None = None,
) -> GraspRun:
    """Steps 1-4 of the module docstring on every object (id -> object folder; all folders in one
    parent, the simulator's objects root). Returns the ranked candidates of every object."""
    from .sampling import postoptimise_objects, sample_objects
    from .sim.evaluate import evaluate_table

    roots = {Path(f).parent for f in folders.values()}
    if len(roots) != 1:
        raise ValueError(f"object folders must share one parent folder, got {sorted(map(str, roots))}")
    protocols = tuple(protocols or cfg.evaluate.protocols)
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    sc = dataclasses.replace(cfg.sample, n_per_object=n_candidates, expand_per_grasp=0, seed=seed)
    sampled = sample_objects(sampler, folders, sc)
    seconds["sample"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    post = postoptimise_objects(sampled, folders, cfg.postopt, cfg.energy, device)
    seconds["postopt"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    evaluated, _ = evaluate_table(post, roots.pop(), cfg, protocols, workers=workers)
    seconds["validate"] = time.perf_counter() - t0
    return GraspRun(ranked_table(evaluated, protocols, cfg.evaluate.max_penetration), protocols, seconds)


def ranked_table(table: pa.Table, protocols: Sequence[str], max_penetration: float) -> pa.Table:
    """An evaluated grasp table in :func:`rank_grasps` order with its ``valid`` and ``rank`` columns."""
    cols = ["object_id", *[c for c in _RANK_INPUTS if c in table.column_names]]
    df = table.select(cols).to_pandas()
    df["_row"] = np.arange(len(df))
    ranked = rank_grasps(df, protocols, max_penetration)
    out = table.take(ranked["_row"].to_numpy())
    for name, values in (("valid", ranked["valid"].to_numpy(bool)), ("rank", ranked["rank"].to_numpy(np.int32))):
        i = out.schema.get_field_index(name)
        out = out.set_column(i, out.schema.field(name), pa.array(values, type=out.schema.field(name).type))
    return out


# the columns ranking reads: verdicts, stability flags, penetration gate, quality
_RANK_INPUTS = ("lift_success", "six_dir_success", "sim_unstable", "dgb_success", "dgb_sim_unstable",
                "penetration_depth", "self_penetration", "q1")


def keep_best(table: pa.Table, n: int, keep_all: bool = False) -> pa.Table:
    """Per object, its valid grasps (all of them with `keep_all`), at most `n`, best rank first."""
    df = table.select(["object_id", "valid", "rank"]).to_pandas()
    if keep_all:
        mask = df["rank"] <= n
    else:  # rows are in rank order within each object: the first n valid ones
        valid = df["valid"].fillna(False).astype(bool)
        mask = valid & (valid.groupby(df["object_id"]).cumsum() <= n)
    return table.take(np.flatnonzero(mask.to_numpy()))


def object_summary(table: pa.Table, kept: pa.Table, protocols: Sequence[str],
                   max_penetration: float) -> list[dict[str, Any]]:
    """One dict per object (input order) of a ranked table: candidates, valid count per protocol
    (penetration-gated) and under all, kept, the best grasp's q1 and penetration (mm)."""
    df = table.select(["object_id", "valid", *[c for c in _RANK_INPUTS if c in table.column_names]]).to_pandas()
    kept_ids = kept.column("object_id").to_pylist()
    rows = []
    for oid, g in df.groupby("object_id", sort=False):
        passed = {p: int(validity.valid_success(g, p, max_penetration).fillna(False).astype(bool).sum())
                  for p in protocols}
        best = g.iloc[0]
        rows.append({
            "object_id": oid,
            "candidates": len(g),
            "valid": int(g["valid"].fillna(False).astype(bool).sum()),
            "passed": passed,
            "kept": kept_ids.count(oid),
            "best_q1": None if best.get("q1") is None or np.isnan(best["q1"]) else float(best["q1"]),
            "best_penetration_mm": float(best["penetration_depth"]) * 1e3
            if best.get("penetration_depth") is not None and not np.isnan(best["penetration_depth"]) else None,
        })
    return rows

"""Stage ``lift``: the MuJoCo lift test of every seed grasp (write-up: 1 m lift, ratio in (0.9, 1.1])
and the six-direction hold.

Artifact: ``grasps.parquet`` (the seed grasps with the lift-test columns), ``lift.json``
(:func:`dexlite_core.sim.lift.summarise`: rates overall and per object, lift ratio, slip, penetration).
"""

from __future__ import annotations

import time
from pathlib import Path

from dag.runner import run_serial
from dag.spec import Inputs, Shards, StageSpec
from dexlite_core.config import PipelineConfig
from stages.common import (
    GRASPS,
    item_keys_in,
    log,
    merge_grasps,
    object_digests,
    objects_in,
    objects_root,
    read_for,
    write_json,
)


def items(inputs: Inputs, cfg: PipelineConfig) -> list[str]:
    return objects_in(inputs["seed"] / GRASPS)


def item_inputs(inputs: Inputs, cfg: PipelineConfig, items: list[str]) -> list[str]:
    """An object's lift tests read its folder and its seed grasps (identified by the seed item's key,
    or by the rows' content when the seed artifact has no item keys)."""
    from storage.hashing import hash_json

    seed_keys = item_keys_in(inputs, "seed")
    out = []
    for oid, obj in zip(items, object_digests(inputs, items), strict=True):
        seed = seed_keys.get(oid)
        if seed is None:
            seed = hash_json(read_for(inputs["seed"] / GRASPS, [oid]).column("q").to_pylist())
        out.append(hash_json([obj, seed]))
    return out


def shard(inputs: Inputs, out_dir: Path, cfg: PipelineConfig, part: list[str]) -> dict:
    from dexlite_core.sim.evaluate import evaluate_table
    from storage.parquet import write_grasps

    t0 = time.perf_counter()
    table, summary = evaluate_table(read_for(inputs["seed"] / GRASPS, part), objects_root(inputs), cfg,
                                    six_dir_first=cfg.lift.six_dir_sample)
    write_grasps(table, out_dir / GRASPS)
    rate = (summary.get("rates", {}).get("lift_ungated") or {}).get("rate")
    log.info("lift: %d objects, %d grasps, success %s (%.1f s)", len(part), table.num_rows,
             "n/a" if rate is None else f"{rate:.3f}", time.perf_counter() - t0)
    return {"grasps": table.num_rows}


def merge(inputs: Inputs, dirs: list[Path], out_dir: Path, cfg: PipelineConfig) -> dict:
    from dexlite_core.sim.lift import summarise
    from storage.parquet import read_grasps

    merge_grasps(dirs, out_dir / GRASPS)
    doc = summarise(read_grasps(out_dir / GRASPS).to_pandas(), cfg.lift)
    write_json(out_dir / "lift.json", doc)
    return {k: doc[k] for k in ("n", "success_rate", "six_direction_success_rate")}


def run(inputs: Inputs, out_dir: Path, cfg: PipelineConfig) -> dict:
    """The stage in this process: its shards in series, then the merge."""
    return run_serial(SPEC, inputs, out_dir, cfg, cfg.dag.shard_size)


SPEC = StageSpec(
    "lift", run, deps=("objects", "seed"), config=("lift",), shards=Shards(items, shard, merge, item_inputs),
    description="MuJoCo lift test of the seed grasps",
)

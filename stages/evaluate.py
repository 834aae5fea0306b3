"""Stage ``evaluate``: the final simulation evaluation of the raw, expanded and post-optimised samples
and, on the same objects, the no-CVAE baseline's grasps (stage ``baseline``) under
``evaluate.protocols`` (:func:`dexlite_core.sim.evaluate.evaluate_table`), and the run's report
(:mod:`dexlite_core.run_report`).

Artifact: ``report.json``, ``report.md``, ``report.html`` and pictures, ``grasps.parquet`` (the
evaluated grasps).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from dag.runner import run_serial
from dag.spec import Inputs, Shards, StageSpec, previous
from dexlite_core.config import PipelineConfig
from stages.common import (
    GRASPS,
    kept_ids,
    log,
    merge_grasps,
    object_ids,
    objects_in,
    objects_root,
    read_for,
    read_json,
)


def items(inputs: Inputs, cfg: PipelineConfig) -> list[str]:
    """The sampled objects (the baseline's grasps of other objects are not evaluated)."""
    return sorted(set(objects_in(inputs["sample"] / GRASPS)) | set(objects_in(inputs["postopt"] / GRASPS)))


def shard(inputs: Inputs, out_dir: Path, cfg: PipelineConfig, part: list[str]) -> dict:
    from dexlite_core.dataset import concat_tables
    from dexlite_core.sim.evaluate import evaluate_table
    from dexlite_core.training_set import first_per_group
    from storage.parquet import write_grasps

    table = concat_tables([read_for(inputs[stage] / GRASPS, part) for stage in ("sample", "postopt", "baseline")])
    table = first_per_group(table, cfg.evaluate.max_per_object, ("object_id", "source"))
    t0 = time.perf_counter()
    table, _ = evaluate_table(table, objects_root(inputs), cfg, cfg.evaluate.protocols)
    write_grasps(table, out_dir / GRASPS)
    log.info("evaluate: %d objects, %d grasps (%.1f s)", len(part), table.num_rows, time.perf_counter() - t0)
    return {"grasps": table.num_rows}


def merge(inputs: Inputs, dirs: list[Path], out_dir: Path, cfg: PipelineConfig) -> dict:
    from dexlite_core import report as rep
    from dexlite_core.run_report import RunContext, write_run_report
    from storage.parquet import read_grasps

    merge_grasps(dirs, out_dir / GRASPS)
    df = read_grasps(out_dir / GRASPS).to_pandas()
    timing, base_timing = inputs["postopt"] / "timing.json", inputs["baseline"] / "timing.json"
    last = inputs.get(previous("evaluate"))
    split = read_json(inputs["train"] / "split.json")
    _warn_missing_baseline(df, split)
    ctx = RunContext(
        split=split,
        dataset_stats=read_json(inputs["dataset"] / "stats.json"),
        seed_lift=read_json(inputs["lift"] / "lift.json"),
        n_ingested=len(object_ids(inputs)),
        n_kept=len(kept_ids(inputs)),
        postopt_timing=read_json(timing) if timing.is_file() else {},
        baseline_timing=read_json(base_timing) if base_timing.is_file() else {},
        previous_rounds=read_json(last / "report.json").get("rounds", []) if last is not None else (),
    )
    doc = write_run_report(out_dir, df, ctx, cfg, objects_root(inputs))
    return {src: {"n": doc[src]["n"], **{name: r["rate"] for name, r in doc[src]["rates"].items()}}
            for src in rep.SOURCES if src in doc}


def _warn_missing_baseline(df: Any, split: dict) -> None:
    """Log the held-out sampled objects without baseline grasps (the baseline stage splits the kept
    objects, the train stage those of the dataset: with a split that only its few-group fallbacks
    fill, the two can differ)."""
    sampled = set(df.loc[df["source"] == "raw", "object_id"])
    held = (sampled & (set(split["val"]) | set(split.get("test", [])))) - set(df.loc[df["source"] == "baseline",
                                                                                     "object_id"])
    if held:
        log.warning("evaluate: no baseline grasps for %d held-out sampled object(s): %s", len(held),
                    ", ".join(sorted(held)))


def run(inputs: Inputs, out_dir: Path, cfg: PipelineConfig) -> dict:
    """The stage in this process: its shards in series, then the merge."""
    return run_serial(SPEC, inputs, out_dir, cfg, cfg.dag.shard_size)


SPEC = StageSpec(
    "evaluate", run, deps=("objects", "stability", "lift", "dataset", "train", "sample", "postopt",
                           "baseline"),
    config=("lift", "dexgraspbench", "evaluate", "energy"), feedback=("evaluate",),
    shards=Shards(items, shard, merge), description="final simulation evaluation and report",
)

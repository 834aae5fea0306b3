"""Stage ``postopt``: post-optimisation of the pure-synthesis samples (write-up: 200 annealed RMSProp
steps, :func:`dexlite_core.sampling.postoptimise_objects`); each keeps its sample's ``grasp_id``, so
the report compares the same grasps before and after.

Artifact: ``grasps.parquet`` (source "postopt"), ``timing.json`` (optimisation seconds summed over
shards: CPU-seconds of one worker each, so seconds per grasp compare across worker counts).
"""

from __future__ import annotations

import time
from pathlib import Path

from dag.runner import run_serial
from dag.spec import Inputs, Shards, StageSpec
from dexlite_core.config import PipelineConfig
from stages.common import (
    GRASPS,
    merge_grasps,
    objects_in,
    objects_root,
    read_for,
    read_json,
    setup_torch,
    write_json,
)


def items(inputs: Inputs, cfg: PipelineConfig) -> list[str]:
    return objects_in(inputs["sample"] / GRASPS)


def shard(inputs: Inputs, out_dir: Path, cfg: PipelineConfig, part: list[str]) -> dict:
    from dexlite_core.sampling import postoptimise_objects
    from storage.parquet import write_grasps

    device = setup_torch(cfg)
    t0 = time.perf_counter()
    folders = {oid: objects_root(inputs) / oid for oid in part}
    table = postoptimise_objects(read_for(inputs["sample"] / GRASPS, part), folders, cfg.postopt, cfg.energy, device)
    write_grasps(table, out_dir / GRASPS)
    write_json(out_dir / "timing.json", {"grasps": table.num_rows, "seconds": time.perf_counter() - t0})
    return {"grasps": table.num_rows}


def merge(inputs: Inputs, dirs: list[Path], out_dir: Path, cfg: PipelineConfig) -> dict:
    timings = [read_json(d / "timing.json") for d in dirs if (d / "timing.json").is_file()]
    write_json(out_dir / "timing.json", {"grasps": sum(t["grasps"] for t in timings),
                                         "seconds": sum(t["seconds"] for t in timings)})
    return {"grasps": merge_grasps(dirs, out_dir / GRASPS)}


def run(inputs: Inputs, out_dir: Path, cfg: PipelineConfig) -> dict:
    """The stage in this process: its shards in series, then the merge."""
    return run_serial(SPEC, inputs, out_dir, cfg, cfg.dag.shard_size)


SPEC = StageSpec(
    "postopt", run, deps=("objects", "sample"), config=("postopt", "energy"), shards=Shards(items, shard, merge),
    description="post-optimisation of the samples (200 steps)",
)

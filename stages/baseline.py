"""Stage ``baseline``: the compute-matched baseline without any CVAE (issue 15). On each held-out
object, ``sample.n_per_object`` grasps from DexGraspNet's initialisation (the seed stage's code path,
:func:`dexlite_core.synthesis.seed_grasps`) followed by the post-optimisation schedule ``postopt``
(200 annealing steps) instead of the seed schedule: what the same 200 steps reach without a
generator. The report scores it beside the raw, expanded and post-optimised samples.

The objects: the validation and test objects (never trained on) of the split by object group
(:func:`dexlite_core.splits.assign_splits` on the kept objects, the train config's fractions, the
function the train stage splits with); every kept object when that split holds out none (one group,
or both fractions 0). The evaluation scores only the objects the sample stage sampled.

Per object (``Shards.item_inputs``): an object's grasps read only its folder and the ``seed``
(initialisation), ``postopt``, ``energy`` and ``sample`` (count, seed) sections, not ``train``, so
every model of the scaling curve (``train.max_objects``) reuses them.

Artifact: ``grasps.parquet`` (source "baseline"), ``timing.json`` (optimisation seconds summed over
objects, as the postopt stage's, and the annealing ``steps``).
"""

from __future__ import annotations

import time
from pathlib import Path

from dag.runner import run_serial
from dag.spec import Inputs, Shards, StageSpec
from dexlite_core.config import PipelineConfig
from stages.common import (
    GRASPS,
    kept_ids,
    log,
    merge_grasps,
    object_digests,
    objects_in,
    objects_root,
    read_json,
    setup_torch,
    write_json,
)


def items(inputs: Inputs, cfg: PipelineConfig) -> list[str]:
    """The held-out (validation + test) kept objects; every kept object when none is held out."""
    from dexlite_core.splits import assign_splits, read_groups

    kept = kept_ids(inputs)
    split = assign_splits(kept, read_groups(objects_root(inputs), kept), cfg.train.val_fraction,
                          cfg.train.test_fraction)
    return sorted(split["val"] + split["test"]) or sorted(kept)


def item_inputs(inputs: Inputs, cfg: PipelineConfig, items: list[str]) -> list[str]:
    """An object's baseline grasps read only its folder."""
    return object_digests(inputs, items)


def shard(inputs: Inputs, out_dir: Path, cfg: PipelineConfig, part: list[str]) -> dict:
    import dataclasses

    from dexlite_core import synthesis
    from dexlite_core.dataset import concat_tables
    from dexlite_core.objects import load_object
    from dexlite_core.seeding import stable_int
    from storage.parquet import write_grasps

    device = setup_torch(cfg)
    n = cfg.sample.n_per_object
    schedule = dataclasses.replace(cfg.seed, annealing=cfg.postopt)  # the seed's start, post-opt's steps
    tables = []
    t0 = time.perf_counter()
    for k, oid in enumerate(part if n > 0 else []):
        t1 = time.perf_counter()
        obj = load_object(objects_root(inputs) / oid)
        res = synthesis.seed_grasps(obj.mesh, synthesis.object_field(obj, device), n, schedule, cfg.energy,
                                    seed=cfg.sample.seed + stable_int(oid))
        tables.append(synthesis.grasps_table(oid, res, "baseline"))
        log.info("baseline: %d/%d %s: %d grasps, init + %d steps (%.1f s)", k + 1, len(part), oid, n,
                 cfg.postopt.n_iter, time.perf_counter() - t1)
    table = concat_tables(tables)
    write_grasps(table, out_dir / GRASPS)
    write_json(out_dir / "timing.json", {"grasps": table.num_rows, "seconds": time.perf_counter() - t0})
    return {"objects": len(part), "grasps": table.num_rows}


def merge(inputs: Inputs, dirs: list[Path], out_dir: Path, cfg: PipelineConfig) -> dict:
    timings = [read_json(d / "timing.json") for d in dirs if (d / "timing.json").is_file()]
    write_json(out_dir / "timing.json", {"grasps": sum(t["grasps"] for t in timings),
                                         "seconds": sum(t["seconds"] for t in timings),
                                         "steps": cfg.postopt.n_iter})
    n = merge_grasps(dirs, out_dir / GRASPS)
    return {"objects": len(objects_in(out_dir / GRASPS)), "grasps": n}


def run(inputs: Inputs, out_dir: Path, cfg: PipelineConfig) -> dict:
    """The stage in this process: its objects in series, then the merge."""
    return run_serial(SPEC, inputs, out_dir, cfg, cfg.dag.shard_size)


SPEC = StageSpec(
    "baseline", run, deps=("objects", "stability"), config=("seed", "postopt", "energy", "sample", "train"),
    shards=Shards(items, shard, merge, item_inputs, item_config=("seed", "postopt", "energy", "sample")),
    description="no-CVAE baseline: DexGraspNet init + the post-opt steps",
)

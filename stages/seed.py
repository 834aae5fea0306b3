"""Stage ``seed``: seed grasps by energy optimisation from DexGraspNet-style initial poses, on the
objects the stability filter kept.

Artifact: ``grasps.parquet`` (source "seed", energy terms, contact_idx), ``pictures/<object>.png``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from dag.runner import run_serial
from dag.spec import Inputs, Shards, StageSpec
from dexlite_core.config import PipelineConfig
from stages.common import GRASPS, kept_ids, log, merge_grasps, object_digests, objects_root, setup_torch


def items(inputs: Inputs, cfg: PipelineConfig) -> list[str]:
    return kept_ids(inputs)


def item_inputs(inputs: Inputs, cfg: PipelineConfig, items: list[str]) -> list[str]:
    """An object's seed grasps read only its folder."""
    return object_digests(inputs, items)


def _progress(oid: str, cfg: PipelineConfig) -> Any:
    """The energy going down, 5 log lines per object."""
    every = max(1, cfg.seed.annealing.n_iter // 5)

    def progress(state: Any) -> None:
        if state.step % every == 0:
            log.info("seed: %s step %d/%d, mean energy %.3g", oid, state.step, cfg.seed.annealing.n_iter,
                     float(state.terms.total.mean()))

    return progress


def shard(inputs: Inputs, out_dir: Path, cfg: PipelineConfig, part: list[str]) -> dict:
    import numpy as np

    from dexlite_core import synthesis
    from dexlite_core.dataset import concat_tables
    from dexlite_core.objects import load_object
    from dexlite_core.seeding import stable_int
    from storage.parquet import write_grasps

    device = setup_torch(cfg)
    tables = []
    n = cfg.seed.grasps_per_object
    for k, oid in enumerate(part):
        t0 = time.perf_counter()
        obj = load_object(objects_root(inputs) / oid)
        field = synthesis.object_field(obj, device)
        res = synthesis.seed_grasps(obj.mesh, field, n, cfg.seed, cfg.energy, seed=cfg.seed.seed + stable_int(oid),
                                    progress=_progress(oid, cfg))
        tables.append(synthesis.grasps_table(oid, res, "seed"))
        _picture(obj.mesh, res, out_dir / "pictures" / f"{oid}.png")
        log.info("seed: %d/%d %s: %d grasps, median energy %.3g (%.1f s)", k + 1, len(part), oid, n,
                 float(np.median(res.terms["energy"])), time.perf_counter() - t0)
    write_grasps(concat_tables(tables), out_dir / GRASPS)
    return {"objects": len(part), "grasps": n * len(part)}


def _picture(mesh: Any, res: Any, path: Path) -> None:
    """The two lowest-energy grasps of an object, three views each (a person can see the grasps)."""
    import numpy as np

    from dexlite_core.viz import render_png

    best = np.argsort(res.terms["energy"])[:2]
    path.parent.mkdir(parents=True, exist_ok=True)
    render_png(mesh, res.q[best], path, titles=[f"E = {res.terms['energy'][i]:.3g}" for i in best])


def merge(inputs: Inputs, dirs: list[Path], out_dir: Path, cfg: PipelineConfig) -> dict:
    import shutil

    n = merge_grasps(dirs, out_dir / GRASPS)
    (out_dir / "pictures").mkdir(exist_ok=True)
    for d in dirs:
        for png in sorted((d / "pictures").glob("*.png")):
            shutil.copyfile(png, out_dir / "pictures" / png.name)
    return {"grasps": n}


def run(inputs: Inputs, out_dir: Path, cfg: PipelineConfig) -> dict:
    """The stage in this process: its shards in series, then the merge."""
    return run_serial(SPEC, inputs, out_dir, cfg, cfg.dag.shard_size)


SPEC = StageSpec(
    "seed", run, deps=("objects", "stability"), config=("seed", "energy"),
    shards=Shards(items, shard, merge, item_inputs),
    description="seed grasps by energy optimisation",
)

"""Data-engine throughput: lift-validated grasps per hour, through the seed path and the generative
loop, each beside its baseline measured in the same run (issue 15).

    .venv/bin/python benchmarks/throughput.py [--objects 6] [--workers 2] [--checkpoint PATH]
        [--set KEY=VALUE ...] [--skip-generative]

Objects: ``--objects`` pybullet_data random_urdfs objects from random-500 on (no config of this
project selects them by default), ingested with the large config's object settings (not timed).
Every object is one task on a pool of ``--workers`` spawned processes (one torch thread each), as
the per-object shards of ``dexlite run`` are; a task runs the pipeline's own stage code
(:mod:`stages.seed`, :mod:`stages.lift`; :func:`dexlite_core.sampling.sample_objects` and
:func:`~dexlite_core.sampling.postoptimise_objects` then :mod:`stages.lift`'s test for the loop).

1. Seed path (seed optimisation + lift test): baseline = ``configs/default.yaml``'s seed and lift
   sections (1000 annealing steps, the six-direction test on every grasp: the figures of today's
   demo run); candidate = ``configs/large.yaml``'s. Target >= 30,000 validated grasps per hour.
2. Generative loop (CVAE samples -> 200-step post-optimisation -> lift test): baseline = the demo's
   sample / postopt / lift sections, candidate = the large config's. Target >= 100,000 per hour.
   The model: ``--checkpoint``, else the last ``make demo`` run's, else a CVAE trained here for a
   few epochs on the seed path's validated grasps (a weaker model: a lower bound).

"Validated" = passed the lift test (the dataset filter); each rate is validated grasps over the
pool's wall time, with the lift rate's Wilson 95% interval. Noisy machines: compare the ratio.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SEED_TARGET, LOOP_TARGET = 30_000, 100_000


def _init() -> None:
    import torch

    torch.set_num_threads(1)


def _cfg(path: str, extra: dict[str, Any] | None = None) -> Any:
    from flows.configfile import load_config

    return load_config(ROOT / path, extra or None)


def _seed_lift(objects_dir: str, oid: str, cfg_dict: dict, work: str) -> tuple[int, int, float]:
    """One object through the seed and lift stages' shard code: (grasps, validated, seconds)."""
    import pyarrow.compute as pc

    from dexlite_core.config import PipelineConfig
    from stages import lift, seed
    from storage.parquet import read_grasps

    cfg = PipelineConfig.from_dict(cfg_dict)
    t0 = time.perf_counter()
    seed_dir, lift_dir = Path(work) / oid / "seed", Path(work) / oid / "lift"
    seed_dir.mkdir(parents=True)
    lift_dir.mkdir(parents=True)
    seed.shard({"objects": Path(objects_dir)}, seed_dir, cfg, [oid])
    lift.shard({"objects": Path(objects_dir), "seed": seed_dir}, lift_dir, cfg, [oid])
    t = read_grasps(lift_dir / "grasps.parquet", validate=False)
    return t.num_rows, int(pc.sum(t.column("lift_success")).as_py() or 0), time.perf_counter() - t0


_SAMPLER: dict[str, Any] = {}


def _generate(objects_dir: str, oid: str, cfg_dict: dict, checkpoint: str) -> tuple[int, int, float]:
    """One object through sampling, post-optimisation and the lift stage's test."""
    import pyarrow.compute as pc

    from dexlite_core.config import PipelineConfig
    from dexlite_core.sampling import GraspSampler, postoptimise_objects, sample_objects
    from dexlite_core.sim.evaluate import evaluate_table

    cfg = PipelineConfig.from_dict(cfg_dict)
    if checkpoint not in _SAMPLER:  # loaded once per worker, not timed per object
        _SAMPLER[checkpoint] = GraspSampler.load(checkpoint, "cpu")
    t0 = time.perf_counter()
    folders = {oid: Path(objects_dir) / "objects" / oid}
    sample_cfg = dataclasses.replace(cfg.sample, expand_per_grasp=0)  # pure synthesis is the new data
    sampled = sample_objects(_SAMPLER[checkpoint], folders, sample_cfg)
    post = postoptimise_objects(sampled, folders, cfg.postopt, cfg.energy)
    table, _ = evaluate_table(post, Path(objects_dir) / "objects", cfg, six_dir_first=cfg.lift.six_dir_sample)
    return table.num_rows, int(pc.sum(table.column("lift_success")).as_py() or 0), time.perf_counter() - t0


def _pool_run(pool: ProcessPoolExecutor, fn: Any, objects_dir: Path, ids: list[str], cfg: Any, *extra: str
              ) -> tuple[int, int, float]:
    t0 = time.perf_counter()
    futs = [pool.submit(fn, str(objects_dir), oid, cfg.to_dict(), *extra) for oid in ids]
    rows = [f.result() for f in futs]
    return sum(r[0] for r in rows), sum(r[1] for r in rows), time.perf_counter() - t0


def _line(name: str, n: int, ok: int, wall: float, base: float | None, target: int) -> float:
    from dexlite_core.stats import wilson_interval

    lo, hi = wilson_interval(ok, n)
    rate = ok / wall * 3600.0
    ratio = f"{rate / base:5.2f}x" if base else "   1x"
    print(f"  {name:<28} {n:>6} {ok / max(n, 1):>6.1%} [{lo:.1%}, {hi:.1%}] {wall:>7.1f} s "
          f"{rate:>9,.0f}/h {ratio}  (target {target:,}/h: {'met' if rate >= target else 'not met'})")
    return rate


def _ingest(ids_from: int, n: int, cfg: Any, root: Path) -> list[str]:
    from dexlite_core.config import SelectConfig
    from dexlite_core.objects import ingest_many
    from dexlite_core.objects.select import select_sources

    names = tuple(f"random-{i:03d}" for i in range(ids_from, ids_from + n))
    sel = SelectConfig(bundled=names, n_random=ids_from + n)
    sources = list(select_sources(sel, cfg.objects).values())
    report = ingest_many(sources, root / "objects", cfg.objects, workers=2)
    return sorted(report.object_ids)


def _quick_model(objects_dir: Path, work: Path, cfg: Any) -> str:
    """A CVAE trained for a few epochs on the seed path's validated grasps (lower-bound quality)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from dexlite_core import train
    from storage.parquet import read_grasps

    tables = [read_grasps(p, validate=False) for p in sorted(work.glob("*/lift/grasps.parquet"))]
    table = pa.concat_tables(tables)
    table = table.filter(pc.equal(table.column("lift_success"), True))
    tcfg = dataclasses.replace(cfg.train, epochs=8, val_fraction=0.0, test_fraction=0.0, n_points=512)
    out = work / "model"
    train.fit(table, objects_dir / "objects", tcfg, cfg.energy, "cpu", out)
    return str(out / train.CHECKPOINT)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--objects", type=int, default=6)
    ap.add_argument("--first", type=int, default=500, help="first random_urdfs index")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--checkpoint", default="")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override of the candidate (large) config, e.g. seed.annealing.n_iter=600")
    ap.add_argument("--skip-generative", action="store_true")
    args = ap.parse_args()

    from flows.configfile import parse_overrides

    base, cand = _cfg("configs/default.yaml"), _cfg("configs/large.yaml", parse_overrides(args.set))
    with tempfile.TemporaryDirectory() as tmp, ProcessPoolExecutor(
        args.workers, mp_context=get_context("spawn"), initializer=_init
    ) as pool:
        objects_dir = Path(tmp) / "objects-artifact"
        ids = _ingest(args.first, args.objects, cand, objects_dir)
        print(f"{len(ids)} objects (random-{args.first:03d}..), {args.workers} worker processes x 1 thread, "
              f"{os.cpu_count()} cores")
        print(f"  {'':<28} {'grasps':>6} {'lift':>6} {'95% CI':>16} {'wall':>9} {'validated':>11}")
        print("seed path (seed + lift stages):")
        runs = {}
        for name, cfg in (("baseline (default.yaml)", base), ("candidate (large.yaml)", cand)):
            work = Path(tmp) / f"seed-{name.split()[0]}"
            runs[name] = _pool_run(pool, _seed_lift, objects_dir, ids, cfg, str(work))
        b = _line("baseline (default.yaml)", *runs["baseline (default.yaml)"], None, SEED_TARGET)
        _line("candidate (large.yaml)", *runs["candidate (large.yaml)"], b, SEED_TARGET)
        if args.skip_generative:
            return
        ckpt = args.checkpoint or _demo_checkpoint() or _quick_model(objects_dir, Path(tmp) / "seed-candidate", cand)
        print(f"generative loop (sample -> post-opt -> lift), model {ckpt}:")
        runs = {name: _pool_run(pool, _generate, objects_dir, ids, cfg, ckpt)
                for name, cfg in (("baseline (default.yaml)", base), ("candidate (large.yaml)", cand))}
        b = _line("baseline (default.yaml)", *runs["baseline (default.yaml)"], None, LOOP_TARGET)
        _line("candidate (large.yaml)", *runs["candidate (large.yaml)"], b, LOOP_TARGET)


def _demo_checkpoint() -> str:
    sys.path.insert(0, str(Path(__file__).parent))
    from _runs import RECORD

    try:
        import json

        path = Path(json.loads(RECORD.read_text())["train"]["path"]) / "checkpoint.pt"
        return str(path) if path.is_file() else ""
    except (OSError, KeyError, ValueError):
        return ""


if __name__ == "__main__":
    main()

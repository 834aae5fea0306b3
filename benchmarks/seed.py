"""Seed-grasp benchmark: validated seed grasps per second, batch scaling vs. a one-pose loop.

    .venv/bin/python benchmarks/seed.py [--batch 16 64 256] [--iters N] [--loop 2]

On one bundled-style object (a 5 x 5 x 10 cm box, ingested as the pipeline does), for each batch
size B: optimise B grasps from DexGraspNet-style initial poses (SeedConfig's annealing schedule,
`--iters` steps, default the configured 1000), lift-test them in MuJoCo (2 worker processes), and
print optimisation time, lift time, success rate and validated grasps per second. The baseline,
measured in the same run, optimises `--loop` poses one at a time (B = 1) and is extrapolated per
grasp with the same success rate.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import torch
import trimesh

from dexlite_core.config import EnergyConfig, LiftConfig, ObjectConfig, SeedConfig
from dexlite_core.objects import ingest_mesh
from dexlite_core.sim.lift import lift_test
from dexlite_core.synthesis import object_field, seed_grasps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, nargs="+", default=[16, 64, 256])
    ap.add_argument("--iters", type=int, default=SeedConfig().annealing.n_iter)
    ap.add_argument("--loop", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2, help="lift-test worker processes")
    args = ap.parse_args()
    cfg = SeedConfig()
    cfg = dataclasses.replace(cfg, annealing=dataclasses.replace(cfg.annealing, n_iter=args.iters))
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "box.obj"
        trimesh.creation.box((0.05, 0.05, 0.1)).export(src)
        obj = ingest_mesh(src, Path(tmp) / "objects", ObjectConfig())
        mesh, parts = obj.mesh, list(obj.convex_parts)
        field = object_field(obj, torch.device("cpu"))
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, {args.iters} annealing steps, "
        f"lift test with {args.workers} workers"
    )
    print(f"{'mode':>12} {'grasps':>6} {'opt s':>7} {'lift s':>7} {'success':>7} {'validated/s':>11} {'vs loop':>7}")

    def run(B: int, seed: int) -> tuple[float, float, float]:
        t = time.perf_counter()
        g = seed_grasps(mesh, field, B, cfg, EnergyConfig(), seed=seed)
        t_opt = time.perf_counter() - t
        t = time.perf_counter()
        res = lift_test(parts, g.q, LiftConfig(), workers=args.workers, six_directions=False)
        return t_opt, time.perf_counter() - t, float(res["lift_success"].mean())

    loop = [run(1, s) for s in range(args.loop)]
    t_opt = sum(r[0] for r in loop) / len(loop)
    t_lift = sum(r[1] for r in loop) / len(loop)
    base_rate = 1.0 / (t_opt + t_lift)  # grasps/s before validation; scaled by the batch runs' success
    rows = [(B, *run(B, 100 + B)) for B in args.batch]
    succ = sum(r[3] * r[0] for r in rows) / sum(r[0] for r in rows)
    print(
        f"{'loop (B=1)':>12} {args.loop:>6} {t_opt:>7.1f} {t_lift:>7.1f} {succ:>7.2f} {base_rate * succ:>11.3f} "
        f"{1.0:>7.1f}"
    )
    for B, to, tl, s in rows:
        rate = B * s / (to + tl)
        print(
            f"{f'batch {B}':>12} {B:>6} {to:>7.1f} {tl:>7.1f} {s:>7.2f} {rate:>11.3f} {rate / (base_rate * succ):>7.1f}"
        )


if __name__ == "__main__":
    main()

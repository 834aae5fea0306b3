"""Simulation benchmark: PyBullet stability checks and MuJoCo lift tests, 1 vs 2 workers, one run.

    .venv/bin/python benchmarks/sim.py [--grasps 64] [--objects 8]

Lift part: the enveloping fixture grasps of tests/fixtures/grasps.json (box and cylinder),
repeated to `--grasps` poses per object, lift-tested (no six-direction test) with 1 worker and
with 2 worker processes; then the same with the six-direction test. Prints tests/s per core,
the 2-worker speed-up, and simulated time / wall time (close + lift + hold per test).
Stability part: see benchmarks/_stability.py.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import trimesh

from dexlite_core.config import LiftConfig, StabilityConfig
from dexlite_core.sim.lift import lift_test

ROOT = Path(__file__).resolve().parents[1]


def bench_lift(n_grasps: int = 64, workers: tuple[int, ...] = (1, 2)) -> None:
    fixtures = json.loads((ROOT / "tests" / "fixtures" / "grasps.json").read_text())
    objects = {
        "box": trimesh.creation.box((0.05, 0.05, 0.1)),
        "cylinder": trimesh.creation.cylinder(radius=0.03, height=0.1),
    }
    cfg = LiftConfig()
    sim_seconds = cfg.close_time + cfg.lift_time + cfg.hold_time
    print(
        f"lift test: {len(objects)} objects x {n_grasps} grasps, {sim_seconds:g} s simulated each, "
        f"timestep {cfg.timestep}"
    )
    print(
        f"{'six-dir':>7} {'workers':>7} {'tests':>6} {'wall s':>7} {'tests/s':>8} {'per core':>8} "
        f"{'speed-up':>8} {'sim/wall':>8} {'success':>7}"
    )
    for six in (False, True):
        base = None
        for w in workers:
            t = time.perf_counter()
            ok = n = 0
            for name, mesh in objects.items():
                poses = np.resize(np.array(fixtures[name]), (n_grasps, 28))
                res = lift_test([mesh], poses, cfg, workers=w, six_directions=six)
                ok += int(res["lift_success"].sum())
                n += len(res)
            wall = time.perf_counter() - t
            rate = n / wall
            base = base or rate
            print(
                f"{str(six):>7} {w:>7} {n:>6} {wall:>7.2f} {rate:>8.2f} {rate / w:>8.2f} {rate / base:>8.2f} "
                f"{n * sim_seconds / wall:>8.1f} {ok / n:>7.2f}"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--grasps", type=int, default=64)
    ap.add_argument("--objects", type=int, default=8, help="objects for the stability part")
    args = ap.parse_args()
    bench_lift(args.grasps)
    print()
    from _stability import bench_stability, print_figures

    cfg = StabilityConfig()
    print_figures(bench_stability(args.objects, 2, (1, 2), cfg), cfg)


if __name__ == "__main__":
    main()

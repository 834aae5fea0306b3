"""Simulation benchmark: MuJoCo lift tests and PyBullet stability checks, 1 vs 2 workers, one run.

    .venv/bin/python benchmarks/sim.py [--grasps 48] [--six] [--objects 8]

Prints lift tests per second per core, the 2-worker speed-up and simulated-time / wall-time
(benchmarks/_lift.py), then stability checks per second with 1 and 2 workers
(benchmarks/_stability.py). Each part can also be run alone.
"""

from __future__ import annotations

import argparse

from _lift import bench_lift
from _stability import bench_stability, print_figures

from dexlite_core.config import StabilityConfig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--grasps", type=int, default=48, help="lift: poses per object and set")
    ap.add_argument("--six", action="store_true", help="lift: also run the six-direction test")
    ap.add_argument("--objects", type=int, default=8, help="stability: objects")
    args = ap.parse_args()
    bench_lift(args.grasps, (1, 2), args.six)
    print()
    cfg = StabilityConfig()
    print_figures(bench_stability(args.objects, 2, (1, 2), cfg), cfg)


if __name__ == "__main__":
    main()

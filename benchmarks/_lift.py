"""Lift-test benchmark: tests per second per core (1 worker), with 2 workers, speed-up, sim/wall.

    .venv/bin/python benchmarks/_lift.py   (also run by benchmarks/sim.py) [--grasps 48] [--workers 1 2] [--six]

Poses: the fixture grasps of tests/fixtures/grasps.json on their objects (hand-built wraps of a
4.5 cm cube and a 2.5 cm cylinder, seed-optimiser grasps of a 5x5x10 cm box and a 3 cm cylinder),
repeated to `--grasps` per object. Two sets: "held" (the grasps as stored: every test simulates the
full close + lift + hold) and "mixed" (each pose perturbed, seed 0: joints +-0.15 rad, translation
+-5 mm, rotation +-0.05 rad, so part of them drop the object and stop early). Columns: tests/s over
wall time, per core (divided by the workers), speed-up against 1 worker, simulated seconds per wall
second (physics time actually stepped, all phases, per core), success rate, share stopped early, and
for 1 worker tests per CPU-second of this process. The machine load at the start is printed:
wall-clock rates on a shared machine are lower bounds.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import trimesh

from dexlite_core.config import LiftConfig
from dexlite_core.sim.lift import lift_test, shutdown_pool

ROOT = Path(__file__).resolve().parents[1]


def _objects() -> dict[str, trimesh.Trimesh]:
    return {
        "cube_45mm": trimesh.creation.box((0.045, 0.045, 0.045)),
        "cylinder_r25_h100": trimesh.creation.cylinder(radius=0.025, height=0.1, sections=32),
        "box": trimesh.creation.box((0.05, 0.05, 0.1)),
        "cylinder": trimesh.creation.cylinder(radius=0.03, height=0.1),
    }


def _poses(base: np.ndarray, n: int, mixed: bool) -> np.ndarray:
    poses = np.resize(base, (n, 28)).astype(np.float64)
    if mixed:
        rng = np.random.default_rng(0)
        scale = np.r_[np.full(3, 0.005), np.full(3, 0.05), np.full(22, 0.15)]
        poses = poses + rng.uniform(-1, 1, poses.shape) * scale
    return poses


def bench_lift(
    n_grasps: int = 48, workers: tuple[int, ...] = (1, 2), six: bool = False, cfg: LiftConfig | None = None
) -> list[dict[str, Any]]:
    """Run the benchmark, print a table, return its rows."""
    cfg = cfg or LiftConfig()
    fixtures = json.loads((ROOT / "tests" / "fixtures" / "grasps.json").read_text())
    objects = _objects()
    full = cfg.close_time + cfg.lift_time + cfg.hold_time
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"lift test: {len(objects)} objects x {n_grasps} grasps per set; protocol {full:g} s simulated "
        f"(close {cfg.close_time:g} + lift {cfg.lift_time:g} + hold {cfg.hold_time:g}), timestep {cfg.timestep}, "
        f"six-direction {'on' if six else 'off'}; {os.cpu_count()} CPUs, load average {load:.2f} at start"
    )
    head = f"{'set':>6} {'workers':>7} {'tests':>6} {'wall s':>7} {'tests/s':>8} {'per core':>8} {'speed-up':>8}"
    print(head + f" {'sim/wall':>8} {'success':>7} {'early':>6} {'tests/cpu-s':>11}")
    rows = []
    for w in workers:  # start the pools first: start-up is a one-off cost, reported apart
        if w > 1:
            t0 = time.perf_counter()
            lift_test([objects["cube_45mm"]], np.resize(fixtures["cube_45mm"], (2 * w, 28)), cfg, w, False, 1)
            print(f"pool of {w} workers: start-up + first models {time.perf_counter() - t0:.2f} s (not timed below)")
    for mixed in (False, True):
        base_rate = None
        for w in workers:
            t0, c0 = time.perf_counter(), time.process_time()
            n = ok = early = 0
            sim_s = 0.0
            for name, mesh in objects.items():
                poses = _poses(np.array(fixtures[name]), n_grasps, mixed)
                res = lift_test([mesh], poses, cfg, workers=w, six_directions=six)
                n += len(res)
                ok += int(res["lift_success"].sum())
                early += int(res["early_stop"].sum())
                sim_s += float(res["sim_time"].sum())
            wall = time.perf_counter() - t0
            cpu = time.process_time() - c0  # this process only: meaningful with 1 worker
            rate = n / wall
            base_rate = base_rate or rate
            row = {
                "set": "mixed" if mixed else "held", "workers": w, "tests": n, "wall_s": wall,
                "tests_per_s": rate, "per_core": rate / w, "speed_up": rate / base_rate,
                "sim_per_wall": sim_s / wall / w, "success": ok / n, "early_stop": early / n,
                "tests_per_cpu_s": n / cpu if w == 1 else float("nan"),
            }  # fmt: skip
            rows.append(row)
            print(
                f"{row['set']:>6} {w:>7} {n:>6} {wall:>7.2f} {rate:>8.2f} {rate / w:>8.2f} {rate / base_rate:>8.2f}"
                f" {row['sim_per_wall']:>8.1f} {ok / n:>7.2f} {early / n:>6.2f} {row['tests_per_cpu_s']:>11.2f}"
            )
    shutdown_pool()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--grasps", type=int, default=48, help="poses per object and set")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--six", action="store_true", help="also run the six-direction test")
    args = ap.parse_args()
    bench_lift(args.grasps, tuple(args.workers), args.six)


if __name__ == "__main__":
    main()

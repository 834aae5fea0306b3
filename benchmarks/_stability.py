"""Stability-filter benchmark: PyBullet table-rest checks per second, 1 vs 2 worker processes.

    .venv/bin/python benchmarks/_stability.py [--objects 8] [--repeats 4] [--workers 1 2]

(also run by benchmarks/sim.py)

Builds `--objects` primitive objects (cube, box, ball, upright and lying cylinder, thin upright plate,
cone, two-part L bracket; cycled) as object folders in the docs/CONTRACTS.md layout in a temp dir, runs
`check_objects` over them `--repeats` times with each worker count, and prints: checks/s (each check
= 1 + n_poses simulations of StabilityConfig.duration), the speed-up over 1 worker, the spawn-pool
start-up time (included in checks/s; "w/o start" subtracts a separately timed pool start-up), and
simulated time / wall time, both for the PyBullet stepping alone and for whole checks (stable poses,
shape building, I/O included). The speed-up needs 2 otherwise idle cores to mean anything.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import tempfile
import time
from pathlib import Path

import trimesh

from dexlite_core.config import StabilityConfig
from dexlite_core.sim.stability import _init_worker, check_objects


def _primitives() -> list[tuple[str, trimesh.Trimesh, list[trimesh.Trimesh]]]:
    lying = trimesh.transformations.rotation_matrix(math.pi / 2, [1, 0, 0])
    base = trimesh.creation.box((0.08, 0.03, 0.02))
    post = trimesh.creation.box((0.02, 0.03, 0.06))
    post.apply_translation([0.03, 0.0, 0.04])  # stands on the base's right end, no overlap
    objs = [
        ("cube", trimesh.creation.box((0.08, 0.08, 0.08))),
        ("box", trimesh.creation.box((0.1, 0.05, 0.03))),
        ("ball", trimesh.creation.icosphere(radius=0.04)),
        ("bottle", trimesh.creation.cylinder(radius=0.03, height=0.1)),
        ("roller", trimesh.creation.cylinder(radius=0.03, height=0.1).apply_transform(lying)),
        ("plate", trimesh.creation.box((0.1, 0.005, 0.15))),
        ("cone", trimesh.creation.cone(radius=0.04, height=0.1)),
    ]
    out = [(name, m, [m.convex_hull]) for name, m in objs]
    out.append(("bracket", trimesh.util.concatenate([base, post]), [base, post]))
    return out


def _write_folders(root: Path, n: int) -> list[Path]:
    prims = _primitives()
    dirs = []
    for i in range(n):
        name, mesh, parts = prims[i % len(prims)]
        d = root / f"{name}-{i:03d}"
        (d / "convex").mkdir(parents=True)
        mesh.export(d / "mesh.obj")
        for k, part in enumerate(parts):
            part.export(d / "convex" / f"part_{k:03d}.obj")
        (d / "meta.json").write_text(json.dumps({"object_id": d.name, "name": name, "n_parts": len(parts)}))
        (d / "_SUCCESS").write_text("")
        dirs.append(d)
    return dirs


def _pool_startup(workers: int) -> float:
    """Seconds to start a spawn pool of `workers` with the stability initializer and close it."""
    t = time.perf_counter()
    with mp.get_context("spawn").Pool(workers, initializer=_init_worker) as pool:
        pool.map(abs, range(workers), chunksize=1)
    return time.perf_counter() - t


def bench_stability(
    n_objects: int = 8,
    repeats: int = 4,
    workers: tuple[int, ...] = (1, 2),
    cfg: StabilityConfig | None = None,
) -> dict:
    """Run the benchmark; returns the figures printed by ``__main__`` (per worker count: checks,
    wall_s, checks_per_s, speedup, pool_startup_s, checks_per_s_excl_startup (wall minus a separately
    timed pool start-up), sim_over_step_wall, sim_over_check_wall, kept)."""
    cfg = cfg or StabilityConfig()
    out: dict = {"n_objects": n_objects, "repeats": repeats, "cpus": os.cpu_count(), "runs": {}}
    with tempfile.TemporaryDirectory(prefix="dexlite-bench-stab-") as tmp:
        dirs = _write_folders(Path(tmp), n_objects)
        check_objects(dirs[:1], cfg, workers=1)  # warm-up: imports, this process's client
        jobs = dirs * repeats
        base = None
        for w in workers:
            startup = _pool_startup(w) if w > 1 else 0.0
            t = time.perf_counter()
            res = check_objects(jobs, cfg, workers=w)
            wall = time.perf_counter() - t
            errors = [r.reason for r in res if r.error]
            if errors:
                raise RuntimeError(f"benchmark objects failed: {errors[:3]}")
            rate = len(res) / wall
            base = base or rate
            sim = sum(r.sim_time for r in res)
            out["runs"][w] = {
                "checks": len(res),
                "wall_s": wall,
                "checks_per_s": rate,
                "speedup": rate / base,
                "pool_startup_s": startup,
                "checks_per_s_excl_startup": len(res) / max(wall - startup, 1e-9),
                "sim_over_step_wall": sim / sum(r.step_time for r in res),
                "sim_over_check_wall": sim / sum(r.wall_time for r in res),
                "kept": sum(r.kept for r in res),
            }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--objects", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=4)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args()
    cfg = StabilityConfig()
    print_figures(bench_stability(args.objects, args.repeats, tuple(args.workers), cfg), cfg)


def print_figures(fig: dict, cfg: StabilityConfig) -> None:
    print(
        f"stability filter: {fig['n_objects']} objects x {fig['repeats']} repeats, "
        f"{1 + cfg.n_poses} poses x {cfg.duration:g} s sim each, {fig['cpus']} CPUs"
    )
    print(
        f"{'workers':>7} {'checks':>6} {'wall s':>7} {'checks/s':>9} {'speed-up':>8} {'pool start s':>12} "
        f"{'checks/s w/o start':>18} {'sim/step-wall':>13} {'sim/check-wall':>14} {'kept':>5}"
    )
    for w, r in fig["runs"].items():
        print(
            f"{w:>7} {r['checks']:>6} {r['wall_s']:>7.2f} {r['checks_per_s']:>9.2f} {r['speedup']:>8.2f} "
            f"{r['pool_startup_s']:>12.2f} {r['checks_per_s_excl_startup']:>18.2f} "
            f"{r['sim_over_step_wall']:>13.1f} {r['sim_over_check_wall']:>14.1f} {r['kept']:>5}"
        )


if __name__ == "__main__":
    main()

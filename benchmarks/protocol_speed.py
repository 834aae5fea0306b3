"""Evaluation protocols' speed on pipeline grasps: tests per second per core, against the lift test.

    .venv/bin/python benchmarks/protocol_speed.py [GRASPS.parquet --objects DIR] [--per-object 12] [--workers 1]

Runs the same pipeline grasps (by default 12 per object of the last ``make demo``'s evaluated raw,
expanded and post-optimised samples) through the write-up's lift test without the six-direction
test (the baseline, measured in the same run), the lift test with it, and the ``dexgraspbench``
protocol; prints tests per second per core (tests / wall time / workers), the ratio to the baseline,
success rates and simulated seconds per test. The target for ``dexgraspbench`` is >= 10 tests/s/core.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from _runs import last_run, pipeline_grasps

from dexlite_core.config import PipelineConfig
from dexlite_core.sim.evaluate import result_columns
from dexlite_core.sim.lift import run_protocols, shutdown_pool, worker_pool


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("grasps", nargs="?", type=Path, help="grasp Parquet (object_id, q)")
    ap.add_argument("--objects", type=Path, help="object folders (default: runs/default's objects artifact)")
    ap.add_argument("--per-object", type=int, default=12)
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args()
    df, grasps = pipeline_grasps(args.grasps, args.per_object)
    objects = args.objects or last_run("objects") / "objects"
    cfg = PipelineConfig()
    print(f"{len(df)} grasps over {df['object_id'].nunique()} objects from {grasps}; {args.workers} worker(s); "
          f"load average at start {os.getloadavg()[0]:.2f}")
    if args.workers > 1:
        worker_pool(args.workers).submit(int, 0).result()  # start-up is not timed
    runs = [("lift (baseline)", "lift", cfg.lift, False, "lift_success", "sim_time"),
            ("lift + six-direction", "lift", cfg.lift, True, "six_dir_success", "sim_time"),
            ("dexgraspbench", "dexgraspbench", cfg.dexgraspbench, False, "dgb_success", "dgb_sim_time")]
    print(f"{'protocol':>22} {'tests/s/core':>12} {'vs baseline':>11} {'success':>8} {'sim s/test':>10}")
    base = None
    for label, name, pcfg, six, verdict, sim_time in runs:
        t0 = time.perf_counter()
        res = run_protocols(df, objects, (pcfg,), args.workers, six, result_columns([name]))
        rate = len(res) / (time.perf_counter() - t0) / args.workers
        base = base or rate
        print(f"{label:>22} {rate:>12.1f} {rate / base:>11.2f} {res[verdict].fillna(False).astype(bool).mean():>8.3f}"
              f" {res[sim_time].mean():>10.2f}", flush=True)
    shutdown_pool()


if __name__ == "__main__":
    main()

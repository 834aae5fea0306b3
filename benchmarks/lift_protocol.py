"""Lift-protocol comparison on pipeline grasps: time and verdicts of two protocols, side by side.

    .venv/bin/python benchmarks/lift_protocol.py [GRASPS.parquet --objects DIR] [--per-object 48]
        [--workers 2] [--other lift_time=1.5,hold_time=0.5] [--six]

    e.g. the six-direction test's optional early pass against the full 2 s per direction:
    .venv/bin/python benchmarks/lift_protocol.py --six --other six_dir_early_pass=True

Runs the lift test (with ``--six`` also the six-direction test) on the same grasps three times in
one process pool: the default protocol (:class:`LiftConfig`), the default protocol on poses perturbed by +-1e-6
(rad / m; the noise floor: verdicts near the edge flip under any change, simulation notes item 9),
and the ``--other`` protocol (``field=value`` pairs over the defaults; by default the former 1.5 s
lift + 0.5 s hold). Prints wall time, tests per second per core, success rate and how many
verdicts differ from the default run (with ``--six``: the same for the six-direction verdict, and
simulated seconds per test). Without arguments it reads the ``evaluate`` and ``objects``
artifacts that ``runs/default/stages.json`` records for the last ``make demo`` (round 1: raw,
expanded and post-optimised samples, so both held and dropped grasps).
"""

from __future__ import annotations

import argparse
import ast
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from _runs import last_run, pipeline_grasps

from dexlite_core.config import LiftConfig
from dexlite_core.sim.lift import evaluate_grasps, shutdown_pool, worker_pool


def _overrides(text: str) -> dict[str, object]:
    out: dict[str, object] = {}
    for item in filter(None, text.split(",")):
        key, value = item.split("=", 1)
        out[key.strip()] = ast.literal_eval(value.strip())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("grasps", nargs="?", type=Path, help="grasp Parquet (object_id, q)")
    ap.add_argument("--objects", type=Path, help="object folders (default: runs/default's objects artifact)")
    ap.add_argument("--per-object", type=int, default=48, help="grasps per object (a seeded shuffle)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--other", default="lift_time=1.5,hold_time=0.5", help="field=value,... over LiftConfig()")
    ap.add_argument("--six", action="store_true", help="also run and compare the six-direction test")
    args = ap.parse_args()
    df, grasps = pipeline_grasps(args.grasps, args.per_object)
    objects = args.objects or last_run("objects") / "objects"
    rng = np.random.default_rng(1)
    perturbed = df.assign(q=[np.asarray(q, np.float64) + rng.uniform(-1e-6, 1e-6, 28) for q in df["q"]])
    base = LiftConfig()
    other = replace(base, **_overrides(args.other))
    runs = [("default", base, df), ("default, poses +-1e-6", base, perturbed), (args.other, other, df)]
    print(f"{len(df)} grasps over {df['object_id'].nunique()} objects from {grasps}; {args.workers} workers")
    print(f"default protocol: lift {base.lift_height:g} m in {base.lift_time:g} s, hold {base.hold_time:g} s")
    worker_pool(args.workers).submit(int, 0).result()  # start-up is not timed
    head = f"{'protocol':>34} {'wall s':>7} {'per core':>8} {'success':>8} {'differ':>6}"
    print(head + (f" {'six-dir':>8} {'differ':>6} {'sim s':>6}" if args.six else ""))
    first: dict[str, np.ndarray] = {}
    for label, cfg, table in runs:
        t0 = time.perf_counter()
        res, _ = evaluate_grasps(table, objects, cfg, workers=args.workers, six_directions=args.six)
        wall = time.perf_counter() - t0
        line = f"{label:>34} {wall:>7.1f} {len(res) / wall / args.workers:>8.1f}"
        for col in ("lift_success", "six_dir_success") if args.six else ("lift_success",):
            ok = res[col].fillna(False).to_numpy(bool)
            ref = first.setdefault(col, ok)
            line += f" {ok.mean():>8.3f} {int((ok != ref).sum()):>6}"
        if args.six:
            line += f" {res['sim_time'].mean():>6.2f}"
        print(line, flush=True)
    shutdown_pool()


if __name__ == "__main__":
    main()

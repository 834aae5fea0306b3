"""Seed-grasp quality: share of optimised grasps that pass the MuJoCo lift test, per object.

    .venv/bin/python benchmarks/seed_success.py [--objects 'box-*' 'cylinder-*' ...] [--grasps 32]
        [--iters 1000] [--out runs/seed_success]

Ingests the bundled objects matching the patterns (default: all of them), optimises `--grasps`
seed grasps per object with the configured annealing schedule, lift-tests them (and the
six-direction test), and prints per-object and overall rates with the median energy terms of
passing and failing grasps. Writes the grasps with their results to OUT/seed_grasps.parquet.
"""

from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from dexlite_core.config import PipelineConfig
from dexlite_core.dataset import ENERGY_COLUMNS
from dexlite_core.objects import bundled_sources, ingest_mesh
from dexlite_core.sim.lift import lift_test
from dexlite_core.synthesis import grasps_table, object_field, seed_grasps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--objects", nargs="+", default=["*"])
    ap.add_argument("--grasps", type=int, default=32)
    ap.add_argument("--iters", type=int, default=PipelineConfig().seed.annealing.n_iter)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default="runs/seed_success")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = PipelineConfig()
    seed_cfg = dataclasses.replace(
        cfg.seed, grasps_per_object=args.grasps, annealing=dataclasses.replace(cfg.seed.annealing, n_iter=args.iters)
    )
    cfg = dataclasses.replace(cfg, seed=seed_cfg)
    sources = [s for s in bundled_sources() if any(fnmatch.fnmatch(s.name, p) for p in args.objects)]
    frames = []
    t0 = time.perf_counter()
    for src in sources:
        obj = ingest_mesh(src, out / "objects", cfg.objects)
        t = time.perf_counter()
        field = object_field(obj, torch.device("cpu"))
        grasps = seed_grasps(obj.mesh, field, cfg.seed.grasps_per_object, cfg.seed, cfg.energy, seed=cfg.seed.seed)
        table = grasps_table(obj.object_id, grasps, "seed").to_pandas()
        t_opt = time.perf_counter() - t
        res = lift_test(obj, np.stack(table["q"].to_numpy()), cfg.lift, workers=args.workers)
        for c in res.columns:
            table[c] = res[c].to_numpy()
        table["name"] = src.name
        frames.append(table)
        print(
            f"{src.name:>20}: lift {table['lift_success'].mean():.2f}  six-dir {table['six_dir_success'].mean():.2f}"
            f"  (opt {t_opt:.0f} s, lift {time.perf_counter() - t - t_opt:.0f} s)",
            flush=True,
        )
    df = pd.concat(frames, ignore_index=True)
    print(
        f"\noverall: {len(df)} grasps on {len(frames)} objects, lift success {df['lift_success'].mean():.3f}, "
        f"six-direction {df['six_dir_success'].mean():.3f}, {time.perf_counter() - t0:.0f} s"
    )
    cols = [c for c in ENERGY_COLUMNS] + ["penetration_depth", "object_moved_at_contact", "slip"]
    print("median terms, passing vs failing lift:")
    print(df.groupby("lift_success")[cols].median().T.round(4).to_string())
    df.drop(columns=["q"]).to_csv(out / "seed_results.csv", index=False)


if __name__ == "__main__":
    main()

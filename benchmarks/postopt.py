"""Post-optimisation benchmark: grasps per second of the write-up's 200-step annealing.

    .venv/bin/python benchmarks/postopt.py [--batch 64 256 1024] [--steps 200] [--loop 4]

Measures, in one run on one object (a 5 x 5 x 10 cm box):
  * batched post-optimisation of B poses for `--steps` steps, B in `--batch`;
  * a naive loop optimising one pose at a time (`--loop` poses, extrapolated per grasp);
and prints grasps/s, the speed-up over the loop, and the ratio against the write-up's figure
of ~2 s per grasp (RTX 4050 laptop).
"""

from __future__ import annotations

import argparse
import time

import torch
import trimesh

from dexlite_core.config import AnnealingConfig, EnergyConfig, SeedConfig
from dexlite_core.energy import ObjectField
from dexlite_core.objects.sdf import SDFGrid, compute_sdf
from dexlite_core.optim.init import initial_poses
from dexlite_core.synthesis import hand_on, optimise

WRITEUP_SECONDS_PER_GRASP = 2.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--batch", type=int, nargs="+", default=[64, 256, 1024])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--loop", type=int, default=4, help="poses for the one-at-a-time baseline")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    device = torch.device(args.device)
    mesh = trimesh.creation.box((0.05, 0.05, 0.1))
    values, lo, hi, _ = compute_sdf(mesh, 64, 0.04)
    field = ObjectField(
        SDFGrid(values, lo, hi).to(device),
        torch.as_tensor(mesh.sample(2048), dtype=torch.float32, device=device),
    )
    hand = hand_on(str(device))
    cfg = AnnealingConfig(n_iter=args.steps)
    q_all, idx_all = initial_poses(hand, mesh, max(args.batch), SeedConfig())
    q_all, idx_all = q_all.to(device), idx_all.to(device)

    def run(B: int) -> float:
        t = time.perf_counter()
        optimise(field, q_all[:B], idx_all[:B], cfg, EnergyConfig())
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t

    run(8)  # warm-up
    print(f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}, {args.steps} steps")
    t_loop = sum(run(1) for _ in range(args.loop)) / args.loop
    loop_rate = 1.0 / t_loop
    print(f"{'mode':>14} {'seconds':>9} {'grasps/s':>9} {'vs loop':>8} {'vs write-up':>11}")
    print(
        f"{'loop (B=1)':>14} {t_loop:>9.2f} {loop_rate:>9.2f} {1.0:>8.1f} "
        f"{loop_rate * WRITEUP_SECONDS_PER_GRASP:>11.1f}"
    )
    for B in args.batch:
        t = run(B)
        rate = B / t
        print(
            f"{f'batch B={B}':>14} {t:>9.2f} {rate:>9.1f} {rate / loop_rate:>8.1f} "
            f"{rate * WRITEUP_SECONDS_PER_GRASP:>11.1f}"
        )


if __name__ == "__main__":
    main()

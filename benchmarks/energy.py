"""Energy benchmark: forward+backward time of the full grasp energy vs. FK alone, same run.

    .venv/bin/python benchmarks/energy.py [--batch 256 1024] [--repeats 10]

Prints milliseconds per call (median of repeats) for B poses: FK (+backward through the link
transforms), the full energy (+backward), and the ratio energy / FK.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
import trimesh

from dexlite_core.config import EnergyConfig, ObjectConfig
from dexlite_core.energy import grasp_energy
from dexlite_core.objects import ingest_mesh
from dexlite_core.optim.init import initial_poses
from dexlite_core.synthesis import hand_on, object_field


def _median_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1e3 * statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--batch", type=int, nargs="+", default=[256, 1024])
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "box.obj"
        trimesh.creation.box((0.06, 0.04, 0.1)).export(src)
        obj = ingest_mesh(src, Path(tmp) / "objects", ObjectConfig())
        field = object_field(obj, device)
        mesh = obj.mesh
    hand = hand_on(str(device))
    print(f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}")
    print(f"{'B':>6} {'FK fwd+bwd ms':>14} {'energy fwd+bwd ms':>18} {'ratio':>6} {'poses/s':>9}")
    for B in args.batch:
        q, idx = initial_poses(hand, mesh, B)
        q = q.to(device).requires_grad_(True)
        idx = idx.to(device)

        def fk(q: torch.Tensor = q) -> None:
            hand.kin.link_transforms(q[:, 6:]).sum().backward()

        def energy(q: torch.Tensor = q, idx: torch.Tensor = idx) -> None:
            grasp_energy(hand, field, q, idx, EnergyConfig()).total.sum().backward()

        t_fk, t_e = _median_ms(fk, args.repeats), _median_ms(energy, args.repeats)
        print(f"{B:>6} {t_fk:>14.1f} {t_e:>18.1f} {t_e / t_fk:>6.2f} {B / t_e * 1e3:>9.0f}")


if __name__ == "__main__":
    main()

"""The shipped model on meshes this project never saw, at their real size: ``dexlite grasp --all``.

    .venv/bin/python benchmarks/unseen_meshes.py [--candidates 32] [--out /tmp/unseen] [--model PATH]

Meshes: metric meshes of pybullet_data that no config of this project selects (robot links, toy
blocks, a domino; 5-20 cm longest edge), each ingested at its own size. Every candidate the command
samples, post-optimises and validates is kept (``--all``), so the rates are over all candidates:
physically valid success (protocol passed, penetration and self-penetration <= 5 mm) under the lift
test and under DexGraspBench's protocol, with n and 95% Wilson intervals, overall and per mesh, and
the command's wall time (cold start included). Grasps of one mesh are not independent: read the
per-mesh column before the pooled interval.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MESHES = (  # pybullet_data paths; none is in the bundled set or random_urdfs
    "toys/cube.obj",
    "toys/cylinder.obj",
    "toys/prism.obj",
    "domino/domino.obj",
    "kuka_iiwa/meshes/link_7.obj",
    "franka_panda/meshes/collision/link7.obj",
    "franka_panda/meshes/collision/hand.obj",
    "a1/meshes/hip.obj",
    "xarm/xarm_description/meshes/xarm6/collision/link5_vhacd.obj",
    "xarm/xarm_description/meshes/xarm6/collision/link6_vhacd.obj",
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--candidates", type=int, default=32)
    ap.add_argument("--out", type=Path, default=Path("/tmp/dexlite-unseen"))
    ap.add_argument("--model", type=Path, default=None)
    args = ap.parse_args()
    import pybullet_data

    from dexlite_core import validity
    from dexlite_core.stats import rate_entry
    from storage.parquet import read_grasps

    data = Path(pybullet_data.getDataPath())
    meshes = [data / m for m in MESHES]
    out = args.out / "grasps.parquet"
    cmd = [sys.executable, "-m", "flows.cli", "grasp", *map(str, meshes), "--all", "--n", str(args.candidates),
           "--candidates", str(args.candidates), "--out", str(out)]
    if args.model:
        cmd += ["--model", str(args.model)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    print(proc.stdout.strip())
    print(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "")
    if proc.returncode not in (0, 1) or not out.is_file():
        sys.exit(f"dexlite grasp failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    df = read_grasps(out).to_pandas()

    def cell(g) -> str:
        parts = []
        for p in ("lift", "dexgraspbench"):
            e = rate_entry(validity.valid_success(g, p, validity.DEFAULT_MAX_PENETRATION).fillna(False).astype(bool))
            parts.append(f"{100 * e['rate']:.1f}% [{100 * e['ci95'][0]:.1f}, {100 * e['ci95'][1]:.1f}]")
        valid = rate_entry(g["valid"].fillna(False).astype(bool))
        return " | ".join(parts) + f" | {100 * valid['rate']:.1f}% (n={valid['n']})"

    print(f"\n{len(meshes)} unseen meshes at real size, {args.candidates} candidates each; wall {wall:.0f} s "
          f"(one `dexlite grasp` call, cold start included)\n")
    print("| mesh | lift valid | dexgraspbench valid | both (kept by `dexlite grasp`) |\n|---|---|---|---|")
    for oid, g in df.groupby("object_id", sort=False):
        print(f"| {oid.rsplit('-', 1)[0]} | {cell(g)} |")
    print(f"| **all** | {cell(df)} |")


if __name__ == "__main__":
    main()

"""Do the evaluation protocols' verdicts converge in the timestep? Agreement with finer steps.

    .venv/bin/python benchmarks/eval_convergence.py [GRASPS.parquet --objects DIR] [--per-object 48]
        [--quarter 12] [--workers 2] [--protocols lift dexgraspbench]

Runs the same pipeline grasps (by default 48 per object of the last ``make demo``'s evaluated
raw, expanded and post-optimised samples: 1008 grasps over 21 objects, held and dropped ones) under
each protocol at its configured timestep ``dt`` and again at finer steps, and prints for each run
the share of verdicts that agree with the ``dt`` run (with a 95% Wilson interval), the success rate
and the cost per test (core-seconds: wall time x workers / tests). The ``dt`` run on poses perturbed
by +-1e-6 gives the noise floor: verdicts near the edge flip under any change (simulation notes
item 9), so no step can agree better than that. The ``dt/4`` runs also print their agreement with
the ``dt/2`` run on the same grasps. Verdicts: ``lift_success`` and
the six-direction test for ``lift``, ``dgb_success`` for ``dexgraspbench``.

MuJoCo's ``refsafe`` keeps a contact's solref time constant >= 2 x timestep. At the protocols' 4 ms
it raises the configured 5 ms to 8 ms (softer contacts); at 2 ms and below it leaves 5 ms. So a
finer step changes two things at once, and the runs separate them:

- ``dt/2, same contacts``: half the step, solref 8 ms written out (the contacts the ``dt`` run
  really has): numerical convergence alone;
- ``dt/4, same contacts``: a quarter of the step on the first ``--quarter`` grasps per object;
- ``dt/2, solref as set``: half the step with the configured 5 ms (refsafe no longer raises it):
  what refsafe's softening does to the verdicts;
- ``dt, early pass on/off``: dexgraspbench with its early pass switched (agreement with the default).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from _runs import last_run, pipeline_grasps

from dexlite_core.config import PipelineConfig
from dexlite_core.sim.evaluate import protocol_configs, result_columns
from dexlite_core.sim.lift import run_protocols, shutdown_pool, worker_pool
from dexlite_core.stats import format_rate, rate_entry

PERTURB = 1e-6  # rad / m: verdicts near the edge flip under any change (simulation notes item 9)
VERDICTS = {"lift": ("lift_success", "six_dir_success"), "dexgraspbench": ("dgb_success",)}


def variants(cfg: object) -> list[tuple[str, object, bool]]:
    """(label, config, quarter subset only) of each run of one protocol's config; the first is the
    reference, the second the same on perturbed poses (the noise floor)."""
    dt, tau = cfg.timestep, cfg.solref[0]
    same = (max(tau, 2 * dt), cfg.solref[1])  # what refsafe gives at dt
    early = []
    if hasattr(cfg, "early_pass"):  # the other setting of dexgraspbench's early pass, at dt
        early = [(f"dt, early pass {'off' if cfg.early_pass else 'on'}", replace(cfg, early_pass=not cfg.early_pass),
                  False)]
    return [
        (f"dt = {1000 * dt:g} ms (default)", cfg, False),
        (f"dt, poses +-{PERTURB:g}", cfg, False),
        *early,
        (f"dt/2, same contacts (solref {1000 * same[0]:g} ms)", replace(cfg, timestep=dt / 2, solref=same), False),
        *([(f"dt/2, solref as set ({1000 * tau:g} ms)", replace(cfg, timestep=dt / 2), False)]
          if tau < 2 * dt else []),  # only when refsafe raises the configured solref at dt
        (f"dt/4, same contacts (solref {1000 * same[0]:g} ms)", replace(cfg, timestep=dt / 4, solref=same), True),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("grasps", nargs="?", type=Path, help="grasp Parquet (object_id, q)")
    ap.add_argument("--objects", type=Path, help="object folders (default: runs/default's objects artifact)")
    ap.add_argument("--per-object", type=int, default=48, help="grasps per object (a seeded shuffle)")
    ap.add_argument("--quarter", type=int, default=12, help="grasps per object of the dt/4 runs")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--protocols", nargs="+", default=["lift", "dexgraspbench"])
    args = ap.parse_args()
    df, grasps = pipeline_grasps(args.grasps, args.per_object)
    objects = args.objects or last_run("objects") / "objects"
    subset = df.groupby("object_id").head(args.quarter).index.to_numpy()
    rng = np.random.default_rng(1)
    perturbed = df.assign(q=[np.asarray(q, np.float64) + rng.uniform(-PERTURB, PERTURB, 28) for q in df["q"]])
    print(f"{len(df)} grasps over {df['object_id'].nunique()} objects from {grasps}; dt/4 runs on {len(subset)}; "
          f"{args.workers} workers")
    worker_pool(args.workers).submit(int, 0).result()  # start-up is not timed
    cfg = PipelineConfig()
    for protocol in args.protocols:
        (base_cfg,) = protocol_configs(cfg, [protocol])
        reference: dict[str, np.ndarray] = {}
        print(f"\n{protocol}")
        print(f"{'run':>40} {'n':>5} " + " ".join(f"{c + ' agree [95% CI]':>34} {'success':>7}" for c in
                                                   VERDICTS[protocol]) + f" {'s/test/core':>11} {'tests/s/core':>12}")
        half: dict[str, np.ndarray] = {}  # the dt/2 same-contacts verdicts, against dt/4 too
        for i, (label, pcfg, quarter) in enumerate(variants(base_cfg)):
            table = df.loc[subset] if quarter else (perturbed if i == 1 else df)
            t0 = time.perf_counter()
            res = run_protocols(table, objects, (pcfg,), args.workers, protocol == "lift", result_columns([protocol]))
            cost = (time.perf_counter() - t0) * args.workers / len(res)
            line = f"{label:>40} {len(res):>5} "
            tail = ""
            for col in VERDICTS[protocol]:
                ok = res[col].fillna(False).to_numpy(bool)
                ref = reference.setdefault(col, ok)[subset if quarter else slice(None)]
                line += f"{format_rate(rate_entry(ok == ref)):>34} {ok.mean():>7.3f} "
                if label.startswith("dt/2, same"):
                    half[col] = ok
                elif quarter and col in half:
                    tail += f"  {col} vs dt/2: {format_rate(rate_entry(ok == half[col][subset]))}"
            print(line + f"{cost:>11.3f} {1 / cost:>12.1f}" + tail, flush=True)
    shutdown_pool()


if __name__ == "__main__":
    main()

"""Seed spread of the headline rates: the default CVAE trained with several seeds.

    .venv/bin/python benchmarks/seed_spread.py [--config configs/default.yaml] [--out runs/default]
        [--seeds 0 1 2] [--set sample.objects=val] [--dry-run]

For each seed S runs ``.venv/bin/dexlite run --config CONFIG --out OUT --set train.seed=S``. The
object split does not depend on any seed, and stages already cached for the config (objects,
stability, seed, lift, dataset) are reused from OUT's artifact store, so the seeds differ from
training on and a rerun resumes. After each run the evaluate stage's ``report.json`` is read
(``OUT/stages.json`` records the last run only). Prints, for sources raw and postopt and the rates
lift, dexgraspbench, lift_ungated, dexgraspbench_ungated (headline: validation objects), each
seed's rate with its 95% interval and n, then the mean, min, max, spread (max - min, points) and
the sample standard deviation across seeds (points); writes the table to OUT/seed_spread.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("raw", "postopt")
RATES = ("lift", "dexgraspbench", "lift_ungated", "dexgraspbench_ungated")


def command(config: str, out: str, seed: int, sets: Sequence[str] = ()) -> list[str]:
    """``dexlite run`` by this interpreter from the repository it runs in (``-m flows.cli`` with the
    repository as working directory), so a clone's runs reuse that clone's artifacts."""
    extra = [a for s in sets for a in ("--set", s)]
    return [sys.executable, "-m", "flows.cli", "run", "--config", config, "--out", out,
            "--set", f"train.seed={seed}", *extra]


def evaluate_report(out: Path) -> dict[str, Any]:
    """The evaluate stage's report.json of the last run of run folder `out`."""
    stages = json.loads((out / "stages.json").read_text())
    if "evaluate" not in stages:
        raise SystemExit(f"no evaluate stage in {out / 'stages.json'}")
    return json.loads((Path(stages["evaluate"]["path"]) / "report.json").read_text())


def aggregate(reports: Sequence[Mapping[str, Any]], seeds: Sequence[int],
              sources: Sequence[str] = SOURCES, names: Sequence[str] = RATES) -> list[dict[str, Any]]:
    """One row per (source, name) present in any report: ``per_seed`` (seed, n, k, rate, ci95;
    rate None where that report lacks the entry) and, over the seeds with a rate, ``mean``,
    ``min``, ``max`` (fractions), ``spread_pp`` (max - min) and ``std_pp`` (sample standard
    deviation, None for fewer than two seeds), in percentage points."""
    rows = []
    for src in sources:
        for name in names:
            entries = [((r.get(src) or {}).get("rates") or {}).get(name) for r in reports]
            if not any(entries):
                continue
            per_seed = [{"seed": s, "n": (e or {}).get("n"), "k": (e or {}).get("k"),
                         "rate": (e or {}).get("rate"), "ci95": (e or {}).get("ci95")}
                        for s, e in zip(seeds, entries, strict=True)]  # fmt: skip
            vals = [p["rate"] for p in per_seed if p["rate"] is not None]
            row: dict[str, Any] = {"source": src, "name": name, "per_seed": per_seed,
                                   "mean": None, "min": None, "max": None, "spread_pp": None, "std_pp": None}
            if vals:
                row.update(mean=statistics.fmean(vals), min=min(vals), max=max(vals),
                           spread_pp=100 * (max(vals) - min(vals)),
                           std_pp=100 * statistics.stdev(vals) if len(vals) > 1 else None)
            rows.append(row)
    return rows


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}"


def _pp(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.1f}"


def format_table(rows: Sequence[Mapping[str, Any]]) -> str:
    lines = []
    for row in rows:
        lines.append(f"{row['source']:8s} {row['name']}")
        for p in row["per_seed"]:
            lo, hi = p["ci95"] or (None, None)
            ci = "" if lo is None or hi is None else f" [{_pct(lo)}, {_pct(hi)}]"
            rate = "n/a" if p["rate"] is None else f"{_pct(p['rate'])}%{ci} (n={p['n']})"
            lines.append(f"    seed {p['seed']}: {rate}")
        lines.append(f"    mean {_pct(row['mean'])}%  min {_pct(row['min'])}%  max {_pct(row['max'])}%  "
                     f"spread {_pp(row['spread_pp'])} pts  sd {_pp(row['std_pp'])} pts")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/default.yaml")
    ap.add_argument("--out", default="runs/default")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    ap.add_argument("--set", dest="sets", action="append", default=[],
                    help="more overrides for every seed, e.g. --set sample.objects=val (repeatable)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    reports = []
    for seed in args.seeds:
        cmd = command(args.config, args.out, seed, args.sets)
        print("$", " ".join(cmd), flush=True)
        if args.dry_run:
            continue
        subprocess.run(cmd, check=True, cwd=ROOT)
        reports.append(evaluate_report(out))  # stages.json is the last run's: read it now
    if args.dry_run:
        return
    rows = aggregate(reports, args.seeds)
    print(format_table(rows))
    doc = {"config": args.config, "seeds": list(args.seeds), "rows": rows}
    (out / "seed_spread.json").write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {out / 'seed_spread.json'}")


if __name__ == "__main__":
    sys.exit(main())

"""Artifacts of the last ``make demo`` run, for benchmarks that measure on pipeline grasps."""

from __future__ import annotations

import json
from pathlib import Path

RECORD = Path(__file__).resolve().parents[1] / "runs" / "default" / "stages.json"


def last_run(stage: str) -> Path:
    """The artifact folder of `stage` (e.g. ``evaluate``, ``dataset@round2``) in the last run of
    runs/default, as its ``stages.json`` records it."""
    runs = json.loads(RECORD.read_text()) if RECORD.is_file() else {}
    if stage not in runs:
        raise SystemExit(f"no {stage} artifact in {RECORD}: run `make demo` (with `--rounds 2` for round-2 "
                         "stages) first, or pass the paths")
    return Path(runs[stage]["path"])

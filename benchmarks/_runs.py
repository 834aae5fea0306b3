"""Artifacts of the last ``make demo`` run, for benchmarks that measure on pipeline grasps."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

RECORD = Path(__file__).resolve().parents[1] / "runs" / "default" / "stages.json"


def last_run(stage: str) -> Path:
    """The artifact folder of `stage` (e.g. ``evaluate``, ``dataset@round2``) in the last run of
    runs/default, as its ``stages.json`` records it."""
    runs = json.loads(RECORD.read_text()) if RECORD.is_file() else {}
    if stage not in runs:
        raise SystemExit(f"no {stage} artifact in {RECORD}: run `make demo` (with `--rounds 2` for round-2 "
                         "stages) first, or pass the paths")
    return Path(runs[stage]["path"])


def pipeline_grasps(grasps: Path | None, per_object: int, seed: int = 0) -> tuple[pd.DataFrame, Path]:
    """`per_object` grasps of each object (a seeded shuffle) of a grasp Parquet file, by default the
    last demo run's evaluated grasps (raw, expanded and post-optimised samples: held and dropped
    ones); returns (object_id, q) rows and the file read."""
    path = grasps or last_run("evaluate") / "grasps.parquet"
    df = pd.read_parquet(path, columns=["object_id", "q"])
    df = df.sample(frac=1.0, random_state=seed).groupby("object_id").head(per_object).reset_index(drop=True)
    return df, path

"""The evaluation report of a pipeline run: :func:`dexlite_core.report.evaluation` of the evaluated
grasps plus the run's context (rounds so far, object counts, the seed grasps' lift test, the split,
the protocols' configs) and pictures of held and dropped grasps; written by
:func:`dexlite_core.report.write_report` as ``report.json``, ``report.html`` and ``report.md``."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dexlite_core import report as rep
from dexlite_core.config import PipelineConfig
from dexlite_core.objects import load_object

log = logging.getLogger("dexlite.report")


@dataclasses.dataclass
class RunContext:
    """What the report says about the run besides the evaluated grasps."""

    split: Mapping[str, list[str]]  # {"train": [...], "val": [...], "test": [...]} (no "test": none)
    dataset_stats: Mapping[str, Any]  # the dataset stage's stats.json (round, grasps)
    seed_lift: Mapping[str, Any]  # the lift stage's lift.json
    n_ingested: int
    n_kept: int
    postopt_timing: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # {"grasps", "seconds"}
    baseline_timing: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # {"grasps", "seconds", "steps"}
    previous_rounds: Sequence[Mapping[str, Any]] = ()  # the last round's report["rounds"]


def run_report(df: pd.DataFrame, ctx: RunContext, cfg: PipelineConfig) -> dict[str, Any]:
    """report.json's document: the evaluation of the validation objects (the headline), the same
    figures on the test objects apart (``test_objects``: the final table only), plus the run context
    (``baseline_steps``: the annealing steps of the no-CVAE baseline, None without one)."""
    seconds = {src: t["seconds"] / t["grasps"] for src, t in (("postopt", ctx.postopt_timing),
                                                              ("baseline", ctx.baseline_timing)) if t.get("grasps")}
    doc = rep.evaluation(df, ctx.split["val"], seconds, cfg.energy.n_contacts, cfg.evaluate.protocols,
                         cfg.evaluate.max_penetration, test_ids=ctx.split.get("test", ()))
    rounds = list(ctx.previous_rounds)
    rounds.append(rep.round_row(doc, int(ctx.dataset_stats.get("round", 1)), ctx.dataset_stats.get("grasps")))
    doc.update({
        "rounds": rounds,
        "objects": {"ingested": ctx.n_ingested, "kept_by_stability": ctx.n_kept},
        "seed": dict(ctx.seed_lift),
        "train": dict(ctx.split),
        "baseline_steps": ctx.baseline_timing.get("steps"),
        "lift_config": dataclasses.asdict(cfg.lift),
        "dexgraspbench_config": dataclasses.asdict(cfg.dexgraspbench),
    })  # fmt: skip
    return doc


def report_pictures(df: pd.DataFrame, objects_root: Path, out_dir: Path, per_kind: int = 2) -> dict[str, Path]:
    """Pictures of the first `per_kind` held and dropped grasps of each source (caption -> PNG); a
    picture that fails is logged and left out (it must not sink the report)."""
    from dexlite_core.viz import render_png

    pictures: dict[str, Path] = {}
    meshes: dict[str, Any] = {}
    for src, part in df.groupby("source"):
        for held in (True, False):
            kind = "held" if held else "dropped"
            pick = part[part["lift_success"].fillna(False).astype(bool) == held].head(per_kind)
            for _, row in pick.iterrows():
                oid, gid = row["object_id"], int(row["grasp_id"])
                name = f"{src}-{kind}-{oid}-{gid}.png"
                try:
                    if oid not in meshes:
                        meshes[oid] = load_object(objects_root / oid).mesh
                    render_png(meshes[oid], np.asarray(row["q"])[None], out_dir / name)
                except Exception as e:  # noqa: BLE001
                    log.warning("report picture %s failed: %s", name, e)
                    continue
                pictures[f"{src}, {kind}: {oid} grasp {gid} (lift ratio {row['lift_ratio']:.2f})"] = out_dir / name
    return pictures


def write_run_report(out_dir: Path, df: pd.DataFrame, ctx: RunContext, cfg: PipelineConfig,
                     objects_root: Path) -> dict[str, Any]:
    """Write the run's report into `out_dir`; returns its document."""
    doc = run_report(df, ctx, cfg)
    head = df[rep.headline(df, ctx.split["val"], ctx.split.get("test", ()))]
    groups = {str(src): g for src, g in head.groupby("source")}
    rep.write_report(out_dir, doc, groups, report_pictures(head, objects_root, out_dir))
    return doc

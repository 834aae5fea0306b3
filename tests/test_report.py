"""Evaluation report figures and the Dex1B loop's dataset growth, on hand-made grasp tables."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from dexlite_core import report
from dexlite_core.config import PipelineConfig
from dexlite_core.dataset import grasps_to_table
from dexlite_core.hand.asset import joint_limits
from dexlite_core.stages import previous, stage_dataset
from storage.parquet import concat_tables, read_grasps, write_grasps


def _poses(n: int, seed: int = 0) -> np.ndarray:
    lo, hi = joint_limits()
    rng = np.random.default_rng(seed)
    q = np.zeros((n, 28), np.float32)
    q[:, 6:] = rng.uniform(lo, hi, (n, 22))
    return q


def _evaluated(object_id: str, source: str, held: list[bool], base_id: int = 0):
    n = len(held)
    return grasps_to_table(object_id, _poses(n, base_id), source, grasp_id=base_id + np.arange(n),
                           lift_success=held, lift_ratio=[1.0 if h else 0.0 for h in held],
                           six_dir_success=held, penetration_depth=np.full(n, 1e-3))


def test_headline_is_validation_objects_and_train_objects_apart() -> None:
    df = concat_tables([
        _evaluated("val-a", "raw", [True, False, False, False]),
        _evaluated("val-a", "postopt", [True, True, True, False]),
        _evaluated("train-b", "raw", [True, True]),
        _evaluated("train-b", "postopt", [False, False]),
    ]).to_pandas()  # fmt: skip
    doc = report.evaluation(df, ["val-a"], seconds={"postopt": 0.02})
    assert doc["evaluated_on"] == "validation objects"
    assert doc["raw"]["n"] == 4 and doc["raw"]["success_rate"] == 0.25
    assert doc["postopt"]["n"] == 4 and doc["postopt"]["success_rate"] == 0.75
    assert doc["postopt"]["seconds_per_grasp"] == 0.02
    assert doc["train_objects"]["raw"]["success_rate"] == 1.0
    assert doc["train_objects"]["postopt"]["success_rate"] == 0.0
    assert doc["per_object"]["val-a"]["raw"]["validation"] is True
    assert doc["per_object"]["train-b"]["postopt"]["validation"] is False
    # no validation object evaluated: the headline says so instead of mixing silently
    only_train = report.evaluation(df[df["object_id"] == "train-b"], ["val-a"])
    assert only_train["evaluated_on"] == "training objects" and only_train["raw"]["n"] == 2


def test_joint_entropy_zero_for_identical_grasps_and_high_for_spread_ones() -> None:
    same = np.repeat(_poses(1), 200, axis=0)
    assert report.joint_entropy(same) == 0.0
    spread = _poses(5000, seed=1)
    assert report.joint_entropy(spread) > 0.95 * np.log2(report.ENTROPY_BINS)


def test_report_files_and_rounds_table(tmp_path: Path) -> None:
    df = concat_tables([_evaluated("val-a", "raw", [True, False]),
                        _evaluated("val-a", "postopt", [True, True])]).to_pandas()
    doc = report.evaluation(df, ["val-a"])
    doc["rounds"] = [report.round_row(doc, 1, 100), {**report.round_row(doc, 2, 140)}]
    report.write_report(tmp_path, doc, {s: g for s, g in df.groupby("source")})
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["postopt"]["success_rate"] == 1.0 and saved["raw"]["n"] == 2
    page = (tmp_path / "report.html").read_text()
    assert "Rounds" in page and "data:image/png;base64" in page
    md = report.render_markdown(saved)
    assert "| postopt | 2 | 100.0% |" in md and "| 2 | 140 |" in md
    assert (tmp_path / "report.md").read_text() == md
    assert not list(tmp_path.glob(".*.tmp"))


def test_dataset_round_two_adds_the_held_expanded_grasps(tmp_path: Path) -> None:
    cfg = PipelineConfig()
    lift = tmp_path / "lift"
    lift.mkdir()
    write_grasps(concat_tables([_evaluated("obj", "seed", [True, True, False])]), lift / "grasps.parquet")
    round1 = tmp_path / "round1"
    round1.mkdir()
    s1 = stage_dataset({"lift": lift}, round1, cfg)
    assert (s1["round"], s1["grasps"], s1["fed_back"]) == (1, 2, 0)

    evaluated = tmp_path / "evaluate"
    evaluated.mkdir()
    write_grasps(concat_tables([
        _evaluated("obj", "expanded", [True, False, True], base_id=500_000),
        _evaluated("obj", "raw", [True, True], base_id=0),  # raw is not fed back by default
    ]), evaluated / "grasps.parquet")  # fmt: skip
    round2 = tmp_path / "round2"
    round2.mkdir()
    s2 = stage_dataset({"lift": lift, previous("dataset"): round1, previous("evaluate"): evaluated}, round2, cfg)
    assert (s2["round"], s2["grasps"], s2["fed_back"]) == (2, 4, 2)
    table = read_grasps(round2 / "grasps.parquet").to_pandas()
    assert sorted(table["source"]) == ["expanded", "expanded", "seed", "seed"]
    assert table["grasp_id"].is_unique
    assert table["lift_success"].all()
    assert table.groupby("source")["round"].agg(set).to_dict() == {"expanded": {2}, "seed": {1}}

"""Evaluation report figures and the Dex1B loop's dataset growth, on hand-made grasp tables."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dag.spec import previous
from dexlite_core import report, validity
from dexlite_core.config import PipelineConfig
from dexlite_core.dataset import concat_tables, grasps_to_table
from dexlite_core.hand.asset import joint_limits
from dexlite_core.sim.lift import summarise as lift_summarise
from dexlite_core.stats import format_rate, rate_entry, wilson_interval
from stages.dataset import run as stage_dataset
from storage.parquet import read_grasps, write_grasps


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


def _no_nan(name: str) -> None:
    raise AssertionError(f"report.json holds {name}: not valid JSON")


def _frame(*tables, **columns) -> pd.DataFrame:
    """Evaluated grasp tables as one DataFrame, with extra per-grasp columns (the protocols' and the
    analytic metrics', whether or not the grasp schema has them yet)."""
    df = concat_tables(list(tables)).to_pandas()
    for name, values in columns.items():
        df[name] = pd.Series(list(values), index=df.index, dtype=object if name.startswith("dgb") else None)
    return df


def _rates(section: dict) -> list[dict]:
    """Every rate entry of one source's figures."""
    out = list(section["rates"].values())
    if section.get("q1_positive_rate"):
        out.append(section["q1_positive_rate"])
    return out


def test_headline_is_validation_objects_and_train_objects_apart() -> None:
    df = concat_tables([
        _evaluated("val-a", "raw", [True, False, False, False]),
        _evaluated("val-a", "postopt", [True, True, True, False]),
        _evaluated("train-b", "raw", [True, True]),
        _evaluated("train-b", "postopt", [False, False]),
    ]).to_pandas()  # fmt: skip
    doc = report.evaluation(df, ["val-a"], seconds={"postopt": 0.02})
    assert doc["evaluated_on"] == "validation objects"
    assert doc["protocols"] == ["lift"] and doc["max_penetration_m"] == 0.005
    assert doc["raw"]["n"] == 4 and doc["raw"]["success_rate"] == 0.25
    assert doc["raw"]["success_rate_ci95"] == pytest.approx(list(wilson_interval(1, 4)))
    assert doc["raw"]["rates"]["lift"] == {"n": 4, "k": 1, "rate": 0.25, "ci95": doc["raw"]["success_rate_ci95"]}
    assert doc["raw"]["ungated_success_rate"] == 0.25 and doc["raw"]["six_direction_success_rate"] == 0.25
    assert doc["postopt"]["n"] == 4 and doc["postopt"]["success_rate"] == 0.75
    assert doc["postopt"]["seconds_per_grasp"] == 0.02
    assert doc["train_objects"]["raw"]["success_rate"] == 1.0
    assert doc["train_objects"]["postopt"]["success_rate"] == 0.0
    assert doc["train_objects"]["postopt"]["success_rate_ci95"] == pytest.approx(list(wilson_interval(0, 2)))
    assert doc["per_object"]["val-a"]["raw"]["validation"] is True
    assert doc["per_object"]["train-b"]["postopt"]["validation"] is False
    assert doc["per_object"]["val-a"]["postopt"]["rates"]["lift"] == {
        "rate": 0.75, "ci95": pytest.approx(list(wilson_interval(3, 4)))}
    # penetration 1 mm everywhere (float32): inside both gates
    assert doc["raw"]["rates"]["lift_1mm"]["rate"] == 0.25
    assert doc["raw"]["penetration_mm"]["max"] == pytest.approx(1.0, abs=1e-4)
    # no validation object evaluated: the headline says so instead of mixing silently
    only_train = report.evaluation(df[df["object_id"] == "train-b"], ["val-a"])
    assert only_train["evaluated_on"] == "training objects" and only_train["raw"]["n"] == 2


def test_test_objects_are_their_own_section_and_never_the_headline(tmp_path: Path) -> None:
    from dexlite_core.run_report import RunContext, run_report

    df = concat_tables([
        _evaluated("val-a", "raw", [True, False]), _evaluated("val-a", "postopt", [True, True]),
        _evaluated("train-b", "raw", [True, True, True]),
        _evaluated("test-c", "raw", [False, False, False, True]), _evaluated("test-c", "postopt", [True] * 4),
    ]).to_pandas()  # fmt: skip
    doc = report.evaluation(df, ["val-a"], test_ids=["test-c"])
    assert doc["evaluated_on"] == "validation objects" and doc["raw"]["n"] == 2 and doc["raw"]["n_objects"] == 1
    assert list(doc["train_objects"]) == ["raw"] and doc["train_objects"]["raw"]["n"] == 3
    assert doc["test_objects"]["raw"]["n"] == 4 and doc["test_objects"]["raw"]["success_rate"] == 0.25
    assert doc["test_objects"]["postopt"]["rates"]["lift"]["ci95"] == pytest.approx(list(wilson_interval(4, 4)))
    assert doc["per_object"]["test-c"]["raw"]["test"] is True and doc["per_object"]["val-a"]["raw"]["test"] is False
    # no validation object evaluated: the headline falls back to the training objects, never the test ones
    no_val = report.evaluation(df[df["object_id"] != "val-a"], ["val-a"], test_ids=["test-c"])
    assert no_val["evaluated_on"] == "training objects" and no_val["raw"]["n"] == 3 and "postopt" not in no_val
    assert "train_objects" not in no_val and no_val["test_objects"]["raw"]["n"] == 4
    only_test = report.evaluation(df[df["object_id"] == "test-c"], ["val-a"], test_ids=["test-c"])
    assert only_test["evaluated_on"] == "no objects" and "raw" not in only_test and "test_objects" in only_test
    # the rounds keep the test objects' figures apart, and both tables render
    doc["rounds"] = [report.round_row(doc, 1, 10), report.round_row(doc, 2, 14)]
    assert doc["rounds"][1]["test_objects"]["raw"]["rates"]["lift"]["n"] == 4
    assert doc["rounds"][1]["raw"]["n"] == 2
    md = report.render_markdown(doc)
    test_part = md.split(f"## {report.TEST_TITLE}")[1].split("## ")[0]
    assert "| raw | 4 | 25.0% [" in test_part and "| postopt | 4 | 100.0% [" in test_part
    assert "## Rounds, test objects" in md and "| 2 | 14 | 25.0% [" in md.split("## Rounds, test objects")[1]
    report.write_report(tmp_path, doc, {})
    assert report.TEST_TITLE.split(":")[0] in (tmp_path / "report.html").read_text()
    # the run report: the split's "test" list, and a split of an older run without one
    ctx = dict(dataset_stats={"round": 1, "grasps": 9}, seed_lift={}, n_ingested=3, n_kept=3)
    full = run_report(df, RunContext(split={"train": ["train-b"], "val": ["val-a"], "test": ["test-c"]}, **ctx),
                      PipelineConfig())
    assert full["test_objects"]["raw"]["n"] == 4 and full["train"]["test"] == ["test-c"]
    old = run_report(df, RunContext(split={"train": ["train-b", "test-c"], "val": ["val-a"]}, **ctx), PipelineConfig())
    assert "test_objects" not in old and old["train_objects"]["raw"]["n"] == 7 and old["raw"]["n"] == 2


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
    saved = json.loads((tmp_path / "report.json").read_text(), parse_constant=_no_nan)
    assert saved["postopt"]["success_rate"] == 1.0 and saved["raw"]["n"] == 2
    assert saved["rounds"][1]["postopt"]["rates"]["lift"]["ci95"] == pytest.approx([0.3424, 1.0], abs=1e-4)
    page = (tmp_path / "report.html").read_text()
    assert "Rounds" in page and "data:image/png;base64" in page
    assert "100.0% [34.2, 100.0] (n=2)" in page and "dexgraspbench" in page
    md = report.render_markdown(saved)
    # the dexgraspbench protocol was not run on these grasps: n/a beside the lift rate
    assert "| postopt | 2 | 100.0% [34.2, 100.0] (n=2) | n/a |" in md
    assert "| 2 | 140 | 50.0% [9.5, 90.5] (n=2) | n/a |" in md
    assert "penetration and self-penetration <= 5 mm" in md
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


def test_a_held_grasp_sunk_past_the_gate_passes_the_protocol_but_is_not_valid() -> None:
    # four held grasps: clean, sunk 2 cm into the object, 3 mm (inside 5 mm, past 1 mm), self-penetrating
    df = _frame(_evaluated("val-a", "postopt", [True, True, True, True]),
                penetration_depth=[0.0005, 0.02, 0.003, 0.0],
                self_penetration=[0.0, 0.0, 0.0, 0.012],
                dgb_success=[True, True, True, True], dgb_failed=["", "", "", ""],
                dgb_sim_unstable=[False, False, False, False], sim_unstable=[False] * 4,
                contact_count=[4, 6, 5, 3], q1=[0.02, 0.0, 0.01, 0.03])  # fmt: skip
    assert validity.protocol_success(df, "lift").tolist() == [True, True, True, True]
    assert validity.physically_valid(df).tolist() == [True, False, True, False]
    assert validity.valid_success(df, "lift", 0.001).tolist() == [True, False, False, False]
    doc = report.evaluation(df, ["val-a"])
    r = doc["postopt"]
    for p in validity.PROTOCOLS:
        assert r["rates"][f"{p}_ungated"]["rate"] == 1.0
        assert (r["rates"][p]["k"], r["rates"][p]["n"]) == (2, 4)
        assert (r["rates"][f"{p}_1mm"]["k"], r["rates"][f"{p}_1mm"]["n"]) == (1, 4)
    assert r["success_rate"] == 0.5 and r["ungated_success_rate"] == 1.0
    assert r["six_direction_success_rate"] == 0.5  # six-direction is gated the same way
    assert r["penetration_mm"]["max"] == pytest.approx(20.0, rel=1e-5)
    assert r["penetration_mm"]["median"] == pytest.approx(1.75, rel=1e-5)
    assert r["self_penetration_mm"]["max"] == pytest.approx(12.0, rel=1e-5)
    assert r["mean_contact_count"] == 4.5 and r["mean_q1"] == pytest.approx(0.015)
    assert (r["q1_positive_rate"]["k"], r["q1_positive_rate"]["n"]) == (3, 4)
    assert r["sim_unstable"] == {"lift": 0, "dexgraspbench": 0}
    assert r["gated_on"] == ["penetration_depth", "self_penetration"]
    assert doc["protocols"] == ["lift", "dexgraspbench"]


def test_unstable_simulation_and_missing_penetration_are_failures() -> None:
    df = _frame(_evaluated("obj", "raw", [True, True, True]),
                penetration_depth=[0.0, np.nan, 0.0],
                dgb_success=[True, True, True], dgb_sim_unstable=[True, False, False])  # fmt: skip
    assert validity.physically_valid(df).tolist() == [True, False, True]
    assert validity.protocol_success(df, "dexgraspbench").tolist() == [False, True, True]
    assert validity.valid_success(df, "dexgraspbench").tolist() == [False, False, True]
    assert validity.unstable_counts(df) == {"dexgraspbench": 1}
    # an old table without the analytic columns (or with them all null, as read through the new
    # schema) is not gated on them, and says so
    assert validity.physically_valid(df.drop(columns=["penetration_depth"])).all()
    df["penetration_depth"] = None
    df["self_penetration"] = None
    assert validity.gate_columns(df) == [] and validity.physically_valid(df).all()
    doc = report.evaluation(df, ["obj"])
    assert doc["raw"]["gated_on"] == [] and doc["raw"]["penetration_mm"] is None
    assert doc["raw"]["q1_positive_rate"] is None and doc["raw"]["mean_q1"] is None
    assert "not gated on: penetration_depth (raw), self_penetration (raw)" in report.render_markdown(doc)


def test_every_rate_has_an_interval_in_json_and_markdown(tmp_path: Path) -> None:
    held = [True, False, True, True, False]
    df = _frame(_evaluated("val-a", "raw", held), _evaluated("val-a", "postopt", held[::-1]),
                _evaluated("train-b", "raw", [True, True]),
                penetration_depth=[0.0, 0.001, 0.004, 0.006, 0.0] * 2 + [0.0, 0.0],
                self_penetration=[0.0] * 12, q1=[0.0, 0.1] * 6, contact_count=[3] * 12,
                dgb_success=[True, True, False, True, None] * 2 + [True, False],
                dgb_failed=["", "", "+x", "", None] * 2 + ["", "-z"],
                dgb_sim_unstable=[False] * 12, sim_unstable=[False] * 12)  # fmt: skip
    doc = report.evaluation(df, ["val-a"])
    doc["rounds"] = [report.round_row(doc, 1, 10), report.round_row(doc, 2, 20)]
    seed_table = pd.DataFrame({"lift_success": [True] * 9 + [False], "six_dir_success": [True] * 8 + [False] * 2,
                               "lift_ratio": 1.0, "slip": 0.0, "penetration_depth": 0.0})
    doc["seed"] = lift_summarise(seed_table)  # the lift stage's lift.json
    report.write_report(tmp_path, doc, {s: g for s, g in df[df["object_id"] == "val-a"].groupby("source")})
    saved = json.loads((tmp_path / "report.json").read_text(), parse_constant=_no_nan)
    md = (tmp_path / "report.md").read_text()
    page = (tmp_path / "report.html").read_text()
    sections = [saved[s] for s in ("raw", "postopt")] + list(saved["train_objects"].values())
    for section in sections:
        names = set(section["rates"])
        assert {"lift", "lift_1mm", "lift_ungated", "dexgraspbench", "dexgraspbench_1mm",
                "dexgraspbench_ungated", "six_direction"} <= names  # fmt: skip
        for e in _rates(section):
            lo, hi = e["ci95"]
            assert e["n"] > 0 and 0.0 <= lo <= e["rate"] <= hi <= 1.0
        for key in ("success_rate", "six_direction_success_rate", "ungated_success_rate"):
            assert section[f"{key}_ci95"] is not None and len(section[f"{key}_ci95"]) == 2
        for name in names:
            assert format_rate(section["rates"][name]) in md
            assert format_rate(section["rates"][name]) in page
    # grasps the protocol skipped (None) are not counted in its n
    assert saved["raw"]["rates"]["dexgraspbench"]["n"] == 4 and saved["raw"]["rates"]["lift"]["n"] == 5
    # raw's lift: held grasps 0, 2, 3 with penetration 0, 4, 6 mm -> 2 valid at 5 mm, 1 at 1 mm
    assert (saved["raw"]["rates"]["lift"]["k"], saved["raw"]["rates"]["lift_1mm"]["k"]) == (2, 1)
    for per_src in saved["per_object"].values():
        for e in per_src.values():
            assert all(len(v["ci95"]) == 2 for v in e["rates"].values())
    rows = [line for line in md.splitlines() if line.startswith("| raw |")]
    assert len(rows) == 2 and "[" in rows[0].split("|")[3]  # headline and training objects, with intervals
    assert format_rate(saved["rounds"][1]["raw"]["rates"]["dexgraspbench"]) in md.split("## Rounds")[1]
    assert "data:image/png;base64" in page
    assert f"success {format_rate(rate_entry([True] * 9 + [False]))}" in md  # the seed grasps' rates too
    assert f"six-direction {format_rate(rate_entry([True] * 8 + [False] * 2))}" in md


def test_a_source_without_dexgraspbench_verdicts_reports_na() -> None:
    df = _frame(_evaluated("val-a", "raw", [True, False]), _evaluated("val-a", "postopt", [True, True]),
                dgb_success=[None, None, True, False], dgb_sim_unstable=[None, None, False, False])
    doc = report.evaluation(df, ["val-a"])
    assert "dexgraspbench" not in doc["raw"]["rates"] and doc["postopt"]["rates"]["dexgraspbench"]["n"] == 2
    md = report.render_markdown(doc)
    raw = next(line for line in md.splitlines() if line.startswith("| raw |")).split(" | ")
    post = next(line for line in md.splitlines() if line.startswith("| postopt |")).split(" | ")
    header = next(line for line in md.splitlines() if line.startswith("| grasps |")).split(" | ")
    for col in ("dexgraspbench valid [95% CI]", "dexgraspbench ungated", "dexgraspbench @1 mm"):
        assert raw[header.index(col)] == "n/a" and post[header.index(col)] != "n/a"
    assert raw[header.index("lift valid [95% CI]")] == "50.0% [9.5, 90.5] (n=2)"
    # the columns absent from the table altogether
    only_lift = report.evaluation(df.drop(columns=["dgb_success", "dgb_sim_unstable"], errors="ignore"), ["val-a"])
    assert only_lift["protocols"] == ["lift"] and "n/a" in report.render_markdown(only_lift)
    assert only_lift["postopt"]["sim_unstable"] == {}


def test_pca_cumvar_of_low_dimensional_and_isotropic_grasps() -> None:
    rng = np.random.default_rng(0)
    q = np.tile(_poses(1, seed=3).astype(np.float64), (400, 1))
    q[:, 3:6] = [0.3, -0.2, 1.1]
    q[:, :3] += rng.normal(0, 0.05, (400, 3))  # translation varies in 3 directions ...
    q[:, 6:8] += rng.normal(0, 0.1, (400, 2))  # ... and two joints: 5 directions
    assert report.pca_cumvar(q) == pytest.approx(1.0, abs=1e-9)
    assert report.pca_cumvar(q.astype(np.float32)) == pytest.approx(1.0, abs=1e-9)  # as stored (float32)
    q3 = q.copy()
    q3[:, 6:8] = q[0, 6:8]
    assert report.pca_cumvar(q3) == pytest.approx(1.0, abs=1e-9)
    iso = rng.normal(0, 0.3, (2000, 28))
    assert report.pca_cumvar(iso) < 0.5
    assert report.pca_cumvar(np.tile(q[:1], (5, 1))) is None and report.pca_cumvar(q[:1]) is None
    # the doc carries it per source
    df = _frame(_evaluated("val-a", "raw", [True] * 3))
    assert 0.0 < report.evaluation(df, ["val-a"])["raw"]["diversity_pca_cumvar5"] <= 1.0


def test_joint_entropy_nats_zero_for_identical_and_near_ln100_for_uniform() -> None:
    same = np.repeat(_poses(1), 300, axis=0)
    assert report.joint_entropy_nats(same) == 0.0
    uniform = _poses(50_000, seed=2)
    h = report.joint_entropy_nats(uniform)
    assert np.log(100) - 0.02 < h <= np.log(100)
    assert report.joint_entropy(uniform) == pytest.approx(h / np.log(2) * np.log2(20) / np.log2(100), rel=0.02)


def test_the_no_cvae_baseline_is_a_row_beside_the_model_in_every_section(tmp_path: Path) -> None:
    from dexlite_core.run_report import RunContext, run_report

    df = concat_tables([
        _evaluated("val-a", "baseline", [True, False, False, False]), _evaluated("val-a", "raw", [True, True]),
        _evaluated("val-a", "postopt", [True, True]),
        _evaluated("test-c", "baseline", [False, False]), _evaluated("test-c", "raw", [True, False]),
    ]).to_pandas()  # fmt: skip
    ctx = RunContext(split={"train": [], "val": ["val-a"], "test": ["test-c"]}, dataset_stats={"round": 1},
                     seed_lift={}, n_ingested=2, n_kept=2, postopt_timing={"grasps": 2, "seconds": 1.0},
                     baseline_timing={"grasps": 6, "seconds": 3.0, "steps": 200})
    doc = run_report(df, ctx, PipelineConfig())
    assert doc["baseline"]["n"] == 4 and doc["baseline"]["success_rate"] == 0.25
    assert doc["baseline"]["seconds_per_grasp"] == 0.5 and doc["postopt"]["seconds_per_grasp"] == 0.5
    assert doc["test_objects"]["baseline"]["n"] == 2 and doc["baseline_steps"] == 200
    assert doc["rounds"][0]["baseline"]["rates"]["lift"]["n"] == 4
    assert doc["per_object"]["val-a"]["baseline"]["success_rate"] == 0.25
    label = "no CVAE (init + 200 steps)"
    assert report.source_label("baseline", doc) == label and report.source_label("raw", doc) == "raw"
    assert report.source_label("baseline") == "no CVAE (init + post-opt steps)"  # no run context
    md = report.render_markdown(doc)
    head, test_part = md.split(f"## {report.TEST_TITLE}")
    for part, n in ((head, 4), (test_part, 2)):  # the headline and the test objects: the baseline first
        rows = [ln.split(" | ")[0] for ln in part.splitlines() if ln.startswith("| ") and "---" not in ln]
        assert rows[1:3] == [f"| {label}", "| raw"], rows
        assert f"| {label} | {n} | " in part
    report.write_report(tmp_path, doc, {s: g for s, g in df.groupby("source")})
    page = (tmp_path / "report.html").read_text()
    assert page.count(f"<th>{label}</th>") == 4  # headline and detail tables, two sections
    assert json.loads((tmp_path / "report.json").read_text())["baseline"]["n"] == 4

"""benchmarks/seed_spread.py: the aggregation of the seeds' reports."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "seed_spread.py"
_spec = importlib.util.spec_from_file_location("seed_spread", _PATH)
seed_spread = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(seed_spread)


def _entry(k: int, n: int) -> dict:
    return {"n": n, "k": k, "rate": k / n, "ci95": [k / n - 0.1, k / n + 0.1]}


def _report(lift_k: int, dgb: dict | None = None) -> dict:
    rates = {"lift": _entry(lift_k, 100), "lift_ungated": _entry(lift_k + 5, 100), "six_direction": _entry(1, 2)}
    if dgb is not None:
        rates["dexgraspbench"] = dgb
    return {"raw": {"rates": {"lift": _entry(10, 50)}}, "postopt": {"rates": rates}}


def test_aggregate_spread_and_sd_over_seeds():
    reports = [_report(40, _entry(30, 100)), _report(50), _report(45, _entry(20, 100))]
    rows = {(r["source"], r["name"]): r for r in seed_spread.aggregate(reports, [0, 1, 2])}
    # only the named rates, only where some report has them
    assert set(rows) == {("raw", "lift"), ("postopt", "lift"), ("postopt", "lift_ungated"),
                         ("postopt", "dexgraspbench")}
    lift = rows["postopt", "lift"]
    assert [p["seed"] for p in lift["per_seed"]] == [0, 1, 2]
    assert [p["n"] for p in lift["per_seed"]] == [100] * 3
    assert lift["mean"] == pytest.approx(0.45)
    assert (lift["min"], lift["max"]) == (pytest.approx(0.40), pytest.approx(0.50))
    assert lift["spread_pp"] == pytest.approx(10.0)
    assert lift["std_pp"] == pytest.approx(5.0)  # sample sd of 40, 50, 45
    assert lift["per_seed"][1]["ci95"] == pytest.approx([0.4, 0.6])
    # a seed without the entry is listed without a rate and left out of the figures
    dgb = rows["postopt", "dexgraspbench"]
    assert [p["rate"] for p in dgb["per_seed"]] == [0.3, None, 0.2]
    assert dgb["spread_pp"] == pytest.approx(10.0) and dgb["mean"] == pytest.approx(0.25)
    assert rows["raw", "lift"]["spread_pp"] == 0.0
    table = seed_spread.format_table(list(rows.values()))
    assert "spread 10.0 pts" in table and "seed 1: n/a\n" in table and "seed 0: 30.0% [20.0, 40.0] (n=100)" in table


def test_one_seed_has_no_sd_and_dry_run_runs_nothing(capsys, tmp_path):
    (row,) = seed_spread.aggregate([_report(40)], [7], sources=("postopt",), names=("lift",))
    assert row["std_pp"] is None and row["spread_pp"] == 0.0
    seed_spread.main(["--dry-run", "--out", str(tmp_path), "--seeds", "3", "4"])
    out = capsys.readouterr().out
    assert "--set train.seed=3" in out and "--set train.seed=4" in out
    assert not (tmp_path / "seed_spread.json").exists()

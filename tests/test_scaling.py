"""The scaling result (issue 15): ``dexlite_core.scaling`` on synthetic reports, and ``dexlite scaling``
on configs/tiny.yaml end to end (embedded Prefect)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dexlite_core import scaling as sc
from dexlite_core.stats import rate_entry

ROOT = Path(__file__).resolve().parents[1]


def _rate(k: int, n: int) -> dict:
    return rate_entry([True] * k + [False] * (n - k))


def _figures(n: int, lift: int, dgb: int, ungated: int, pen: float, bits: float) -> dict:
    """One source's figures as ``report.summarise`` writes them (the fields the table reads)."""
    rates = {"lift": _rate(lift, n), "dexgraspbench": _rate(dgb, n), "lift_ungated": _rate(ungated, n),
             "dexgraspbench_ungated": _rate(dgb, n), "six_direction": _rate(0, n)}
    return {"n": n, "n_objects": 2, "rates": rates, "success_rate": rates["lift"]["rate"],
            "penetration_mm": {"mean": pen, "median": pen, "p90": 2 * pen, "max": 3 * pen},
            "diversity_joint_entropy_bits": bits, "diversity_joint_entropy_nats": bits / 2,
            "diversity_pca_cumvar5": 0.9, "mean_q1": 0.01}


def _report(lift_raw: int, lift_post: int, baseline: bool = True, train: int = 3) -> dict:
    doc = {
        "evaluated_on": "validation objects",
        "protocols": ["lift", "dexgraspbench"],
        "max_penetration_m": 0.005,
        "raw": _figures(40, lift_raw, 2, 38, 4.0, 2.0),
        "postopt": _figures(40, lift_post, 10, 39, 0.5, 3.0),
        "test_objects": {"raw": _figures(20, lift_raw // 2, 1, 19, 4.5, 1.9),
                         "postopt": _figures(20, lift_post // 2, 5, 19, 0.6, 2.9)},
        "train": {"train": [f"t{i}" for i in range(train)], "val": ["v0", "v1"], "test": ["x0", "x1"]},
        "baseline_steps": 200 if baseline else None,
        "per_object": {},
    }
    if baseline:
        doc["baseline"] = _figures(40, 8, 1, 30, 1.0, 3.5)
        doc["test_objects"]["baseline"] = _figures(20, 4, 0, 15, 1.1, 3.4)
    return doc


def _models(baseline: bool = True) -> list[sc.Model]:
    # given out of order: the table sorts by training objects, "all" last
    return [sc.Model("all", 0, 30, _report(20, 30, baseline, train=60), {"steps": 500, "train_grasps": 900}, "b"),
            sc.Model("14", 14, 14, _report(10, 25, baseline, train=28), {"steps": 500, "train_grasps": 400}, "a")]


def test_table_numbers_and_order() -> None:
    table = sc.build_table(_models(), command="dexlite scaling --sizes 14 all")
    assert [m["label"] for m in table["models"]] == ["14", "all"]
    assert [m["steps"] for m in table["models"]] == [500, 500]
    assert [m["train_instances"] for m in table["models"]] == [28, 60]
    keys = [(r["set"], r["model"], r["source"]) for r in table["rows"]]
    assert keys == [(s, m, src) for s in ("validation", "test") for m in ("14", "all")
                    for src in ("baseline", "raw", "postopt")]
    first = table["rows"][0]
    assert first["source"] == "baseline" and first["train_objects"] == 14
    raw14 = table["rows"][1]
    assert raw14["n"] == 40 and raw14["lift"]["k"] == 10 and raw14["lift"]["rate"] == pytest.approx(0.25)
    assert raw14["lift"]["ci95"] == pytest.approx(list(_rate(10, 40)["ci95"]))
    assert raw14["dexgraspbench"]["k"] == 2 and raw14["lift_ungated"]["k"] == 38
    assert raw14["penetration_mm"]["p90"] == 8.0 and raw14["diversity_joint_entropy_bits"] == 2.0
    post_all_test = next(r for r in table["rows"] if r["set"] == "test" and r["model"] == "all"
                         and r["source"] == "postopt")
    assert post_all_test["n"] == 20 and post_all_test["lift"]["k"] == 15
    assert table["baseline_steps"] == 200 and table["notes"] == []
    json.dumps(table)  # JSON-safe as is


def test_markdown_names_the_command_and_every_row(tmp_path: Path) -> None:
    table = sc.build_table(_models(), command="dexlite scaling --config c.yaml --sizes 14 all")
    md = sc.render_markdown(table)
    assert "dexlite scaling --config c.yaml --sizes 14 all" in md
    assert "## Validation objects (2 objects)" in md and "## Test objects" in md
    assert "| 14 | raw | 40 | 25.0% [" in md
    assert "| all (30) | postopt | 40 | 75.0% [" in md
    assert "no CVAE (init + 200 steps)" in md
    assert md.index("## Validation") < md.index("## Test")
    paths = sc.write_outputs(tmp_path / "scaling", table)
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads(paths["json"].read_text())["rows"] == table["rows"]
    assert paths["md"].read_text() == md
    assert sorted(p.name for p in (tmp_path / "scaling").iterdir()) == ["scaling.json", "scaling.md", "scaling.png"]


def test_without_baseline_or_test_objects(tmp_path: Path) -> None:
    models = _models(baseline=False)
    for m in models:
        del m.report["test_objects"]
    table = sc.build_table(models)
    assert {r["source"] for r in table["rows"]} == {"raw", "postopt"}
    assert {r["set"] for r in table["rows"]} == {"validation"}
    md = sc.render_markdown(table)
    assert "no CVAE" not in md and "## Test objects" not in md
    sc.render_plot(table, tmp_path / "p.png")
    assert (tmp_path / "p.png").stat().st_size > 1000


def test_differing_validation_objects_are_flagged() -> None:
    models = _models()
    models[0].report["train"]["val"] = ["v0"]
    assert any("validation objects differ" in n for n in sc.build_table(models)["notes"])


def test_sizes_parse_and_collapse() -> None:
    assert sc.parse_sizes(["14", "100,300", "all", "14"]) == [14, 100, 300, 0]
    with pytest.raises(ValueError, match="'x'"):
        sc.parse_sizes(["x"])
    with pytest.raises(ValueError, match="no size"):
        sc.parse_sizes([])
    models, note = sc.resolve_sizes([14, 100, 300, 0], 250)
    assert models == [("14", 14), ("100", 100), ("all", 0)]
    assert note is not None and "300" in note and "250" in note
    models, note = sc.resolve_sizes([300, 1000], 250)  # no "all" asked: the larger sizes are it
    assert models == [("all", 0)] and "300, 1000" in (note or "")
    assert sc.resolve_sizes([14, 100], 250) == ([("14", 14), ("100", 100)], None)
    with pytest.raises(ValueError):
        sc.resolve_sizes([14], 0)


@pytest.mark.slow
def test_scaling_cli_on_tiny(tmp_path: Path) -> None:
    """`dexlite scaling --sizes 1 all` on configs/tiny.yaml (one training object: size 1 and all are two
    models on the same object, sharing every stage up to the dataset), embedded Prefect; then again:
    everything cached."""
    out = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "DEXLITE_", "TOY_"))}
    env["PYTHONPATH"] = str(ROOT)
    cmd = [sys.executable, "-m", "flows.cli", "scaling", "--config", str(ROOT / "configs" / "tiny.yaml"),
           "--out", str(out), "--sizes", "1", "all"]
    p = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, f"exit {p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-6000:]}"
    table = json.loads((out / "scaling" / "scaling.json").read_text())
    assert [m["label"] for m in table["models"]] == ["1", "all"]
    assert [m["max_objects"] for m in table["models"]] == [1, 0]
    assert table["command"].startswith("dexlite scaling --config ") and table["command"].endswith("--sizes 1 all")
    assert {(r["model"], r["source"]) for r in table["rows"] if r["set"] == "validation"} >= {
        ("1", "raw"), ("1", "postopt"), ("all", "raw"), ("all", "postopt")}
    assert (out / "scaling" / "scaling.png").read_bytes()[:4] == b"\x89PNG"
    assert table["command"] in (out / "scaling" / "scaling.md").read_text()
    assert f"command: {table['command']}" in p.stdout and "| 1 | raw |" in p.stdout
    # one artifact per stage up to the dataset (shared by both sizes), one per size from train on
    art = out / "artifacts"
    counts = {s: len([d for d in (art / s).iterdir() if not d.name.startswith(".")]) for s in
              ("objects", "stability", "seed", "lift", "dataset", "train", "evaluate")}
    assert counts == {"objects": 1, "stability": 1, "seed": 1, "lift": 1, "dataset": 1, "train": 2,
                      "evaluate": 2}, counts
    p2 = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert p2.returncode == 0, p2.stderr[-3000:]
    assert " ran " not in p2.stdout and p2.stdout.count(f"{'evaluate':<17} cached") == 2
    assert json.loads((out / "scaling" / "scaling.json").read_text())["rows"] == table["rows"]

"""Each stage called directly (``stages.<name>.run(inputs, out_dir, cfg)``, no Prefect, no store) on a
tiny input: two bundled objects and a broken mesh, a few grasps, a short training. The stages run in
DAG order, each reading the folders the previous ones wrote."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dexlite_core.config import PipelineConfig

pytestmark = pytest.mark.slow

TINY = {
    "select": {"bundled": ["box-brick-10cm", "cylinder-can-10cm"], "meshes": []},
    "objects": {"sdf_resolution": 32},
    "seed": {"grasps_per_object": 6, "annealing": {"n_iter": 40}},
    "dataset": {"require_lift": False},
    "train": {"epochs": 1, "batch_size": 4, "val_fraction": 0.5, "n_points": 256},
    "sample": {"n_per_object": 3, "expand_per_grasp": 1, "objects": "all"},
    "postopt": {"n_iter": 5},
    "evaluate": {"protocols": ["lift", "dexgraspbench"], "max_per_object": 2},
    "dag": {"shard_size": 1, "device": "cpu"},
}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Stage name -> its output folder, filled lazily in DAG order by :func:`call`."""
    root = tmp_path_factory.mktemp("stages")
    broken = root / "broken.obj"
    broken.write_text("v 0 0 0\nv 1 0 0\n")  # two vertices, no face
    cfg = PipelineConfig.from_dict({**TINY, "select": {**TINY["select"], "meshes": [str(broken)]}})
    return {"root": root, "cfg": cfg, "out": {}}


def call(run: dict, name: str, *deps: str) -> Path:
    """Run stage `name` on the folders of `deps` (each run before, in order) into a fresh folder."""
    import importlib

    if name in run["out"]:
        return run["out"][name]
    for d in deps:
        assert d in run["out"], f"test order: {d} before {name}"
    out = run["root"] / name
    out.mkdir()
    module = importlib.import_module(f"stages.{name}")
    run["summary_" + name] = module.run({d: run["out"][d] for d in deps}, out, run["cfg"])
    run["out"][name] = out
    return out


def _grasps(folder: Path):
    from storage.parquet import read_grasps

    return read_grasps(folder / "grasps.parquet").to_pandas()


def _json(path: Path):
    import json

    return json.loads(path.read_text())


def test_objects_ingests_the_good_meshes_and_records_the_broken_one(run: dict) -> None:
    out = call(run, "objects")
    doc = _json(out / "objects.json")
    assert len(doc["objects"]) == 2
    assert all((out / "objects" / o["object_id"] / "_SUCCESS").is_file() for o in doc["objects"])
    assert [f["source"] for f in doc["failed"]] == [str(run["root"] / "broken.obj")]
    assert not (out / ".shards").exists()  # three shards of one, merged, scratch removed


def test_stability_keeps_the_resting_objects(run: dict) -> None:
    out = call(run, "stability", "objects")
    rows = _json(out / "stability.json")
    kept = _json(out / "kept.json")
    assert set(rows) == {o["object_id"] for o in _json(run["out"]["objects"] / "objects.json")["objects"]}
    assert kept == sorted(k for k, r in rows.items() if r["kept"]) and any("box" in k for k in kept)


def test_seed_writes_grasps_per_kept_object(run: dict) -> None:
    call(run, "stability", "objects")
    out = call(run, "seed", "objects", "stability")
    df = _grasps(out)
    kept = _json(run["out"]["stability"] / "kept.json")
    assert sorted(df["object_id"].unique()) == kept and len(df) == 6 * len(kept)
    assert (df["source"] == "seed").all() and np.isfinite(df["energy"]).all()
    assert sorted(p.stem for p in (out / "pictures").glob("*.png")) == kept


def test_lift_tests_every_seed_grasp(run: dict) -> None:
    call(run, "seed", "objects", "stability")
    out = call(run, "lift", "objects", "seed")
    df, seed = _grasps(out), _grasps(run["out"]["seed"])
    assert len(df) == len(seed) and df["lift_success"].notna().all()
    np.testing.assert_array_equal(np.stack(df["q"]), np.stack(seed["q"]))
    assert _json(out / "lift.json")["n"] == len(df)


def test_dataset_round_one_is_the_lift_tested_grasps(run: dict) -> None:
    call(run, "lift", "objects", "seed")
    out = call(run, "dataset", "lift")
    df, stats = _grasps(out), _json(out / "stats.json")
    assert stats["round"] == 1 and stats["grasps"] == len(df) == len(_grasps(run["out"]["lift"]))
    assert (df["round"] == 1).all()


def test_train_writes_a_loadable_checkpoint_and_the_split(run: dict) -> None:
    from dexlite_core.sampling import GraspSampler

    call(run, "dataset", "lift")
    out = call(run, "train", "objects", "dataset")
    split = _json(out / "split.json")
    assert not set(split["train"]) & set(split["val"])
    assert sorted(split["train"] + split["val"]) == sorted(_grasps(run["out"]["dataset"])["object_id"].unique())
    assert GraspSampler.load(out / "checkpoint.pt").n_points == 256
    assert len(_json(out / "history.json")) == 1 and not (out / ".work").exists()


def test_sample_draws_raw_and_expanded_grasps(run: dict) -> None:
    call(run, "train", "objects", "dataset")
    out = call(run, "sample", "objects", "dataset", "train")
    df, data = _grasps(out), _grasps(run["out"]["dataset"])
    objs = sorted(data["object_id"].unique())
    assert (df["source"] == "raw").sum() == 3 * len(objs)
    assert (df["source"] == "expanded").sum() == len(data)
    assert df["grasp_id"].is_unique


def test_postopt_keeps_each_raw_grasp_id(run: dict) -> None:
    call(run, "sample", "objects", "dataset", "train")
    out = call(run, "postopt", "objects", "sample")
    df, sampled = _grasps(out), _grasps(run["out"]["sample"])
    raw = sampled[sampled["source"] == "raw"]
    assert sorted(df["grasp_id"]) == sorted(raw["grasp_id"]) and (df["source"] == "postopt").all()
    assert _json(out / "timing.json")["grasps"] == len(df)


def test_baseline_anneals_the_seed_init_with_the_postopt_steps_on_the_held_out_objects(run: dict) -> None:
    import dataclasses

    from dag.keys import item_keys
    from dexlite_core.splits import assign_splits, read_groups
    from stages import baseline

    call(run, "stability", "objects")
    out = call(run, "baseline", "objects", "stability")
    df, cfg = _grasps(out), run["cfg"]
    kept = _json(run["out"]["stability"] / "kept.json")
    split = assign_splits(kept, read_groups(run["out"]["objects"] / "objects", kept), 0.5, 0.1)
    held = sorted(split["val"] + split["test"])
    assert held and sorted(df["object_id"].unique()) == held and len(df) == 3 * len(held)  # sample.n_per_object
    assert (df["source"] == "baseline").all() and np.isfinite(df["energy"]).all()
    timing = _json(out / "timing.json")
    assert (timing["grasps"], timing["steps"]) == (len(df), 5) and timing["seconds"] > 0  # postopt.n_iter
    # seeded per object: the object's grasps again, alone
    again = run["root"] / "baseline-again"
    again.mkdir()
    baseline.shard({d: run["out"][d] for d in ("objects", "stability")}, again, cfg, held[:1])
    first = df[df["object_id"] == held[0]]
    np.testing.assert_array_equal(np.stack(_grasps(again)["q"]), np.stack(first["q"]))
    # an object's artifact does not depend on the model: every train config (the scaling curve) reuses it
    other = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, max_objects=1, epochs=9, seed=3))
    digests = baseline.item_inputs({"objects": run["out"]["objects"]}, cfg, held)
    assert item_keys(baseline.SPEC, other, held, digests) == item_keys(baseline.SPEC, cfg, held, digests)


def test_evaluate_simulates_both_protocols_and_reports(run: dict) -> None:
    call(run, "postopt", "objects", "sample")
    call(run, "baseline", "objects", "stability")
    out = call(run, "evaluate", "objects", "stability", "lift", "dataset", "train", "sample", "postopt", "baseline")
    df = _grasps(out)
    assert df.groupby(["object_id", "source"]).size().max() <= 2  # evaluate.max_per_object
    assert df["lift_success"].notna().all() and df["dgb_success"].notna().all()
    # the baseline on the sampled held-out objects, beside the model's grasps
    split = _json(run["out"]["train"] / "split.json")
    base = set(_grasps(run["out"]["baseline"])["object_id"])
    assert set(split["val"] + split["test"]) <= base  # the train stage's held-out objects all have one
    assert set(df.loc[df["source"] == "baseline", "object_id"]) == base & set(df.loc[df["source"] == "raw",
                                                                                       "object_id"])
    report = _json(out / "report.json")
    assert report["rounds"][0]["round"] == 1 and report["objects"]["ingested"] == 2
    assert report["evaluated_on"] == "validation objects"
    assert report["baseline"]["n"] == report["raw"]["n"] == 2 and report["baseline_steps"] == 5
    assert set(report["baseline"]["rates"]) == set(report["raw"]["rates"])  # both protocols, gated
    assert report["baseline"]["seconds_per_grasp"] > 0
    md = (out / "report.md").read_text()
    assert "| no CVAE (init + 5 steps) | 2 |" in md and "| raw | 2 |" in md
    assert (out / "report.md").is_file() and "<table>" in (out / "report.html").read_text()

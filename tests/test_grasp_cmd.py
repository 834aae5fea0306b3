"""``dexlite grasp``: a user's meshes at their real size -> validated, ranked grasps with the shipped
model; a broken mesh fails alone; ranking and keeping; the shipped model and its card."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import torch
import trimesh

from dexlite_core.dataset import grasps_to_table, table_q
from dexlite_core.mesh_grasps import keep_best, rank_grasps, ranked_table
from dexlite_core.shipped_model import MODEL_DIR, read_card, shipped_checkpoint

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "flows.cli"]


def _dexlite(*args: object, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=600,
                          env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})


# ------------------------------------------------------------------ ranking (no simulation)


def _evaluated(rows: list[dict]) -> pd.DataFrame:
    base = {"lift_success": True, "six_dir_success": True, "sim_unstable": False, "dgb_success": True,
            "dgb_sim_unstable": False, "penetration_depth": 0.001, "self_penetration": 0.0, "q1": 0.1}
    return pd.DataFrame([{**base, **r} for r in rows])


def test_rank_puts_valid_under_more_protocols_first_then_quality() -> None:
    df = _evaluated([
        {"object_id": "a", "q1": 0.9, "dgb_success": False},  # one protocol
        {"object_id": "a", "q1": 0.2},  # both, low quality
        {"object_id": "b", "q1": 0.5},
        {"object_id": "a", "q1": 0.4},  # both, better quality
        {"object_id": "a", "q1": 0.8, "penetration_depth": 0.02},  # passes, but sunk 2 cm into the object
    ])
    df["tag"] = range(len(df))
    out = rank_grasps(df, ("lift", "dexgraspbench"), 0.005)
    assert out["object_id"].tolist() == ["a", "a", "a", "a", "b"]  # objects in first-appearance order
    assert out["tag"].tolist() == [3, 1, 0, 4, 2]
    assert out["rank"].tolist() == [1, 2, 3, 4, 1]
    assert out["valid"].tolist() == [True, True, False, False, True]
    assert out["valid_lift"].tolist() == [True, True, True, False, True]


def test_keep_best_takes_the_first_n_valid_of_each_object_or_all_with_keep_all() -> None:
    n = 7
    valid = [True, False, True, True, False, True, True]
    table = grasps_to_table(["a"] * 4 + ["b"] * 3, np.zeros((n, 28), np.float32), "postopt", valid=valid,
                            rank=[1, 2, 3, 4, 1, 2, 3], grasp_id=np.arange(n))
    kept = keep_best(table, 2)
    assert kept.column("grasp_id").to_pylist() == [0, 2, 5, 6]
    everything = keep_best(table, 3, keep_all=True)
    assert everything.column("grasp_id").to_pylist() == [0, 1, 2, 4, 5, 6]  # rank <= 3, failures kept


def test_ranked_table_reorders_rows_with_their_poses() -> None:
    q = np.zeros((3, 28), np.float32)
    q[:, 0] = [0.1, 0.2, 0.3]
    table = grasps_to_table("a", q, "postopt", lift_success=[False, True, True], q1=[0.5, 0.1, 0.3],
                            penetration_depth=[0.0, 0.0, 0.0], self_penetration=[0.0, 0.0, 0.0])
    out = ranked_table(table, ("lift",), 0.005)
    assert table_q(out)[:, 0].tolist() == pytest.approx([0.3, 0.2, 0.1])
    assert out.column("rank").to_pylist() == [1, 2, 3]
    assert out.column("valid").to_pylist() == [True, True, False]


# ------------------------------------------------------------------ the shipped model


def test_the_package_ships_a_small_model_with_its_card() -> None:
    path = shipped_checkpoint()
    assert path.stat().st_size < 8e6
    card = read_card()
    assert " objects, " in card["training_data"]["objects"]["train"]
    assert card["training"]["steps"] > 0
    for split in ("validation objects", "test objects"):
        post = card["figures"][split]["postopt"]
        for protocol in ("lift", "dexgraspbench"):
            entry = post["rates"][protocol]
            assert entry["n"] > 0 and 0 <= entry["ci95"][0] <= entry["rate"] <= entry["ci95"][1] <= 1
    assert (MODEL_DIR / "card.md").read_text().count("|") > 10  # the figures table
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    assert all(v.dtype == torch.float16 for v in ckpt["model"].values() if v.is_floating_point())


# ------------------------------------------------------------------ end to end


def _ellipsoid(path: Path, extents: tuple[float, float, float]) -> Path:
    m = trimesh.creation.icosphere(subdivisions=3, radius=1.0)
    m.apply_scale(np.asarray(extents) / 2)
    m.export(path)
    return path


def _bottle(path: Path) -> Path:
    m = trimesh.creation.cylinder(radius=0.033, height=0.16, sections=32)  # 16 cm tall, 6.6 cm wide
    m.export(path)
    return path


@pytest.fixture(scope="module")
def grasped(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("grasp")
    lemon = _ellipsoid(tmp / "lemon.obj", (0.036, 0.036, 0.045))  # a 4.5 cm lemon, in metres
    bottle = _bottle(tmp / "bottle.obj")
    broken = tmp / "broken.obj"
    broken.write_text("v 0 0 0\nthis is not a mesh\n")
    out = tmp / "out" / "grasps.parquet"
    p = _dexlite("grasp", lemon, bottle, broken, "--n", 8, "--candidates", 32, "--out", out, "--no-gallery",
                 "--all", cwd=tmp)
    return {"proc": p, "out": out, "lemon": lemon, "bottle": bottle, "broken": broken}


def test_a_broken_mesh_fails_alone(grasped: dict) -> None:
    p = grasped["proc"]
    assert p.returncode == 1, p.stderr
    failed = [ln for ln in p.stderr.splitlines() if "FAILED" in ln]
    assert len(failed) == 1 and str(grasped["broken"]) in failed[0]
    assert "Traceback" not in p.stderr
    summary = [ln for ln in p.stdout.splitlines() if "valid" in ln]
    assert [ln.split(":")[0] for ln in summary] == [str(grasped["lemon"]), str(grasped["bottle"])]
    assert grasped["out"].is_file()


def test_grasps_come_at_each_mesh_real_size_and_hold(grasped: dict) -> None:
    from dexlite_core.hand.model import HandModel
    from dexlite_core.objects import load_object
    from storage.parquet import read_grasps

    table = read_grasps(grasped["out"])
    df = table.select(["object_id", "valid", "rank", "lift_success", "penetration_depth"]).to_pandas()
    objects = grasped["out"].parent / "grasps.objects"
    hand = HandModel(dtype=torch.float32)
    sizes = {}
    for oid, g in df.groupby("object_id"):
        obj = load_object(objects / oid)
        sizes[round(max(obj.meta["extents"]), 3)] = oid
        assert g["rank"].tolist() == sorted(g["rank"].tolist())
        assert g["valid"].any(), f"no valid grasp of {oid}"  # the shipped model finds some in 32 tries
        valid = g[g["valid"]]
        assert valid["lift_success"].all() and (valid["penetration_depth"] <= 0.005).all()
        # the hand holds the object at its real size: its surface touches the mesh (within 1 cm) while
        # sinking in at most 5 mm (valid), which a grasp made for another size of the object would not
        # do; the palm's origin (its wrist end) sits outside the object, within a hand's length of it
        q = torch.as_tensor(table_q(table.filter(pa.compute.equal(table.column("object_id"), oid)))[
            valid.index - g.index[0]])
        pts = hand.forward(q).surface_points  # (B, P, 3)
        dist, _ = obj.sdf.query(pts)
        assert (dist.min(dim=1).values < 0.01).all()
        doubled = obj.sdf.query(pts / 2)[0] * 2  # the same object twice as large: the hand sinks in
        assert (doubled.min(dim=1).values < -0.005).float().mean() > 0.5
        palm = torch.cdist(q[:, :3], torch.as_tensor(obj.points, dtype=q.dtype)).min(dim=1).values
        assert ((palm > 0.02) & (palm < 0.15)).all(), palm
    assert sorted(sizes) == [0.045, 0.16]


def test_model_option_takes_a_checkpoint_or_fails_in_one_line(tmp_path: Path) -> None:
    p = _dexlite("grasp", tmp_path / "x.obj", "--model", tmp_path / "none.pt", cwd=tmp_path)
    assert p.returncode == 1 and "none.pt" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    p = _dexlite("grasp", "--n", 0, tmp_path / "x.obj", cwd=tmp_path)
    assert p.returncode == 2 and "--n" in p.stderr
    for bad, named in ((("--format", "usd"), "usd"), (("--size", "big"), "--size"), (("--units", "ft"), "--units")):
        p = _dexlite("grasp", tmp_path / "x.obj", *bad, cwd=tmp_path)
        assert p.returncode == 2 and named in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_model_show_prints_the_card() -> None:
    p = _dexlite("model", "show", cwd=ROOT)
    assert p.returncode == 0 and "Held-out figures" in p.stdout and json.dumps(read_card()["name"])[1:-1] in p.stdout


def test_model_option_takes_a_run_folder_meaning_its_newest_trained_model(tmp_path: Path) -> None:
    import os
    import time

    from dexlite_core.config import TrainConfig
    from dexlite_core.models import GraspCVAE
    from flows.cli.grasp_cmds import resolve_model
    from storage import open_store

    store = open_store(tmp_path / "run" / "artifacts")
    for k, n_points in enumerate((256, 512)):  # the second one is written last
        cfg = TrainConfig(n_points=n_points)
        with store.open_stage("train", f"key{k}") as w:
            torch.save({"model": GraspCVAE.from_config(cfg).state_dict(), "config": cfg.__dict__},
                       w.file("checkpoint.pt"))
        time.sleep(0.01)
    older = store.local_path("train", "key0") / "checkpoint.pt"
    os.utime(older, ns=(0, 0))
    from dexlite_core.sampling import GraspSampler

    assert GraspSampler.load(resolve_model(tmp_path / "run")).n_points == 512
    assert resolve_model(older) == older
    with pytest.raises(FileNotFoundError, match="no trained model"):
        resolve_model(tmp_path)


def test_one_bad_mesh_alone_is_one_stderr_line_naming_it(tmp_path: Path) -> None:
    big = tmp_path / "big.obj"
    trimesh.creation.box(extents=(2.0, 1.0, 1.0)).export(big)  # 2 m at real size: a file in cm or mm
    p = _dexlite("grasp", big, "--out", tmp_path / "g.parquet", cwd=tmp_path)
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 1 and len(lines) == 1, p.stderr
    assert str(big) in lines[0] and "--units" in lines[0] and "--size" in lines[0]
    assert not (tmp_path / "g.parquet").exists()

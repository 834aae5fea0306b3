"""Grasp exports (storage/exports.py, `dexlite export`): each format read back to our poses, the MJCF scene
loaded by MuJoCo with the hand where our forward kinematics puts it, the CLI's layout and one-line errors."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import mujoco
import numpy as np
import pandas as pd
import pytest
import torch
import trimesh
from typer.testing import CliRunner

from dexlite_core.config import DexGraspBenchConfig, ObjectConfig
from dexlite_core.dataset import grasps_to_table, table_q
from dexlite_core.hand.asset import JOINT_NAMES, PALM_BODY, POSE_NAMES, joint_limits
from dexlite_core.hand.euler_np import euler_to_matrix_np
from dexlite_core.objects import ingest_mesh
from storage.dexgraspbench import (
    DGB_JOINT_NAMES,
    dgb_qpos_to_pose,
    pose_to_dgb_qpos,
    read_dexgraspbench_npy,
)
from storage.dexgraspnet import DGN_QPOS_NAMES, dexgraspnet_to_table, read_dexgraspnet_npy, write_dexgraspnet_npy
from storage.exports import EXPORT_FORMATS, export_grasps, read_grasps_json

FAST = ObjectConfig(sdf_resolution=32, convex_method="hull", n_points=512, size=0.1)
FIXTURES = json.loads((Path(__file__).parent / "fixtures" / "grasps.json").read_text())
TIPS = [PALM_BODY] + [f"robot0:{f}distal" for f in ("ff", "mf", "rf", "lf", "th")]


@pytest.fixture(scope="module")
def objects(tmp_path_factory) -> tuple[Path, list[str]]:
    """Two ingested objects: the 5 x 10 cm cylinder of the fixture grasps and a 6 x 4 x 3 cm box."""
    root = tmp_path_factory.mktemp("objects")
    src = tmp_path_factory.mktemp("meshes")
    ids = []
    for name, mesh, size in (("cyl", trimesh.creation.cylinder(radius=0.025, height=0.1, sections=32), 0.1),
                             ("box", trimesh.creation.box((0.06, 0.04, 0.03)), 0.06)):
        mesh.export(src / f"{name}.obj")
        ids.append(ingest_mesh(src / f"{name}.obj", root / "objs", dataclasses.replace(FAST, size=size)).object_id)
    return root / "objs", ids


def random_poses(n: int, seed: int = 0) -> np.ndarray:
    """`(n, 28)` float32 poses: palm within 15 cm, canonical euler angles away from gimbal lock, joints in range."""
    rng = np.random.default_rng(seed)
    lo, hi = joint_limits()
    q = np.concatenate([rng.uniform(-0.15, 0.15, (n, 3)), rng.uniform(-3.0, 3.0, (n, 1)),
                        rng.uniform(-1.3, 1.3, (n, 1)), rng.uniform(-3.0, 3.0, (n, 1)),
                        rng.uniform(lo, hi, (n, 22))], axis=1)  # fmt: skip
    return q.astype(np.float32)


@pytest.fixture(scope="module")
def table(objects) -> object:
    """Fixture grasps on the cylinder (ry = -pi/2: gimbal lock), random poses on both objects, metrics."""
    _, (cyl, box) = objects
    q = np.concatenate([np.array(FIXTURES["cylinder_r25_h100"], np.float32), random_poses(4)])
    ids = [cyl, cyl, cyl, box, cyl, box]
    return grasps_to_table(ids, q, "postopt", lift_success=[True, False, True, None, False, True],
                           q1=[0.1, float("nan"), 0.2, 0.3, 0.0, 1.5], E_pen=[0.001, 0.0, None, 2.0, 0.5, 0.25],
                           grasp_id=np.arange(6))  # fmt: skip


def rot_err(qa: np.ndarray, qb: np.ndarray) -> float:
    return float(np.abs(euler_to_matrix_np(qa[..., 3:6]) - euler_to_matrix_np(qb[..., 3:6])).max())


# ------------------------------------------------------------------------------------------ DexGraspNet


def test_dexgraspnet_export_reads_back_exactly_through_the_importer(objects, table, tmp_path):
    root, (cyl, box) = objects
    rows = np.flatnonzero(np.array(table.column("object_id").to_pylist()) == cyl)
    one = table.take(rows)
    path = write_dexgraspnet_npy(one, tmp_path / "cyl.npy", {cyl: 0.0576})
    raw = np.load(path, allow_pickle=True)  # DexGraspNet's own layout: an object array of dicts
    assert raw.dtype == object and raw.ndim == 1 and len(raw) == len(rows)
    assert set(raw[0]["qpos"]) == set(DGN_QPOS_NAMES) and raw[0]["scale"] == 0.0576
    assert "E_pen" in raw[0] and "E_pen" not in raw[2]  # a null energy is left out
    back = dexgraspnet_to_table(path, cyl)
    assert np.array_equal(table_q(back), table_q(one))  # float32 exactly
    assert back.column("E_pen").to_pylist()[:2] == pytest.approx([0.001, 0.0])
    assert back.column("object_id").to_pylist() == [cyl] * len(rows)

    files = export_grasps(table, root, "dexgraspnet", tmp_path / "dgn")
    assert [f.name for f in files] == [f"{cyl}.npy", f"{box}.npy"]
    entries = read_dexgraspnet_npy(files[0])
    # DGN's scale: its normaliser (bbox centre, / 1.03 max radius) times the scale gives our mesh back
    v = trimesh.load(root / cyl / "mesh.obj", force="mesh", process=False).vertices
    assert entries[0]["scale"] == pytest.approx(1.03 * np.hypot(0.025, 0.05), rel=1e-3)
    assert np.linalg.norm(v / entries[0]["scale"], axis=1).max() == pytest.approx(1 / 1.03)
    back = dexgraspnet_to_table(files[1], box)
    assert np.array_equal(table_q(back), table_q(table)[[3, 5]])


# ---------------------------------------------------------------------------------------- DexGraspBench


def test_dexgraspbench_pose_conversion_round_trips_and_places_the_root_below_the_palm():
    q = random_poses(64, seed=1).astype(np.float64)
    qpos = pose_to_dgb_qpos(q)
    assert qpos.shape == (64, 29) and (qpos[:, 3] >= 0).all()
    assert np.allclose(np.linalg.norm(qpos[:, 3:7], axis=1), 1.0)
    assert np.abs(dgb_qpos_to_pose(qpos) - q).max() < 1e-9
    # the hand XML's frame sits 3.4 cm below the palm, along the palm's own z (fingers' direction)
    R = euler_to_matrix_np(q[:, 3:6])
    assert np.allclose(q[:, :3] - qpos[:, :3], 0.034 * R[:, :, 2])
    mj = np.zeros((64, 9))
    for k in range(64):
        mujoco.mju_quat2Mat(mj[k], qpos[k, 3:7])  # MuJoCo reads the quaternion as w, x, y, z
    assert np.allclose(mj.reshape(-1, 3, 3), R)


def test_dexgraspbench_joint_names_and_signs_map_our_ranges_into_menageries():
    assert DGB_JOINT_NAMES[:4] == ("rh_FFJ4", "rh_FFJ3", "rh_FFJ2", "rh_FFJ1")
    assert DGB_JOINT_NAMES[12:17] == ("rh_LFJ5", "rh_LFJ4", "rh_LFJ3", "rh_LFJ2", "rh_LFJ1")
    assert DGB_JOINT_NAMES[17:] == ("rh_THJ5", "rh_THJ4", "rh_THJ3", "rh_THJ2", "rh_THJ1")
    # Menagerie's ranges (grasp-reference section 4): our limits land inside them only with the right signs
    men = {"J4": (-0.349, 0.349), "J3": (-0.262, 1.571), "J2": (0, 1.571), "J1": (0, 1.571), "LFJ5": (0, 0.785),
           "THJ5": (-1.047, 1.047), "THJ4": (0, 1.222), "THJ3": (-0.209, 0.209), "THJ2": (-0.698, 0.698),
           "THJ1": (-0.262, 1.571)}  # fmt: skip
    lo, hi = joint_limits()
    ends = pose_to_dgb_qpos(np.concatenate([np.zeros((2, 6)), np.stack([lo, hi])], axis=1))[:, 7:]
    for j, name in enumerate(DGB_JOINT_NAMES):
        short = name[3:]
        a, b = men.get(short, men.get(short[-2:]))
        assert a - 2e-3 <= ends[:, j].min() and ends[:, j].max() <= b + 2e-3, (name, ends[:, j], (a, b))
    assert ends[1, 20] < 0 < ends[0, 21]  # THJ1 -> THJ2 flips, THJ0 (closing negative) -> THJ1 positive


def test_dexgraspbench_export_files_read_back_to_our_poses(objects, table, tmp_path):
    from dexlite_core.sim.dexgraspbench import DexGraspBenchSimulator
    from dexlite_core.sim.lift import object_geometry

    root, (cyl, box) = objects
    cfg = DexGraspBenchConfig()
    files = export_grasps(table, root, "dexgraspbench", tmp_path / "dgb", dexgraspbench=cfg)
    assert [f.relative_to(tmp_path / "dgb").as_posix() for f in files] == [
        f"graspdata/{cyl}/0.npy", f"graspdata/{cyl}/1.npy", f"graspdata/{cyl}/2.npy", f"graspdata/{cyl}/4.npy",
        f"graspdata/{box}/3.npy", f"graspdata/{box}/5.npy"]  # fmt: skip
    q = table_q(table).astype(np.float64)
    sim = DexGraspBenchSimulator(object_geometry(root / cyl), cfg)
    for f in files:
        row = int(f.stem)
        d = read_dexgraspbench_npy(f)
        assert set(d) == {"obj_path", "obj_scale", "obj_pose", "pregrasp_qpos", "grasp_qpos", "squeeze_qpos"}
        assert d["obj_pose"].tolist() == [0, 0, 0, 1, 0, 0, 0]
        back = dgb_qpos_to_pose(d["grasp_qpos"])
        assert np.abs(back[:3] - q[row, :3]).max() < 1e-5 and np.abs(back[6:] - q[row, 6:]).max() < 1e-5
        assert rot_err(back, q[row]) < 1e-5  # rows 0-1 sit at ry = -pi/2, where the euler angles are not unique
        if row >= 2:  # canonical angles away from gimbal lock come back as they were
            assert np.abs(back - q[row]).max() < 1e-5
        pre, squeeze = dgb_qpos_to_pose(d["pregrasp_qpos"]), dgb_qpos_to_pose(d["squeeze_qpos"])
        assert np.allclose(squeeze[6:], 2 * back[6:] - pre[6:]) and np.allclose(squeeze[:3], back[:3])
        # the palm backs off 1 cm along its +y (away from the palmar side), orientation kept
        R = euler_to_matrix_np(back[3:6])
        assert np.allclose(pre[:3] - back[:3], cfg.pregrasp_backoff * R[:, 1]) and rot_err(pre, back) < 1e-9
        if row < 2:  # the cylinder's grasps: our protocol's pregrasp, the fingers opened
            assert np.allclose(pre[6:], sim.pregrasp(q[row])[0])
            assert (pre[6:] <= back[6:] + 1e-9).sum() >= 10 and np.linalg.norm(pre[6:] - back[6:]) > 0.2
        obj = Path(d["obj_path"])
        assert obj == (tmp_path / "dgb" / "objects" / f.parent.name).resolve()
        assert sorted(p.name for p in (obj / "urdf" / "meshes").iterdir()) == ["convex_piece_000.obj"]
    # DGB scales the normalised meshes by obj_scale: that gives our object back
    d = read_dexgraspbench_npy(files[0])
    obj = Path(d["obj_path"])
    ours = trimesh.load(root / cyl / "mesh.obj", force="mesh", process=False)
    theirs = trimesh.load(obj / "mesh" / "simplified.obj", force="mesh", process=False)
    assert np.abs(theirs.vertices * d["obj_scale"] - ours.vertices).max() < 1e-8
    part = trimesh.load(obj / "urdf" / "meshes" / "convex_piece_000.obj", force="mesh", process=False)
    info = json.loads((obj / "info" / "simplified.json").read_text())
    assert info["scale"] == 1.0 and info["mass"] / info["density"] == pytest.approx(part.volume, rel=1e-6)
    assert part.volume * d["obj_scale"] ** 3 == pytest.approx(np.pi * 0.025**2 * 0.1, rel=0.02)


def test_dexgraspbench_reader_names_the_file_and_the_problem(tmp_path):
    bad = tmp_path / "bad.npy"
    np.save(bad, {"grasp_qpos": np.zeros(29)}, allow_pickle=True)
    with pytest.raises(ValueError, match=r"bad\.npy.*lacks.*pregrasp_qpos"):
        read_dexgraspbench_npy(bad)
    with pytest.raises(FileNotFoundError, match="nope.npy"):
        read_dexgraspbench_npy(tmp_path / "nope.npy")


# ------------------------------------------------------------------------------------------------ JSON


def test_json_export_round_trips_poses_names_and_metrics(objects, table, tmp_path):
    root, (cyl, box) = objects
    (path,) = export_grasps(table, root, "json", tmp_path / "out")
    assert path == tmp_path / "out" / "grasps.json"
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    records = json.loads(text)
    assert len(records) == 6 and records[0]["object_id"] == cyl and records[3]["object_id"] == box
    assert records[0]["scale"] == 0.1 and records[3]["scale"] == 0.06 and records[0]["group"] == "cyl"
    assert list(records[0]["q_named"]) == list(POSE_NAMES) and records[0]["q_named"]["THJ0"] == records[0]["q"][-1]
    assert records[1]["q1"] is None and records[3]["lift_success"] is None and records[2]["E_pen"] is None
    assert "slip" not in records[0]  # an all-null column carries nothing
    back = read_grasps_json(path)
    assert back.column("object_id").to_pylist() == table.column("object_id").to_pylist()
    assert np.array_equal(table_q(back), table_q(table))  # float32 exactly
    assert back.column("lift_success").to_pylist() == table.column("lift_success").to_pylist()
    assert back.column("grasp_id").to_pylist() == list(range(6))
    q1 = table.column("q1").to_pylist()
    assert back.column("q1").to_pylist() == [None if np.isnan(v) else v for v in q1]
    # a pandas table and an explicit .json path work too
    df = pd.DataFrame({"object_id": [box], "q": [table_q(table)[3].astype(np.float64)], "note": ["x"]})
    (p2,) = export_grasps(df, root, "json", tmp_path / "one.json")
    assert p2 == tmp_path / "one.json" and json.loads(p2.read_text())[0]["note"] == "x"


# ------------------------------------------------------------------------------------------------ MJCF


def test_mjcf_scene_loads_in_mujoco_with_the_hand_at_our_forward_kinematics(objects, table, tmp_path, monkeypatch):
    from dexlite_core.hand.kinematics import HandKinematics
    from dexlite_core.sim.mjcf_export import read_grasp_scene

    root, (cyl, box) = objects
    files = export_grasps(table, root, "mjcf", tmp_path / "mjcf")
    assert [f.name for f in files] == [f"{cyl}.xml", f"{box}.xml"]
    xml = files[0].read_text()
    assert str((root / cyl / "convex" / "part_000.obj").resolve()) in xml  # the object's parts, by path
    monkeypatch.chdir(tmp_path)  # opens from elsewhere
    kin = HandKinematics(TIPS, torch.float64, "cpu")
    q_all = table_q(table).astype(np.float64)
    for f, rows in ((files[0], [0, 1, 2, 4]), (files[1], [3, 5])):
        model = mujoco.MjModel.from_xml_path(str(f))
        data = mujoco.MjData(model)
        assert [model.key(k).name for k in range(model.nkey)] == [f"grasp_{r}" for r in rows]
        q = q_all[rows]
        local = kin.link_transforms(torch.from_numpy(q[:, 6:])).numpy()  # (K, 6, 4, 4) in the palm frame
        R = euler_to_matrix_np(q[:, 3:6])
        expect = np.einsum("kij,klj->kli", R, local[:, :, :3, 3]) + q[:, None, :3]
        for k in range(len(rows)):
            mujoco.mj_resetDataKeyframe(model, data, k)
            mujoco.mj_forward(model, data)
            got = np.stack([data.xpos[model.body(b).id] for b in TIPS])
            assert np.abs(got - expect[k]).max() < 1e-4, (f.name, k, np.abs(got - expect[k]).max())
            assert np.allclose(data.xpos[model.body("object").id], 0) and np.allclose(data.ctrl, q[k, 6:], atol=1e-5)
            assert np.allclose(data.xmat[model.body(PALM_BODY).id].reshape(3, 3), R[k], atol=1e-5)
        names, back = read_grasp_scene(f)
        assert names == [f"grasp_{r}" for r in rows]
        assert np.abs(back[:, :3] - q[:, :3]).max() < 1e-5 and np.abs(back[:, 6:] - q[:, 6:]).max() < 1e-5
        assert rot_err(back, q) < 1e-5
        assert [model.joint(model.actuator_trnid[a, 0]).name for a in range(model.nu)] == list(JOINT_NAMES)


# ---------------------------------------------------------------------------------------- dispatcher, CLI


def test_export_grasps_refuses_unknown_formats_and_missing_objects(objects, table, tmp_path):
    root, (cyl, _) = objects
    assert EXPORT_FORMATS == ("dexgraspnet", "dexgraspbench", "json", "mjcf")
    with pytest.raises(ValueError, match=r"'usd'.*dexgraspnet, dexgraspbench, json, mjcf"):
        export_grasps(table, root, "usd", tmp_path)
    lonely = grasps_to_table("ghost-0123456789", table_q(table)[:1], "raw")
    for fmt in EXPORT_FORMATS:
        with pytest.raises(FileNotFoundError, match="ghost-0123456789"):
            export_grasps(lonely, root, fmt, tmp_path / fmt)
        assert not (tmp_path / fmt).exists() or not any((tmp_path / fmt).rglob("*.*"))


runner = CliRunner()


def one_line_error(r, *names: str) -> str:
    assert r.exit_code != 0, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.output, r.output
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


def test_cli_export_writes_each_format_and_fails_in_one_line(objects, table, tmp_path):
    from flows.cli import app
    from storage.parquet import write_grasps

    root, (cyl, box) = objects
    grasps = tmp_path / "grasps.parquet"
    write_grasps(table, grasps)  # sorted by object id
    out = tmp_path / "out"

    def invoke(*args):
        return runner.invoke(app, ["export", *map(str, args)], catch_exceptions=False)

    r = invoke(grasps, "--objects", root, "--format", "json", "--format", "dexgraspnet", "--format", "mjcf",
               "--out", out)  # fmt: skip
    assert r.exit_code == 0, r.output
    assert f"json: 1 file(s) -> {out / 'json'}" in r.stdout and "dexgraspnet: 2 file(s)" in r.stdout
    assert sorted(p.name for p in (out / "dexgraspnet").iterdir()) == sorted([f"{cyl}.npy", f"{box}.npy"])
    assert sorted(p.name for p in (out / "mjcf").iterdir()) == sorted([f"{cyl}.xml", f"{box}.xml"])
    back = read_grasps_json(out / "json" / "grasps.json")
    order = np.argsort(np.array(table.column("object_id").to_pylist()), kind="stable")
    assert np.array_equal(table_q(back), table_q(table)[order])
    r = invoke(grasps, "--objects", root, "--format", "json", "--out", tmp_path / "single")
    assert r.exit_code == 0 and (tmp_path / "single" / "grasps.json").is_file()

    one_line_error(invoke(grasps, "--objects", root, "--format", "usd", "--out", out), "usd", "dexgraspbench")
    one_line_error(invoke(tmp_path / "missing.parquet", "--objects", root, "--format", "json", "--out", out),
                   "missing.parquet")  # fmt: skip
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"not parquet at all")
    one_line_error(invoke(junk, "--objects", root, "--format", "json", "--out", out), "junk.parquet")
    one_line_error(invoke(grasps, "--objects", tmp_path / "nowhere", "--format", "json", "--out", out), "nowhere")
    one_line_error(invoke(grasps, "--objects", root, "--out", out), "--format")
    broken = tmp_path / "broken_objs"
    for oid in (cyl, box):
        (broken / oid).mkdir(parents=True)
        (broken / oid / "_SUCCESS").write_text("")
        (broken / oid / "meta.json").write_text("{not json")
    msg = one_line_error(invoke(grasps, "--objects", broken, "--format", "json", "--out", out), "meta.json")
    assert msg.startswith("export:")

"""The dexgraspbench protocol (DexGraspBench's MuJoCo test) and the validity gate on real simulations."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import trimesh
from conftest import write_convex_objects

from dexlite_core import validity
from dexlite_core.config import DexGraspBenchConfig, LiftConfig, PipelineConfig
from dexlite_core.hand.asset import joint_limits
from dexlite_core.hand.euler_np import euler_to_matrix_np
from dexlite_core.sim.dexgraspbench import DexGraspBenchSimulator
from dexlite_core.sim.evaluate import evaluate_grasps
from dexlite_core.sim.lift import LiftSimulator, object_geometry

FIXTURES = json.loads((Path(__file__).parent / "fixtures" / "grasps.json").read_text())
CUBE = trimesh.creation.box((0.045, 0.045, 0.045))
CYLINDER = trimesh.creation.cylinder(radius=0.025, height=0.1, sections=32)
BOX = trimesh.creation.box((0.05, 0.05, 0.1))
CYLINDER_3CM = trimesh.creation.cylinder(radius=0.03, height=0.1)
TRAY_CUBE = trimesh.creation.box((0.04, 0.04, 0.04))


@pytest.fixture(scope="module")
def cylinder_sim() -> DexGraspBenchSimulator:
    return DexGraspBenchSimulator(object_geometry([CYLINDER]), DexGraspBenchConfig())


def test_wrapping_grasps_pass():
    """The hand-built cylinder wraps and the optimiser-found box / cylinder grasps hold all six pushes."""
    for mesh, key in ((CYLINDER, "cylinder_r25_h100"), (BOX, "box"), (CYLINDER_3CM, "cylinder")):
        sim = DexGraspBenchSimulator(object_geometry([mesh]), DexGraspBenchConfig(early_pass=False))
        for q in FIXTURES[key]:
            r = sim.run(np.array(q))
            assert r["dgb_success"] and r["dgb_failed"] == "", (key, r)
            assert not r["dgb_sim_unstable"] and r["dgb_pregrasp_penetration"] < 0.002
            assert r["dgb_sim_time"] == pytest.approx(0.8 + 6 * 2.0, abs=0.01)  # approach + six full pushes


def test_early_pass_keeps_the_verdicts_and_stops_held_pushes_early():
    cfg = DexGraspBenchConfig(early_pass=True)
    for mesh, key in ((CYLINDER, "cylinder_r25_h100"), (BOX, "box")):
        full = DexGraspBenchSimulator(object_geometry([mesh]), DexGraspBenchConfig(early_pass=False))
        early = DexGraspBenchSimulator(object_geometry([mesh]), cfg)
        q = np.array(FIXTURES[key][0])
        far = q.copy()
        far[0] += 0.2
        a, b = early.run(q), full.run(q)
        assert a["dgb_success"] and b["dgb_success"]
        assert a["dgb_sim_time"] < b["dgb_sim_time"] - 3.0  # at least half a second saved per push
        assert not early.run(far)["dgb_success"]


def test_non_grasps_fail(cylinder_sim):
    q = np.array(FIXTURES["cylinder_r25_h100"][0])
    far = q.copy()
    far[0] += 0.2  # the hand 20 cm away
    r = cylinder_sim.run(far)
    assert not r["dgb_success"] and r["dgb_failed"] in ("+x", "-x", "+y", "-y", "+z", "-z")
    assert r["dgb_sim_time"] < 0.8 + 0.5  # the first push fails at its first check
    open_hand = q.copy()
    open_hand[6:] = 0.0
    open_hand[1] += 0.03  # fingers straight, palm backed off 3 cm
    assert not cylinder_sim.run(open_hand)["dgb_success"]
    tray = DexGraspBenchSimulator(object_geometry([TRAY_CUBE]), DexGraspBenchConfig())
    assert not tray.run(np.array(FIXTURES["tray_box_4cm"][0]))["dgb_success"]  # an open palm is no grasp


def test_deep_pregrasp_fails_outright_and_shallow_one_does_not(cylinder_sim):
    q = np.array(FIXTURES["cylinder_r25_h100"][0])
    sunk = q.copy()
    sunk[:3] -= 0.025 * np.array([1.0, 0.0, 0.0])  # palm 2.5 cm into the cylinder (palm at +x, facing -x)
    r = cylinder_sim.run(sunk)
    assert r["penetration_depth"] > 0.015
    assert r["dgb_pregrasp_penetration"] > 0.01
    assert not r["dgb_success"] and r["dgb_failed"] == "pregrasp_penetration"
    assert r["dgb_sim_time"] == 0.0  # nothing simulated
    assert not bool(validity.valid_success(pd.DataFrame([r]), "dexgraspbench").iloc[0])


def test_grasps_sunk_15mm_are_never_valid():
    """Sunk 1.5 cm along the palm normal, the pregrasp (backed off 1 cm) passes the 1 cm filter and
    some of these grasps still hold all six pushes: the penetration gate is what fails them."""
    rows = []
    for mesh, key in ((CYLINDER, "cylinder_r25_h100"), (BOX, "box"), (CYLINDER_3CM, "cylinder")):
        sim = DexGraspBenchSimulator(object_geometry([mesh]), DexGraspBenchConfig())
        for q in FIXTURES[key]:
            sunk = np.array(q)
            sunk[:3] += euler_to_matrix_np(sunk[3:6]) @ np.array([0.0, -0.015, 0.0])  # palm frame -y: into it
            rows.append(sim.run(sunk))
    df = pd.DataFrame(rows)
    assert (df["penetration_depth"] > 0.01).all()
    assert df["dgb_success"].any()  # the protocol alone passes some...
    assert not validity.valid_success(df, "dexgraspbench").astype(bool).any()  # ...valid success none
    assert df["dgb_success"].sum() == validity.rate_table(df, ["dexgraspbench"])["dexgraspbench_ungated"]["k"]


def test_thumb_inside_the_index_finger_fails():
    """Hand-built cube wrap 0 tucks the thumb 18 mm into the index finger: its pregrasp penetrates the
    hand itself (DexGraspBench's filter counts hand-hand contacts) and the gate marks it invalid."""
    sim = DexGraspBenchSimulator(object_geometry([CUBE]), DexGraspBenchConfig())
    r = sim.run(np.array(FIXTURES["cube_45mm"][0]))
    assert r["self_penetration"] > 0.015
    assert r["dgb_failed"] == "pregrasp_penetration"
    lift = LiftSimulator(object_geometry([CUBE]), LiftConfig()).run(np.array(FIXTURES["cube_45mm"][0]), False)
    assert lift["lift_success"]  # the lift test alone passes it...
    assert not validity.valid_success(pd.DataFrame([lift]), "lift").iloc[0]  # ...the gate does not


def test_pregrasp_opens_closing_joints_within_limits(cylinder_sim):
    q = np.array(FIXTURES["cylinder_r25_h100"][0])
    pre, squeeze, _ = cylinder_sim.pregrasp(q)
    lo, hi = joint_limits()
    assert np.all(pre >= lo - 1e-12) and np.all(pre <= hi + 1e-12)
    moved = np.abs(pre - q[6:]) > 1e-9
    assert moved.sum() >= 8  # the fingers and thumb that close on the cylinder open
    assert np.all(np.abs(pre - q[6:]) <= 0.1 + 1e-12)
    np.testing.assert_allclose(squeeze, 2 * q[6:] - pre)  # BODex / DexGraspBench squeeze


class _Launcher(DexGraspBenchSimulator):
    """Kicks the object upward at 5 m/s as each push starts (a blow-up's symptom)."""

    def _start_push(self, force: np.ndarray) -> None:
        super()._start_push(force)
        self.data.qvel[self.scene.obj_dadr + 2] = 5.0


class _LiftLauncher(LiftSimulator):
    """Kicks the object upward at 50 m/s when the lift starts: it leaves the hand and flies above it."""

    def _lift(self):
        self.data.qvel[self.scene.obj_dadr + 2] = 50.0
        return super()._lift()


def test_an_object_launched_upward_fails_both_tests():
    q = np.array(FIXTURES["cylinder_r25_h100"][0])
    dgb = _Launcher(object_geometry([CYLINDER]), DexGraspBenchConfig()).run(q)
    assert not dgb["dgb_success"]
    q3 = np.array(FIXTURES["cylinder"][0])
    lift = _LiftLauncher(object_geometry([CYLINDER_3CM]), LiftConfig()).run(q3, six_directions=False)
    assert lift["lift_ratio"] > 2.0, lift  # the write-up's "ratio > 0.9" alone would pass it
    assert not lift["object_in_hand"] and not lift["lift_success"]


def test_protocols_are_deterministic_and_workers_do_not_matter(tmp_path):
    write_convex_objects(tmp_path, {"cyl": CYLINDER, "box": BOX})
    far = np.array(FIXTURES["box"][0])
    far[0] += 0.2
    wraps = FIXTURES["cylinder_r25_h100"]
    table = pd.DataFrame({"object_id": ["cyl", "box", "box", "cyl"],
                          "q": [wraps[0], FIXTURES["box"][0], far, wraps[1]]})
    cfg = PipelineConfig()
    a, summary = evaluate_grasps(table, tmp_path, cfg, workers=1, six_directions=False)
    b, _ = evaluate_grasps(table, tmp_path, cfg, workers=2, six_directions=False)
    pd.testing.assert_frame_equal(a, b)
    assert a["dgb_success"].tolist() == [True, True, False, True]
    assert a["lift_success"].tolist() == [True, True, False, True]
    rates = summary["rates"]
    assert rates["dexgraspbench"]["n"] == 4 and rates["dexgraspbench"]["k"] == 3
    lo, hi = rates["dexgraspbench"]["ci95"]
    assert lo < 0.75 < hi
    only, s2 = evaluate_grasps(table, tmp_path, cfg, protocols=("dexgraspbench",))
    assert "lift_success" not in only and "lift" not in s2["rates"]
    assert only["dgb_success"].tolist() == a["dgb_success"].tolist()

"""MuJoCo lift and six-direction tests: real grasps hold, non-grasps do not."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import trimesh

from dexlite_core.config import LiftConfig
from dexlite_core.sim.lift import LiftSimulator, closing_directions, lift_test

FIXTURES = json.loads((Path(__file__).parent / "fixtures" / "grasps.json").read_text())
BOX = trimesh.creation.box((0.05, 0.05, 0.1))
CYLINDER = trimesh.creation.cylinder(radius=0.03, height=0.1)


@pytest.fixture(scope="module")
def box_sim():
    return LiftSimulator([BOX], LiftConfig())


def test_enveloping_grasps_lift_and_hold():
    for mesh, name in ((BOX, "box"), (CYLINDER, "cylinder")):
        res = lift_test([mesh], np.array(FIXTURES[name]), LiftConfig())
        assert res["lift_success"].all(), res
        assert (res["lift_ratio"] > 0.95).all()
        assert res["six_dir_success"].all()
        assert (res["slip"] < 0.01).all()


def test_hand_far_from_object_fails(box_sim):
    q = np.array(FIXTURES["box"][0])
    q[0] += 0.2  # the whole hand 20 cm to the side
    r = box_sim.run(q)
    assert not r["lift_success"] and not r["six_dir_success"]
    assert r["lift_ratio"] < 0  # the object falls while the hand rises
    assert r["n_contacts"] == 0


def test_open_hand_that_does_not_touch_fails(box_sim):
    q = np.array(FIXTURES["box"][0])
    q[6:] = 0.0  # fingers straight
    q[:3] += 0.03 * np.asarray(q[:3]) / np.linalg.norm(q[:3])  # backed off from the object
    r = LiftSimulator([BOX], LiftConfig(squeeze=0.0)).run(q)
    assert not r["lift_success"]


def test_tray_passes_the_ratio_but_not_the_six_directions():
    # an open palm facing up under a 4 cm cube: lifting carries it, yet it is no grasp
    cube = trimesh.creation.box((0.04, 0.04, 0.04))
    r = LiftSimulator([cube], LiftConfig(squeeze=0.0)).run(np.array(FIXTURES["tray_box_4cm"][0]))
    assert r["lift_success"]
    assert not r["six_dir_success"]


def test_deterministic_and_worker_count_does_not_matter():
    poses = np.array(FIXTURES["box"] + [FIXTURES["box"][0]])
    poses[-1, 0] += 0.2
    cfg = LiftConfig()
    a = lift_test([BOX], poses, cfg, six_directions=False)
    b = lift_test([BOX], poses, cfg, six_directions=False)
    c = lift_test([BOX], poses, cfg, workers=2, six_directions=False)
    assert a.equals(b) and a.equals(c)
    assert a["lift_success"].tolist() == [True, True, False]


def test_nan_pose_is_rejected():
    q = np.array(FIXTURES["box"])
    q[1, 10] = np.nan
    with pytest.raises(ValueError, match="row 1"):
        lift_test([BOX], q)


def test_closing_directions_follow_the_joint_axes():
    s = closing_directions()
    assert s.shape == (22,)
    assert s[-1] == -1 and s[-2] == -1  # THJ0 and THJ1 flex negative
    assert s[0] == 0 and s[1] == 1  # FFJ3 ab/adduction is left alone, FFJ2 flexes positive

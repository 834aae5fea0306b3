"""MuJoCo lift and six-direction tests: real grasps hold, non-grasps do not, results are reproducible."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import mujoco
import numpy as np
import pandas as pd
import pytest
import trimesh
from conftest import write_convex_objects

from dexlite_core.config import LiftConfig, PipelineConfig
from dexlite_core.hand.asset import JOINT_NAMES
from dexlite_core.hand.euler_np import euler_to_matrix_np, matrix_to_euler_np
from dexlite_core.sim.lift import (
    COLUMNS,
    LiftSimulator,
    evaluate_grasps,
    lift_test,
    object_geometry,
)
from dexlite_core.sim.scene import force_limit

FIXTURES = json.loads((Path(__file__).parent / "fixtures" / "grasps.json").read_text())
CUBE = trimesh.creation.box((0.045, 0.045, 0.045))
CYLINDER = trimesh.creation.cylinder(radius=0.025, height=0.1, sections=32)
BOX = trimesh.creation.box((0.05, 0.05, 0.1))  # the optimiser-found fixtures' objects
CYLINDER_3CM = trimesh.creation.cylinder(radius=0.03, height=0.1)
TRAY_CUBE = trimesh.creation.box((0.04, 0.04, 0.04))
J = {n.split(":")[1]: i for i, n in enumerate(JOINT_NAMES)}


@pytest.fixture(scope="module")
def cube_sim() -> LiftSimulator:
    return LiftSimulator(object_geometry([CUBE]), LiftConfig())


def test_hand_built_enveloping_grasps_lift_and_hold():
    """Hand-constructed wraps of a 4.5 cm cube and a cylinder (tests/fixtures/make_lift_grasps.py)."""
    for mesh, key in ((CUBE, "cube_45mm"), (CYLINDER, "cylinder_r25_h100")):
        res = lift_test([mesh], np.array(FIXTURES[key]), LiftConfig())
        assert list(res.columns) == list(COLUMNS)
        assert res["lift_success"].all(), res
        assert (res["lift_ratio"] > 0.95).all(), res
        assert res["six_dir_success"].astype(bool).all(), res
        assert (res["slip"] < 0.01).all(), res
        assert (res["n_contacts"] >= 4).all(), res
        assert (res["penetration_depth"] < 0.002).all(), res
        assert not res["early_stop"].any()


def test_optimiser_found_grasps_lift():
    """Seed-optimiser grasps of a 5x5x10 cm box and a 3 cm cylinder (lift only, to keep the test fast)."""
    for mesh, key in ((BOX, "box"), (CYLINDER_3CM, "cylinder")):
        res = lift_test([mesh], np.array(FIXTURES[key]), LiftConfig(), six_directions=False)
        assert res["lift_success"].all(), res
        assert res["six_dir_success"].isna().all()


def test_hand_20cm_away_fails(cube_sim):
    q = np.array(FIXTURES["cube_45mm"][0])
    q[0] += 0.2  # the whole hand 20 cm to the side
    r = cube_sim.run(q)
    assert not r["lift_success"] and r["six_dir_success"] is False
    assert r["lift_ratio"] < 0  # the object falls while the hand rises
    assert r["n_contacts"] == 0 and r["penetration_depth"] == 0.0
    assert r["early_stop"]  # the fall is detected and extrapolated instead of simulated


def test_open_hand_that_does_not_touch_fails(cube_sim):
    q = np.array(FIXTURES["cube_45mm"][0])
    q[6:] = 0.0  # fingers straight, thumb at rest
    q[1] += 0.03  # palm backed off 3 cm from the cube (palmar side faces -y)
    r = cube_sim.run(q)
    assert r["penetration_depth"] == 0.0
    assert not r["lift_success"] and r["lift_ratio"] < 0.5
    assert r["six_dir_success"] is False


def test_tray_passes_the_ratio_but_not_the_six_directions():
    """An open palm facing up under a 4 cm cube: the lift carries it, yet it is no grasp (notes item 6)."""
    q = np.array(FIXTURES["tray_box_4cm"])
    tray = lift_test([TRAY_CUBE], q, LiftConfig()).iloc[0]
    assert tray["lift_success"]  # the write-up's criterion alone passes it...
    assert not tray["six_dir_success"]  # ...the six-direction test does not
    assert tray["n_contacts"] == 0  # nothing squeezes it when gravity is off


def test_same_input_same_output_and_workers_do_not_matter():
    poses = np.array(FIXTURES["cube_45mm"] + [FIXTURES["cube_45mm"][0]])
    poses[-1, 0] += 0.2
    cfg = LiftConfig()
    a = lift_test([CUBE], poses, cfg, six_directions=False)
    b = lift_test([CUBE], poses, cfg, six_directions=False)
    c = lift_test([CUBE], poses, cfg, workers=2, six_directions=False, chunk_size=1)
    pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_frame_equal(a, c)
    assert a["lift_success"].tolist() == [True, True, False]


def test_results_do_not_depend_on_what_ran_before(cube_sim):
    q_good, q_far = np.array(FIXTURES["cube_45mm"][0]), np.array(FIXTURES["cube_45mm"][0])
    q_far[0] += 0.2
    first = cube_sim.run(q_good, six_directions=False)
    cube_sim.run(q_far, six_directions=True)  # a failing run in between (gravity and forces toggled)
    assert cube_sim.run(q_good, six_directions=False) == first


def test_bad_poses_are_rejected_naming_the_row():
    q = np.array(FIXTURES["cube_45mm"])
    q[1, 10] = np.nan
    with pytest.raises(ValueError, match="row 1"):
        lift_test([CUBE], q)
    with pytest.raises(ValueError, match="shape"):
        lift_test([CUBE], np.zeros((2, 27)))


def test_closing_direction_comes_from_the_model(cube_sim):
    """Each squeezed joint's offset moves its finger into the object (J^T n), thumb flexion negative."""
    q = np.array(FIXTURES["cylinder_r25_h100"][0])
    sim = LiftSimulator(object_geometry([CYLINDER]), LiftConfig())
    delta, metrics = sim.closing_offsets(q)
    assert metrics["penetration_depth"] < 0.002
    assert set(np.unique(np.abs(delta)).round(6)) <= {0.0, 0.3}
    for f in ("FF", "MF", "RF"):
        assert delta[J[f + "J2"]] > 0 or delta[J[f + "J1"]] > 0  # fingers flex positive
    assert delta[J["THJ0"]] <= 0  # THJ0 flexes negative (notes item 2)
    m, d, s = sim.model, sim.data, sim.scene
    obj = int(s.obj_geoms[0])
    fromto = np.zeros(6)

    def finger_distance(qq: np.ndarray, j: int) -> float:
        sim._reset(qq)
        mujoco.mj_kinematics(m, d)
        tip = s.tip_body[j]
        geoms = [g for g in s.hand_geoms if s.body_moves[m.geom_bodyid[g], j] and m.geom_bodyid[g] != 0]
        assert s.body_moves[tip, j]
        return min(mujoco.mj_geomDistance(m, d, int(g), obj, 0.1, fromto) for g in geoms)

    for j in np.flatnonzero(delta):
        step = q.copy()
        step[6 + j] += 0.05 * np.sign(delta[j])
        assert finger_distance(step, j) < finger_distance(q, j) + 1e-4, JOINT_NAMES[j]


def test_scene_parameters(cube_sim):
    m, s = cube_sim.model, cube_sim.scene
    assert m.nu == 23 and m.opt.timestep == LiftConfig().timestep
    # every hand collision geom can touch the object, through contype / conaffinity
    for g in s.hand_geoms:
        for o in s.obj_geoms:
            assert (m.geom_contype[g] & m.geom_conaffinity[o]) or (m.geom_contype[o] & m.geom_conaffinity[g])
    assert np.allclose(m.geom_solref[s.hand_geoms], [0.005, 1.0])
    assert np.allclose(m.geom_solimp[s.hand_geoms, :3], [0.5, 0.99, 1e-4])
    hand_bodies = np.unique(m.geom_bodyid[s.hand_geoms])
    assert (m.body_gravcomp[hand_bodies] == 1).all() and m.body_gravcomp[s.obj_body] == 0
    assert m.body_mass[s.obj_body] == pytest.approx(0.1)
    assert np.allclose(m.body_inertia[s.obj_body], 0.1 * 0.045**2 / 6, rtol=1e-3)  # solid cube
    forces = m.actuator_forcerange[1:, 1]
    assert forces[J["THJ4"]] == pytest.approx(2.3722) and forces[J["FFJ1"]] == pytest.approx(0.7245)
    assert force_limit("robot0:LFJ4") == 0.9
    assert not m.actuator_ctrllimited[1:].any()  # squeeze targets may lie past a joint limit
    assert len({tuple(sorted((m.pair_geom1[i], m.pair_geom2[i]))) for i in range(m.npair)}) == m.npair


def test_euler_matches_the_pose_convention():
    import torch

    from dexlite_core.hand.rotation import euler_to_matrix as euler_to_matrix_torch

    rng = np.random.default_rng(0)
    e = rng.uniform(-1.4, 1.4, (5, 3))
    np.testing.assert_allclose(euler_to_matrix_np(e), euler_to_matrix_torch(torch.as_tensor(e)).numpy(), atol=1e-12)
    for x in e:
        assert np.allclose(matrix_to_euler_np(euler_to_matrix_np(x)), x)
    assert np.allclose(matrix_to_euler_np(euler_to_matrix_np(e)), e)  # batched


def test_early_stop_extrapolates_the_fall_exactly(cube_sim):
    q = np.array(FIXTURES["cube_45mm"][0])
    q[0] += 0.2
    full = LiftSimulator(object_geometry([CUBE]), LiftConfig(early_stop=False)).run(q, six_directions=False)
    fast = cube_sim.run(q, six_directions=False)
    assert fast["early_stop"] and not full["early_stop"]
    assert fast["object_rise"] == pytest.approx(full["object_rise"], rel=0.01)  # ~ -1.2 m in free fall
    assert fast["lift_ratio"] == full["lift_ratio"] == -1.0


def test_six_directions_pass_early_once_the_object_barely_creeps_with_the_full_tests_verdict():
    """A held grasp that takes each push and barely creeps passes before 2 s per direction; the
    full 2 s test agrees, on held grasps and on ones that fail; the lift does not change."""
    poses = np.array(FIXTURES["cylinder_r25_h100"])
    q_far = poses[0].copy()
    q_far[0] += 0.2
    poses = np.vstack([poses, q_far])
    fast = lift_test([CYLINDER], poses, LiftConfig(six_dir_early_pass=True))
    full = lift_test([CYLINDER], poses, LiftConfig())
    assert not LiftConfig().six_dir_early_pass  # the exact test is the default
    assert fast["six_dir_success"].tolist() == full["six_dir_success"].tolist() == [True, True, False]
    lift_cols = [c for c in COLUMNS if c not in ("six_dir_success", "six_dir_failed", "sim_time")]
    pd.testing.assert_frame_equal(fast[lift_cols], full[lift_cols])
    # full: 0.5 s close + 6 x 2 s + 1.3 s lift and hold = 13.8 s per held grasp
    assert (full["sim_time"][:2] > 13.7).all()
    assert fast["sim_time"][0] < 6.0, fast["sim_time"]  # every direction passed after 0.5-0.6 s
    assert fast["sim_time"][2] == full["sim_time"][2]  # a failing grasp fails at the same moment
    tray = np.array(FIXTURES["tray_box_4cm"])  # rests on the palm: pushed off along +-x already
    a, b = (lift_test([TRAY_CUBE], tray, LiftConfig(six_dir_early_pass=v)).iloc[0] for v in (True, False))
    assert not a["six_dir_success"] and not b["six_dir_success"] and a["six_dir_failed"] == b["six_dir_failed"]


def test_evaluate_grasps_over_object_folders(tmp_path):
    write_convex_objects(tmp_path, {"cube-a": CUBE, "cyl-b": CYLINDER})
    far = np.array(FIXTURES["cube_45mm"][0])
    far[0] += 0.2
    table = pd.DataFrame(
        {
            "object_id": ["cyl-b", "cube-a", "cube-a"],
            "q": [np.array(FIXTURES["cylinder_r25_h100"][0], np.float32), np.array(FIXTURES["cube_45mm"][0]), far],
        }
    )
    cfg = dataclasses.replace(LiftConfig(), six_dir_time=0.5)
    df, summary = evaluate_grasps(table, tmp_path, PipelineConfig(lift=cfg), workers=1)
    assert df["object_id"].tolist() == ["cyl-b", "cube-a", "cube-a"]  # the table's row order
    assert df["lift_success"].tolist() == [True, True, False]
    assert summary["n"] == 3 and summary["success_rate"] == pytest.approx(2 / 3)
    assert summary["per_object"]["cube-a"]["success_rate"] == 0.5
    assert summary["per_object"]["cyl-b"]["six_direction_success_rate"] == 1.0
    bad = table.copy()
    bad.loc[2, "q"] = np.full(28, np.inf)
    with pytest.raises(ValueError, match="row 2"):
        evaluate_grasps(bad, tmp_path, cfg)
    with pytest.raises(FileNotFoundError, match="missing-c"):
        evaluate_grasps(pd.DataFrame({"object_id": ["missing-c"], "q": [far]}), tmp_path, cfg)


def test_six_direction_test_on_each_objects_first_grasps_only(tmp_path):
    """The lift stage's filter: every grasp lift-tested, the six-direction test on each object's first
    ``six_dir_first`` grasps (the rest None), with the same verdicts as the full run on those."""
    write_convex_objects(tmp_path, {"cube-a": CUBE, "cyl-b": CYLINDER})
    cube, cyl = np.array(FIXTURES["cube_45mm"][0]), np.array(FIXTURES["cylinder_r25_h100"][0])
    table = pd.DataFrame({"object_id": ["cube-a", "cyl-b", "cube-a", "cyl-b"], "q": [cube, cyl, cube, cyl]})
    cfg = PipelineConfig(lift=dataclasses.replace(LiftConfig(), six_dir_time=0.5))
    from dexlite_core.sim.evaluate import evaluate_grasps as evaluate

    full, _ = evaluate(table, tmp_path, cfg, protocols=("lift",))
    part, summary = evaluate(table, tmp_path, cfg, protocols=("lift",), six_dir_first=1)
    assert part["lift_success"].tolist() == full["lift_success"].tolist()
    assert part["six_dir_success"].tolist() == [full["six_dir_success"][0], full["six_dir_success"][1], None, None]
    assert summary["n"] == 4


def test_object_mass_properties_of_several_parts():
    """COM and inertia of a union of convex parts (an L of two boxes) match trimesh's exact values."""
    a = trimesh.creation.box((0.06, 0.02, 0.02))
    b = trimesh.creation.box((0.02, 0.02, 0.04))
    b.apply_translation((0.02, 0.0, 0.03))  # touching, not overlapping
    geom = object_geometry([a, b])
    union = trimesh.util.concatenate([a, b])
    assert np.allclose(geom.com, union.center_mass, atol=1e-9)
    assert np.allclose(geom.inertia, union.moment_inertia / union.volume, rtol=1e-4)
    sim = LiftSimulator(geom, LiftConfig(object_mass=0.2))
    m = sim.model
    assert m.body_mass[sim.scene.obj_body] == pytest.approx(0.2)
    assert np.allclose(m.body_ipos[sim.scene.obj_body], union.center_mass, atol=1e-9)
    assert len(sim.scene.obj_geoms) == 2


def test_hand_contacts_point_from_the_hand_into_the_object(cube_sim):
    """Contacts read from MuJoCo's arrays: hand bodies only, normals into the cube, table agrees with subtrees."""
    sim = cube_sim
    m, d, s = sim.model, sim.data, sim.scene
    q = np.array(FIXTURES["cube_45mm"][0])
    sim._reset(q)
    m.geom_margin[s.obj_geoms] = 0.02  # as closing_offsets does: contacts within 2 cm
    mujoco.mj_forward(m, d)
    m.geom_margin[:] = sim._margin0
    c = sim._hand_object_contacts()
    assert len(c.dist) >= 4
    assert set(c.body.tolist()) <= {int(m.geom_bodyid[g]) for g in s.hand_geoms}
    np.testing.assert_allclose(np.linalg.norm(c.normal, axis=1), 1.0, atol=1e-9)
    # a cube centred at the origin: a normal into it points against the contact position's largest axis
    axis = np.abs(c.pos).argmax(axis=1)
    rows = np.arange(len(axis))
    assert np.all(np.sign(c.normal[rows, axis]) == -np.sign(c.pos[rows, axis]))
    # body_moves: each finger joint moves exactly its body's subtree (parents walked up from each body)
    for j, name in enumerate(JOINT_NAMES):
        jb = m.jnt_bodyid[m.joint(name).id]
        under = set()
        for b in range(m.nbody):
            a = b
            while a != 0 and a != jb:
                a = m.body_parentid[a]
            if a == jb:
                under.add(b)
        assert set(np.flatnonzero(s.body_moves[:, j]).tolist()) == under
    d.ncon = 0  # no contacts at all: an empty table, not an error
    assert len(sim._hand_object_contacts().dist) == 0

"""Ferrari-Canny Q1 and per-body contact averaging (dexlite_core.sim.grasp_metrics)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from dexlite_core.sim.grasp_metrics import contact_bodies_mean, ferrari_canny_q1, friction_cone_edges

# centres of the faces of a 4 cm cube, each finger pushing inward
FACES = 0.02 * np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], dtype=float)
INWARD = -FACES / 0.02


def test_cube_face_grasp_is_force_closed():
    assert ferrari_canny_q1(FACES, INWARD) > 0.05


def test_all_normals_one_way_is_not_force_closed():
    same = np.tile([0.0, 0.0, 1.0], (6, 1))
    assert ferrari_canny_q1(FACES, same) == 0.0


@pytest.mark.parametrize("mu", [0.0, 0.5, 1.0])
def test_two_antipodal_point_contacts_cannot_resist_torque_about_their_axis(mu):
    p = np.array([[0.02, 0.0, 0.0], [-0.02, 0.0, 0.0]])
    assert ferrari_canny_q1(p, -p / 0.02, mu=mu) == 0.0


def test_fewer_than_two_contacts_is_zero():
    assert ferrari_canny_q1(FACES[:1], INWARD[:1]) == 0.0
    assert ferrari_canny_q1(np.zeros((0, 3)), np.zeros((0, 3))) == 0.0


def test_q1_grows_with_friction():
    q = [ferrari_canny_q1(FACES, INWARD, mu=mu) for mu in (0.1, 0.3, 0.6, 1.0)]
    assert all(b > a + 1e-4 for a, b in zip(q, q[1:], strict=False)), q


def test_three_finger_grasp_needs_friction():
    # three coplanar contacts 120 degrees apart around z: frictionless they cannot resist z forces
    a = 2 * np.pi * np.arange(3) / 3
    p = 0.02 * np.stack([np.cos(a), np.sin(a), np.zeros(3)], axis=1)
    assert ferrari_canny_q1(p, -p / 0.02, mu=0.0) == 0.0
    # with friction the tangential forces resist z forces and, through the lever arms, z torques
    assert ferrari_canny_q1(p, -p / 0.02, mu=0.5) > 0.0


def test_invariant_to_a_rigid_motion():
    rng = np.random.default_rng(0)
    p = FACES + rng.normal(scale=0.002, size=FACES.shape)
    n = INWARD + rng.normal(scale=0.1, size=FACES.shape)
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    q = ferrari_canny_q1(p, n, mu=0.4)
    assert q > 0
    rot = Rotation.from_rotvec([0.3, -1.1, 0.7]).as_matrix()
    shift = np.array([0.5, -0.2, 1.0])
    assert ferrari_canny_q1(p @ rot.T + shift, n @ rot.T, mu=0.4) == pytest.approx(q, abs=1e-6)
    # lever arms along the normals (the cube's face centres): the cones' tangent bases come from
    # the other contacts, which move with the grasp too
    q_cube = ferrari_canny_q1(FACES, INWARD)
    assert ferrari_canny_q1(FACES @ rot.T + shift, INWARD @ rot.T) == pytest.approx(q_cube, abs=1e-6)
    # and with an explicit centre moved along
    c = np.array([0.003, -0.002, 0.001])
    q_c = ferrari_canny_q1(p, n, mu=0.4, center=c)
    moved = ferrari_canny_q1(p @ rot.T + shift, n @ rot.T, mu=0.4, center=rot @ c + shift)
    assert moved == pytest.approx(q_c, abs=1e-6)


def test_center_and_torque_scale_are_used():
    q = ferrari_canny_q1(FACES, INWARD)
    # defaults equal passing the mean point and mean distance explicitly
    assert ferrari_canny_q1(FACES, INWARD, center=FACES.mean(0), torque_scale=0.02) == pytest.approx(q, abs=1e-9)
    # a smaller torque scale inflates torques: the force rows then bound the ball, so Q1 changes
    assert ferrari_canny_q1(FACES, INWARD, torque_scale=0.002) != pytest.approx(q, abs=1e-6)
    # the same grasp about a far-off centre is a different (worse) wrench space
    assert ferrari_canny_q1(FACES, INWARD, center=[0.0, 0.0, 0.019], torque_scale=0.02) < q


def test_friction_cone_edges_have_the_cone_half_angle():
    n = INWARD
    f = friction_cone_edges(n, mu=0.3, n_edges=8)
    assert f.shape == (6, 8, 3)
    np.testing.assert_allclose(np.linalg.norm(f, axis=2), 1.0)
    np.testing.assert_allclose(np.einsum("kei,ki->ke", f, n), 1 / np.sqrt(1 + 0.3**2))
    np.testing.assert_allclose(f.mean(axis=1) / np.linalg.norm(f.mean(axis=1), axis=1, keepdims=True), n,
                               atol=1e-12)


def test_contact_bodies_mean_averages_each_body():
    ids = np.array([7, 3, 7, 3, 9])
    pos = np.array([[0, 0, 0], [1, 1, 1], [2, 0, 0], [3, 1, 1], [5, 5, 5]], dtype=float)
    nrm = np.array([[1, 0, 0], [0, 0, 1], [0, 1, 0], [0, 0, 1], [0, -2, 0]], dtype=float)
    p, n = contact_bodies_mean(ids, pos, nrm)
    np.testing.assert_allclose(p, [[2, 1, 1], [1, 0, 0], [5, 5, 5]])
    s = 1 / np.sqrt(2)
    np.testing.assert_allclose(n, [[0, 0, 1], [s, s, 0], [0, -1, 0]])


def test_a_contact_whose_averaged_normal_cancels_drops_out():
    """Two contacts of one body with opposite normals average to a zero normal: that body offers no
    push, so Q1 is that of the others (and never NaN or an SVD failure)."""
    pts, nrm = FACES, INWARD
    body = np.array([0, 1, 2, 3, 4, 5, 6, 6])
    p = np.concatenate([pts, [[0.0, 0.0, 0.05], [0.0, 0.0, 0.05]]])
    n = np.concatenate([nrm, [[0.0, 0.0, 1.0], [0.0, 0.0, -1.0]]])
    bp, bn = contact_bodies_mean(body, p, n)
    assert np.linalg.norm(bn[-1]) < 1e-12
    assert ferrari_canny_q1(bp, bn) == pytest.approx(ferrari_canny_q1(pts, nrm), rel=1e-9)
    assert ferrari_canny_q1(bp[-2:], bn[-2:]) == 0.0

"""The grasp energy: each term responds to the configuration that should drive it, gradients are exact."""

from __future__ import annotations

import torch
from conftest import sphere_field

from dexlite_core.config import EnergyConfig
from dexlite_core.energy import force_closure, grasp_energy

# palm-frame point the object sits at for a "hand in front of the object" pose
PALM_FRONT = torch.tensor([0.01, -0.06, 0.07], dtype=torch.float64)


def pose(t=(0.0, 0.0, 0.0), joints=None) -> torch.Tensor:
    q = torch.zeros(1, 28, dtype=torch.float64)
    q[0, :3] = torch.as_tensor(t, dtype=torch.float64)
    if joints is not None:
        q[0, 6:] = torch.as_tensor(joints, dtype=torch.float64)
    return q


def energy(hand, q, contacts=(10, 30, 60, 140), field=None):
    idx = torch.as_tensor([contacts] * q.shape[0])
    return grasp_energy(hand, field or sphere_field(), q, idx, EnergyConfig())


def test_far_pose_has_large_contact_distance(hand64):
    near = energy(hand64, pose(-PALM_FRONT))
    far = energy(hand64, pose(-PALM_FRONT + torch.tensor([0.0, 0.3, 0.0], dtype=torch.float64)))
    assert far.E_dis.item() > 4 * 0.2  # every contact at least 20 cm from the surface
    assert far.E_dis.item() > 5 * near.E_dis.item()
    assert far.E_pen.item() == 0.0


def test_pose_inside_object_has_large_penetration(hand64):
    inside = energy(hand64, pose((-0.011, 0.0, -0.038)))  # sphere centred in the palm box
    outside = energy(hand64, pose((0.0, 0.5, 0.0)))
    assert outside.E_pen.item() == 0.0
    assert inside.E_pen.item() > 1.0


def test_joint_limits(hand64):
    lo, hi = hand64.lower, hand64.upper
    assert energy(hand64, pose(joints=lo)).E_joints.item() == 0.0
    assert energy(hand64, pose(joints=hi)).E_joints.item() == 0.0
    beyond = hi.clone()
    beyond[0] += 0.2
    beyond[-1] += 0.1
    torch.testing.assert_close(
        energy(hand64, pose(joints=beyond)).E_joints, torch.tensor([0.3], dtype=torch.float64)
    )


def test_crossed_fingers_raise_self_penetration(hand64):
    relaxed = torch.zeros(22, dtype=torch.float64)
    crossed = relaxed.clone()
    crossed[0] = -0.6  # FFJ3: index finger swings towards the middle finger
    crossed[4] = 0.6  # MFJ3: middle finger swings towards the index finger
    e_relaxed = hand64(pose(joints=relaxed)).self_penetration()
    e_crossed = hand64(pose(joints=crossed)).self_penetration()
    assert e_relaxed.item() == 0.0
    assert e_crossed.item() > 0.01


def test_antipodal_contacts_have_lower_force_closure_than_one_sided():
    r = 0.04
    pts_anti = torch.tensor([[[r, 0, 0], [-r, 0, 0], [0, r, 0], [0, -r, 0]]], dtype=torch.float64)
    pts_one = torch.tensor(
        [[[r, 0, 0], [r * 0.8, r * 0.6, 0], [r * 0.8, -r * 0.6, 0], [r * 0.6, 0, r * 0.8]]],
        dtype=torch.float64,
    )
    n = lambda p: p / p.norm(dim=-1, keepdim=True)  # noqa: E731
    anti = force_closure(pts_anti, n(pts_anti))
    one = force_closure(pts_one, n(pts_one))
    assert anti.item() < 1e-12
    assert one.item() > 5.0


def test_energy_of_hand_far_away_is_pure_distance(hand64):
    q = pose((0.0, 0.5, 0.0))
    e = energy(hand64, q)
    torch.testing.assert_close(e.total, e.E_fc + 100 * e.E_dis + 10 * e.E_spen + e.E_joints)


def test_gradients_match_finite_differences(hand64):
    torch.manual_seed(0)
    q = pose(-PALM_FRONT, joints=(hand64.lower + hand64.upper) / 2)
    q[0, 3:6] = torch.tensor([0.1, -0.2, 0.3])
    q = q + 0.01 * torch.randn_like(q)
    q.requires_grad_(True)
    field = sphere_field(radius=0.05)
    idx = torch.tensor([[12, 33, 75, 145]])

    def f(x):
        return grasp_energy(hand64, field, x, idx, EnergyConfig()).total

    e = f(q)
    assert e.item() > 0
    assert torch.autograd.gradcheck(f, (q,), eps=1e-6, atol=1e-4, rtol=1e-3)


def test_float32_batched_matches_float64(hand32, hand64):
    torch.manual_seed(1)
    q = pose(-PALM_FRONT).repeat(8, 1) + 0.02 * torch.randn(8, 28, dtype=torch.float64)
    idx = torch.randint(0, hand64.n_candidates, (8, 4))
    e64 = grasp_energy(hand64, sphere_field(), q, idx).total
    e32 = grasp_energy(hand32, sphere_field(dtype=torch.float32), q.float(), idx).total
    torch.testing.assert_close(e32.double(), e64, rtol=1e-3, atol=1e-3)

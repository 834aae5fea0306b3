"""DexGraspNet-style initial poses around an object.

For B poses:
  1. sample B points p on the object's convex hull inflated outward by ``hull_inflate`` metres, and
     the inward unit direction n from p to the nearest point of the original hull;
  2. draw distance d ~ U[distance_lower, distance_upper], a cone deviation ~ U[-pi/6, pi/6], a
     process (cone azimuth) and a roll ~ U[0, 2 pi);
  3. rotation R = R_global(n) R_local(process, deviation, roll) R_hand, where R_global maps z to n
     and R_hand = Rx(-pi/3) maps the hand's approach axis (0, -sin 60, cos 60) (palmar and forward)
     to z: the palm faces the object;
  4. translation t = p - d (R_global R_local z): the palm stands d back from p along the approach;
  5. joints ~ truncated normal around a relaxed mean, sigma = jitter_strength * (upper - lower);
  6. K contact indices uniform over the hand's candidates.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import trimesh

from ..config import SeedConfig
from ..hand.asset import N_JOINTS
from ..hand.model import HandModel
from ..hand.rotation import euler_to_matrix, matrix_to_euler

# DexGraspNet's relaxed joint mean, in our (= its) joint order
JOINT_MEAN = (
    [0.1, 0.0, 0.6, 0.0] + [0.0, 0.0, 0.6, 0.0] + [-0.1, 0.0, 0.6, 0.0]
    + [0.0, -0.2, 0.0, 0.6, 0.0] + [0.0, 1.2, 0.0, -0.2, 0.0]
)  # fmt: skip


def _rot_z_to(n: torch.Tensor) -> torch.Tensor:
    """`(B, 3)` unit vectors -> `(B, 3, 3)` rotations mapping z to n (Rodrigues, stable at -z)."""
    z = torch.tensor([0.0, 0.0, 1.0], dtype=n.dtype, device=n.device).expand_as(n)
    v = torch.cross(z, n, dim=-1)
    c = (z * n).sum(-1)
    K = torch.zeros(n.shape[0], 3, 3, dtype=n.dtype, device=n.device)
    K[:, 0, 1], K[:, 0, 2], K[:, 1, 2] = -v[:, 2], v[:, 1], -v[:, 0]
    K = K - K.transpose(1, 2)
    eye = torch.eye(3, dtype=n.dtype, device=n.device).expand_as(K)
    R = eye + K + K @ K / (1 + c).clamp(min=1e-6)[:, None, None]
    flip = c < -0.999999  # n = -z: rotate pi about x
    R[flip] = torch.diag(torch.tensor([1.0, -1.0, -1.0], dtype=n.dtype, device=n.device))
    return R


def _rz(a: torch.Tensor) -> torch.Tensor:
    return euler_to_matrix(torch.stack([torch.zeros_like(a), torch.zeros_like(a), a], -1))


def _rx(a: torch.Tensor) -> torch.Tensor:
    return euler_to_matrix(torch.stack([a, torch.zeros_like(a), torch.zeros_like(a)], -1))


def initial_poses(
    hand: HandModel,
    mesh: trimesh.Trimesh,
    n: int,
    cfg: SeedConfig | None = None,
    n_contacts: int = 4,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` initial poses `(n, 28)` and contact indices `(n, K)` around `mesh` (object frame)."""
    cfg = cfg or SeedConfig()
    g = generator or torch.Generator().manual_seed(cfg.seed)
    dt, dev = hand.dtype, hand.device
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=g))
    hull = mesh.convex_hull
    inflated_pts = hull.vertices + cfg.hull_inflate * (hull.vertices - hull.centroid) / np.linalg.norm(
        hull.vertices - hull.centroid, axis=1, keepdims=True
    )
    inflated = trimesh.Trimesh(inflated_pts, process=True).convex_hull
    p, _ = trimesh.sample.sample_surface_even(inflated, max(n * 4, 64), seed=seed)
    if len(p) < n:  # even sampling may return fewer points
        p = np.concatenate([p, trimesh.sample.sample_surface(inflated, n - len(p), seed=seed)[0]])
    p = p[torch.randperm(len(p), generator=g)[:n].numpy()]
    closest, _, _ = trimesh.proximity.closest_point(hull, p)
    inward = closest - p
    inward /= np.linalg.norm(inward, axis=1, keepdims=True).clip(min=1e-9)

    P = torch.as_tensor(p, dtype=dt, device=dev)
    N = torch.as_tensor(inward, dtype=dt, device=dev)

    def u(lo: float, hi: float) -> torch.Tensor:
        return (lo + (hi - lo) * torch.rand(n, generator=g, dtype=torch.float64)).to(dt).to(dev)

    d = u(cfg.distance_lower, cfg.distance_upper)
    deviate = u(-math.pi / 6, math.pi / 6)
    process, roll = u(0, 2 * math.pi), u(0, 2 * math.pi)
    r_global = _rot_z_to(N)
    r_local = _rz(process) @ _rx(deviate) @ _rz(roll)
    r_hand = _rx(torch.full((n,), -math.pi / 3, dtype=dt, device=dev))
    R = r_global @ r_local @ r_hand
    approach = (r_global @ r_local)[:, :, 2]
    t = P - d[:, None] * approach

    lo, hi = hand.lower, hand.upper
    mean = torch.as_tensor(JOINT_MEAN, dtype=dt, device=dev).clamp(lo, hi)
    std = cfg.jitter_strength * (hi - lo)
    joints = (mean + std * torch.randn(n, N_JOINTS, generator=g, dtype=torch.float64).to(dt).to(dev)).clamp(
        lo, hi
    )

    q = torch.cat([t, matrix_to_euler(R), joints], dim=-1)
    idx = torch.randint(0, hand.n_candidates, (n, n_contacts), generator=g).to(dev)
    return q, idx

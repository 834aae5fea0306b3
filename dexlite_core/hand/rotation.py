"""Rotations of the pose vector: static-axis XYZ Euler angles ('sxyz'), R = Rz @ Ry @ Rx.

The same convention as DexGraspNet's saved `WRJRx/y/z` (transforms3d `euler2mat(..., 'sxyz')`).
"""

from __future__ import annotations

import torch

from .euler_np import euler_to_matrix_np, matrix_entries, matrix_to_euler_np  # noqa: F401 - NumPy twins re-exported


def euler_to_matrix(euler: torch.Tensor) -> torch.Tensor:
    """Rotation matrices from Euler angles.

    Args:
        euler: `(..., 3)` angles `[rx, ry, rz]` in radians.
    Returns:
        `(..., 3, 3)` matrices `Rz(rz) @ Ry(ry) @ Rx(rx)`; differentiable.
    """
    rows = matrix_entries(torch.cos(euler).unbind(-1), torch.sin(euler).unbind(-1))
    return torch.stack(rows, dim=-1).reshape(*euler.shape[:-1], 3, 3)


def matrix_to_euler(R: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`euler_to_matrix`: `(..., 3, 3)` -> `(..., 3)` with ry in [-pi/2, pi/2]."""
    sy = (-R[..., 2, 0]).clamp(-1.0, 1.0)
    ry = torch.asin(sy)
    rx = torch.atan2(R[..., 2, 1], R[..., 2, 2])
    rz = torch.atan2(R[..., 1, 0], R[..., 0, 0])
    return torch.stack([rx, ry, rz], dim=-1)

"""NumPy versions of :mod:`dexlite_core.hand.rotation` ('sxyz' Euler angles, R = Rz @ Ry @ Rx).

Torch-free on purpose: MuJoCo worker processes (:mod:`dexlite_core.sim.lift`) use them without
importing torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def matrix_entries(cos: Sequence[Any], sin: Sequence[Any]) -> tuple[Any, ...]:
    """The 9 entries (row-major) of `Rz @ Ry @ Rx` from `(cos, sin)` of `(rx, ry, rz)`; plain
    arithmetic, so NumPy arrays and torch tensors (differentiable) both work."""
    cx, cy, cz = cos
    sx, sy, sz = sin
    return (
        cz * cy, cz * sy * sx - sz * cx, cz * sy * cx + sz * sx,
        sz * cy, sz * sy * sx + cz * cx, sz * sy * cx - cz * sx,
        -sy, cy * sx, cy * cx,
    )  # fmt: skip


def euler_to_matrix_np(euler: np.ndarray) -> np.ndarray:
    """`(..., 3)` angles `[rx, ry, rz]` -> `(..., 3, 3)` matrices `Rz @ Ry @ Rx`, float64."""
    e = np.asarray(euler, dtype=np.float64)
    rows = matrix_entries(np.moveaxis(np.cos(e), -1, 0), np.moveaxis(np.sin(e), -1, 0))
    return np.stack(rows, axis=-1).reshape(*e.shape[:-1], 3, 3)


def matrix_to_euler_np(R: np.ndarray) -> np.ndarray:
    """Inverse of :func:`euler_to_matrix_np`: `(..., 3, 3)` -> `(..., 3)` with ry in [-pi/2, pi/2]."""
    R = np.asarray(R, dtype=np.float64)
    ry = np.arcsin(np.clip(-R[..., 2, 0], -1.0, 1.0))
    return np.stack([np.arctan2(R[..., 2, 1], R[..., 2, 2]), ry, np.arctan2(R[..., 1, 0], R[..., 0, 0])], axis=-1)

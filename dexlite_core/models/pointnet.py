"""PointNet object encoder (write-up appendix, "PointNet" table).

Layers (1-D convolutions with kernel size 1, i.e. one shared MLP applied to every point):

    conv1  3 ->   64   BN + ReLU
    conv2  64 ->  128  BN + ReLU
    conv3  128 -> 1024 BN + ReLU
    conv4  1024 -> 256 BN (no activation)
    max pool over the N points -> global feature (B, 256)

The per-point output of conv4 (after its BatchNorm, before pooling) is the *local feature* of a point,
`(B, N, 256)`; the CVAE gathers the local feature of its "associated point" from it. Because every
layer acts on one point at a time, a local feature depends only on that point's coordinates (and on
the BatchNorm statistics), while the global feature sees the whole cloud and is invariant to the order
of the points. Convolutions keep their bias (PyTorch default), so the parameter count is
406,016 (see :data:`POINTNET_PARAMS` and `tests/test_models.py` for the arithmetic).

Note on BatchNorm: in training mode the statistics are over all `B * N` points of the batch, so a
single cloud (B = 1) is a valid batch; in eval mode the running statistics are used.
"""

from __future__ import annotations

import torch
from torch import nn

FEATURE_DIM = 256
CHANNELS: tuple[int, ...] = (3, 64, 128, 1024, FEATURE_DIM)
# sum over the four conv layers of (c_in * c_out + c_out) + BatchNorm (2 * c_out)
POINTNET_PARAMS = sum(a * b + b + 2 * b for a, b in zip(CHANNELS[:-1], CHANNELS[1:], strict=True))


class PointNet(nn.Module):
    """Shared per-point MLP + max pool. Call with points `(B, N, 3)` (or `(N, 3)`, read as B = 1)."""

    def __init__(self, channels: tuple[int, ...] = CHANNELS) -> None:
        super().__init__()
        if channels[0] != 3:
            raise ValueError(f"PointNet input must have 3 channels (xyz), got {channels[0]}")
        layers: list[nn.Module] = []
        n = len(channels) - 1
        for i, (c_in, c_out) in enumerate(zip(channels[:-1], channels[1:], strict=True)):
            layers.append(nn.Conv1d(c_in, c_out, kernel_size=1))
            layers.append(nn.BatchNorm1d(c_out))
            if i < n - 1:  # no activation after the last layer
                layers.append(nn.ReLU(inplace=True))
        self.mlp = nn.Sequential(*layers)
        self.out_dim = channels[-1]

    def forward(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Global and local features.

        Args:
            points: `(B, N, 3)` (or `(N, 3)`) point coordinates in the object frame, metres.
        Returns:
            global_feat `(B, 256)` (max over points) and local_feat `(B, N, 256)` (per point).
        """
        if points.dim() == 2:
            points = points.unsqueeze(0)
        if points.dim() != 3 or points.shape[-1] != 3:
            raise ValueError(f"points must be (B, N, 3) or (N, 3), got {tuple(points.shape)}")
        local = self.mlp(points.transpose(1, 2))  # (B, 256, N)
        global_feat = local.max(dim=2).values  # (B, 256)
        return global_feat, local.transpose(1, 2)  # (B, N, 256)


def gather_points(features: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Rows of per-point features at point indices.

    Args:
        features: `(B, N, C)` per-point features (or points).
        index: `(B,)` or `(B, M)` integer indices into N.
    Returns:
        `(B, C)` or `(B, M, C)` gathered rows.
    """
    squeeze = index.dim() == 1
    idx = index.unsqueeze(1) if squeeze else index
    out = torch.gather(features, 1, idx.long().unsqueeze(-1).expand(-1, -1, features.shape[-1]))
    return out.squeeze(1) if squeeze else out


def nearest_point_index(points: torch.Tensor, xyz: torch.Tensor) -> torch.Tensor:
    """Index of the cloud point nearest to each query point.

    Args:
        points: `(B, N, 3)` clouds, or `(N, 3)` shared by every query.
        xyz: `(B, 3)` or `(B, M, 3)` query points.
    Returns:
        `(B,)` or `(B, M)` long indices into N.
    """
    squeeze = xyz.dim() == 2
    x = xyz.unsqueeze(1) if squeeze else xyz  # (B, M, 3)
    p = points.unsqueeze(0).expand(x.shape[0], -1, -1) if points.dim() == 2 else points
    d = torch.cdist(x, p.to(x.dtype), compute_mode="donot_use_mm_for_euclid_dist")
    idx = d.argmin(dim=-1)  # (B, M)
    return idx.squeeze(1) if squeeze else idx

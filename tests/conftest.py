"""Shared fixtures: analytic objects whose exact signed distance the tests know."""

from __future__ import annotations

import pytest
import torch

from dexlite_core.energy import ObjectField


class SphereSDF:
    """Exact SDF of a sphere of radius r at the origin (negative inside)."""

    def __init__(self, radius: float) -> None:
        self.radius = radius

    def query(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        norm = x.norm(dim=-1).clamp(min=1e-9)
        return norm - self.radius, x / norm[..., None]

    def distance(self, x: torch.Tensor) -> torch.Tensor:
        return x.norm(dim=-1) - self.radius


def sphere_field(radius: float = 0.04, n: int = 2048, dtype: torch.dtype = torch.float64) -> ObjectField:
    g = torch.Generator().manual_seed(0)
    p = torch.randn(n, 3, generator=g, dtype=torch.float64)
    return ObjectField(SphereSDF(radius), (radius * p / p.norm(dim=-1, keepdim=True)).to(dtype))


@pytest.fixture(scope="session")
def hand64():
    from dexlite_core.hand.model import HandModel

    return HandModel(dtype=torch.float64)


@pytest.fixture(scope="session")
def hand32():
    from dexlite_core.hand.model import HandModel

    return HandModel(dtype=torch.float32)


def write_convex_objects(root, meshes) -> None:
    """Minimal object folders `root/<id>/` (one convex part each, ``_SUCCESS``), as the simulators
    read them: `meshes` maps object id -> trimesh mesh."""
    for oid, mesh in meshes.items():
        (root / oid / "convex").mkdir(parents=True)
        mesh.export(root / oid / "convex" / "part_000.obj")
        (root / oid / "_SUCCESS").write_text("")

"""Procedural primitive meshes (deterministic, watertight, outward-facing, centred at the origin).

Every generator returns a :class:`trimesh.Trimesh` in arbitrary units; ingest normalises the
longest bounding-box edge to ``ObjectConfig.size`` anyway, so only proportions matter here.
Generators are module-level functions so that ``functools.partial`` of them pickles (worker
processes of :func:`dexlite_core.objects.ingest_many`).
"""

from __future__ import annotations

import numpy as np
import trimesh


def box(extents: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> trimesh.Trimesh:
    """Axis-aligned box with the given edge lengths `(3,)`."""
    return trimesh.creation.box(extents=np.asarray(extents, dtype=np.float64))


def cylinder(radius: float = 0.5, height: float = 1.0, sections: int = 48) -> trimesh.Trimesh:
    """Cylinder along z."""
    return trimesh.creation.cylinder(radius=radius, height=height, sections=sections)


def sphere(radius: float = 0.5, subdivisions: int = 3) -> trimesh.Trimesh:
    """Icosphere (subdivisions=3: 1280 faces)."""
    return trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)


def capsule(radius: float = 0.25, height: float = 0.5, count: tuple[int, int] = (32, 32)) -> trimesh.Trimesh:
    """Capsule along z; `height` is the length of the cylindrical part (total = height + 2 r)."""
    return trimesh.creation.capsule(height=height, radius=radius, count=list(count))


def ellipsoid(
    radii: tuple[float, float, float] = (0.5, 0.35, 0.25), subdivisions: int = 3
) -> trimesh.Trimesh:
    """Icosphere scaled per axis to semi-axes `radii (3,)`."""
    m = trimesh.creation.icosphere(subdivisions=subdivisions, radius=1.0)
    m.apply_scale(np.asarray(radii, dtype=np.float64))
    return m


def torus(
    major_radius: float = 0.35, minor_radius: float = 0.12, major_sections: int = 48, minor_sections: int = 24
) -> trimesh.Trimesh:
    """Torus around z."""
    return trimesh.creation.torus(
        major_radius=major_radius,
        minor_radius=minor_radius,
        major_sections=major_sections,
        minor_sections=minor_sections,
    )


GENERATORS = {
    "box": box,
    "cylinder": cylinder,
    "sphere": sphere,
    "capsule": capsule,
    "ellipsoid": ellipsoid,
    "torus": torus,
}

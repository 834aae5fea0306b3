"""The bundled default object set: procedural primitives plus real meshes shipped by pybullet_data.

Everything is offline and installs with the project (``pybullet`` brings ``pybullet_data``).
Primitives come in several proportions and sizes (``ObjectSource.size`` overrides
``ObjectConfig.size``: the longest bounding-box edge in metres). Meshes keep a size too; at real size
(``ObjectConfig.size`` None) those with a URDF use its mesh scale instead (``ObjectSource.unit_scale``).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from functools import partial
from pathlib import Path
from typing import Any

from dexlite_core.objects.primitives import GENERATORS
from dexlite_core.objects.source import ObjectSource

# (name, generator, parameters, longest edge in metres)
PRIMITIVES: list[tuple[str, str, dict[str, Any], float]] = [
    ("box-cube-6cm", "box", {"extents": (1.0, 1.0, 1.0)}, 0.06),
    ("box-cube-9cm", "box", {"extents": (1.0, 1.0, 1.0)}, 0.09),
    ("box-brick-10cm", "box", {"extents": (1.0, 0.6, 0.35)}, 0.10),
    ("box-brick-14cm", "box", {"extents": (1.0, 0.6, 0.35)}, 0.14),
    ("box-bar-14cm", "box", {"extents": (1.0, 0.3, 0.3)}, 0.14),
    ("box-slab-12cm", "box", {"extents": (1.0, 0.75, 0.2)}, 0.12),
    ("cylinder-squat-8cm", "cylinder", {"radius": 0.5, "height": 0.6}, 0.08),
    ("cylinder-can-10cm", "cylinder", {"radius": 0.33, "height": 1.0}, 0.10),
    ("cylinder-can-14cm", "cylinder", {"radius": 0.33, "height": 1.0}, 0.14),
    ("cylinder-rod-12cm", "cylinder", {"radius": 0.15, "height": 1.0}, 0.12),
    ("sphere-5cm", "sphere", {"radius": 0.5}, 0.05),
    ("sphere-7cm", "sphere", {"radius": 0.5}, 0.07),
    ("sphere-9cm", "sphere", {"radius": 0.5}, 0.09),
    ("capsule-10cm", "capsule", {"radius": 0.25, "height": 0.5}, 0.10),
    ("capsule-long-13cm", "capsule", {"radius": 0.15, "height": 0.7}, 0.13),
    ("ellipsoid-10cm", "ellipsoid", {"radii": (0.5, 0.35, 0.25)}, 0.10),
    ("ellipsoid-egg-8cm", "ellipsoid", {"radii": (0.5, 0.36, 0.36)}, 0.08),
    ("torus-10cm", "torus", {"major_radius": 0.35, "minor_radius": 0.12}, 0.10),
    ("torus-thick-9cm", "torus", {"major_radius": 0.3, "minor_radius": 0.18}, 0.09),
]

# (name, path under pybullet_data, longest edge in metres, URDF giving its metric scale or None)
REAL_MESHES: list[tuple[str, str, float, str | None]] = [
    ("bunny", "bunny.obj", 0.10, None),  # no URDF: keeps its 10 cm at real size too (the file is ~2 m)
    ("duck", "duck.obj", 0.10, "duck_vhacd.urdf"),
    ("teddy", "teddy2_VHACD_CHs.obj", 0.12, "teddy_vhacd.urdf"),  # its mesh: a union of convex hulls
    ("mug", "objects/mug.obj", 0.11, "objects/mug.urdf"),
]

N_RANDOM = 1000  # pybullet_data/random_urdfs/000 .. 999
RANDOM_SIZE = 0.10
TINY = ("box-brick-10cm", "cylinder-can-10cm", "bunny")


def pybullet_data_dir() -> Path:
    import pybullet_data

    return Path(pybullet_data.getDataPath())


def urdf_mesh_scale(urdf: Path, mesh: str) -> float | None:
    """The uniform ``<mesh scale>`` (metres per unit; 1 when absent) the URDF gives the mesh file named
    `mesh`; None when the URDF is missing or unreadable, does not use the mesh, or scales it unevenly."""
    try:
        elems = ET.parse(urdf).getroot().iter("mesh")
        scales = {e.get("scale", "1 1 1") for e in elems if Path(e.get("filename", "")).name == mesh}
        (scale,) = {float(v) for s in scales for v in s.split()}
    except (OSError, ET.ParseError, ValueError):  # ValueError: no / several scales, or not numbers
        return None
    return scale if scale > 0 else None


def primitive_sources() -> list[ObjectSource]:
    """Procedural primitives (deterministic meshes generated in code)."""
    return [
        ObjectSource(
            name=name,
            generator=partial(GENERATORS[kind], **params),
            size=size,
            params={"kind": kind, **params},
        )
        for name, kind, params, size in PRIMITIVES
    ]


def real_sources() -> list[ObjectSource]:
    """Real meshes from pybullet_data (those present in the installed version)."""
    root = pybullet_data_dir()
    return [
        ObjectSource(name=name, path=root / rel, size=size,
                     unit_scale=urdf_mesh_scale(root / urdf, Path(rel).name) if urdf else None)
        for name, rel, size, urdf in REAL_MESHES
        if (root / rel).is_file()
    ]


def random_sources(n: int, start: int = 0) -> list[ObjectSource]:
    """`n` of pybullet_data's random_urdfs objects (``NNN/NNN.obj``) in index order from `start`."""
    root = pybullet_data_dir() / "random_urdfs"
    out = []
    for i in range(start, min(start + max(n, 0), N_RANDOM)):
        p = root / f"{i:03d}" / f"{i:03d}.obj"
        if p.is_file():
            unit_scale = urdf_mesh_scale(p.with_suffix(".urdf"), p.name)
            out.append(ObjectSource(name=f"random-{i:03d}", path=p, size=RANDOM_SIZE, unit_scale=unit_scale))
    return out


def bundled_sources(
    n_random: int = 0, include_primitives: bool = True, include_real: bool = True
) -> list[ObjectSource]:
    """The default object set: primitives, real meshes, and the first `n_random` random_urdfs."""
    out: list[ObjectSource] = []
    if include_primitives:
        out += primitive_sources()
    if include_real:
        out += real_sources()
    out += random_sources(n_random)
    return out


def tiny_sources() -> list[ObjectSource]:
    """Three objects for fast tests and smoke runs: a box, a cylinder, one real mesh (bunny)."""
    by_name = {s.name: s for s in primitive_sources() + real_sources()}
    return [by_name[n] for n in TINY if n in by_name]

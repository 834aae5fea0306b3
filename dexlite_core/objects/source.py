"""Where an object comes from (a mesh file or a generator) and the errors of unusable meshes."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import trimesh


class MeshError(ValueError):
    """A mesh that cannot be used; the message names the file (or generator) and the reason."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


class ObjectLoadError(ValueError):
    """An object folder that cannot be loaded (missing, incomplete or corrupt)."""


MESH_EXTENSIONS = ("obj", "stl", "ply", "glb", "gltf", "off")


@dataclass(frozen=True)
class ObjectSource:
    """One object to ingest: a mesh file (`path`) or a mesh generator (`generator`, no arguments).

    `size` (metres), when set, overrides ``ObjectConfig.size`` for this object (bundled primitives
    come in several sizes). `unit_scale`: metres per mesh unit when the object is kept at its real
    size (``ObjectConfig.size`` None), known for a bundled mesh from its URDF; it then wins over
    `size` and ``ObjectConfig.units``. `group`: the object's identity shared by all its scales (meta's
    ``group``; default `name`). `params` describes a generated shape (goes into meta.json).
    """

    name: str
    path: Path | None = None
    generator: Callable[[], trimesh.Trimesh] | None = None
    size: float | None = None
    params: dict[str, Any] = field(default_factory=dict, compare=False)
    unit_scale: float | None = None
    group: str | None = None

    def __post_init__(self) -> None:
        if (self.path is None) == (self.generator is None):
            raise ValueError(f"ObjectSource {self.name!r}: give exactly one of path or generator")
        if self.path is not None and not isinstance(self.path, Path):
            object.__setattr__(self, "path", Path(self.path))

    @classmethod
    def from_path(cls, path: str | Path, name: str | None = None, size: float | None = None) -> ObjectSource:
        p = Path(path)
        return cls(name=name or p.stem, path=p, size=size)

    @property
    def label(self) -> str:
        """What error messages name: the file path, or ``generated:<name>``."""
        return str(self.path) if self.path is not None else f"generated:{self.name}"

    def describe(self) -> str:
        if self.path is not None:
            return str(self.path)
        return f"generated:{self.name} {json.dumps(self.params, sort_keys=True)}"


def as_source(source: ObjectSource | str | Path | trimesh.Trimesh, name: str | None = None) -> ObjectSource:
    """Accept an ObjectSource, a mesh path, or an in-memory Trimesh."""
    if isinstance(source, ObjectSource):
        return source
    if isinstance(source, trimesh.Trimesh):
        mesh = source.copy()
        return ObjectSource(name=name or "mesh", generator=_Constant(mesh))
    if isinstance(source, (str, Path)):
        return ObjectSource.from_path(source, name=name)
    raise TypeError(f"cannot ingest a {type(source).__name__}; give a path, an ObjectSource or a Trimesh")


class _Constant:
    """Picklable zero-argument generator returning a copy of a fixed mesh."""

    def __init__(self, mesh: trimesh.Trimesh) -> None:
        self.vertices = np.asarray(mesh.vertices, dtype=np.float64).copy()
        self.faces = np.asarray(mesh.faces, dtype=np.int64).copy()

    def __call__(self) -> trimesh.Trimesh:
        return trimesh.Trimesh(self.vertices.copy(), self.faces.copy(), process=False)


def slugify(name: str, max_len: int = 40) -> str:
    s = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return (s[:max_len].strip("-")) or "object"


def read_source(src: ObjectSource) -> tuple[bytes, trimesh.Trimesh]:
    """Return (bytes identifying the source, raw triangle mesh); raises MeshError.

    For a file the bytes are its content; for a generator, the generated vertex and face arrays.
    A glb/gltf (or any) Scene is concatenated into one mesh with its node transforms applied.
    """
    label = src.label
    if src.generator is not None:
        try:
            mesh = src.generator()
        except Exception as exc:  # noqa: BLE001 - any generator failure is a mesh error
            raise MeshError(label, f"generator failed ({type(exc).__name__}: {exc})") from exc
        mesh = _as_trimesh(mesh, label)
        v = np.ascontiguousarray(mesh.vertices, dtype="<f8")
        f = np.ascontiguousarray(mesh.faces, dtype="<i8")
        return b"generated:" + src.name.encode() + v.tobytes() + f.tobytes(), mesh

    path = src.path
    assert path is not None
    if not path.exists():
        raise MeshError(label, "file not found")
    if not path.is_file():
        raise MeshError(label, "not a regular file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise MeshError(label, f"cannot read file ({exc})") from exc
    if len(data) == 0:
        raise MeshError(label, "empty file")
    ext = path.suffix.lower().lstrip(".")
    if ext not in MESH_EXTENSIONS:
        raise MeshError(
            label, f"unsupported mesh format {path.suffix!r} (supported: {', '.join(MESH_EXTENSIONS)})"
        )
    try:
        # from disk, not from `data`: obj/gltf may reference side files (.mtl, .bin)
        loaded = trimesh.load(str(path), file_type=ext, process=False)
    except Exception as exc:  # noqa: BLE001 - trimesh raises many types on garbage input
        raise MeshError(label, f"unreadable {ext} file ({type(exc).__name__}: {exc})") from exc
    return data, _as_trimesh(loaded, label)


def _as_trimesh(loaded: Any, label: str) -> trimesh.Trimesh:
    if isinstance(loaded, trimesh.Scene):
        geoms = []
        try:
            for node in loaded.graph.nodes_geometry:
                transform, gname = loaded.graph[node]
                g = loaded.geometry[gname]
                if isinstance(g, trimesh.Trimesh) and len(g.faces):
                    geoms.append(g.copy().apply_transform(transform))
        except Exception as exc:  # noqa: BLE001
            raise MeshError(label, f"cannot flatten scene ({type(exc).__name__}: {exc})") from exc
        if not geoms:
            raise MeshError(label, "no triangles (unreadable, empty, or a scene without triangle meshes)")
        loaded = trimesh.util.concatenate(geoms)
    if not isinstance(loaded, trimesh.Trimesh):
        raise MeshError(label, f"not a triangle mesh (got {type(loaded).__name__})")
    return loaded

"""Mesh validation, repair and normalisation (before any sampling).

Unusable input raises :class:`MeshError` naming the file and the reason. Meshes made of several
overlapping closed bodies (pybullet's VHACD'd assets, random_urdfs) are reduced to the outer
surface of their union: faces inside another body are removed after subdividing the faces that
cross a body's surface, so what is left inside is at most `max_edge` wide.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import trimesh

from dexlite_core.objects.sdf import winding_number
from dexlite_core.objects.source import MeshError


@dataclass
class Bodies:
    """The closed bodies of a multi-body mesh and, per face of the cleaned mesh, its body."""

    closed: list[trimesh.Trimesh] = field(default_factory=list)
    face_body: np.ndarray | None = None  # (F,) index into `closed`, -1 for faces of open bodies

    def transformed(self, center: np.ndarray, scale: float) -> Bodies:
        out = []
        for b in self.closed:
            c = b.copy()
            c.apply_translation(-center)
            c.apply_scale(scale)
            out.append(c)
        return Bodies(out, self.face_body)

    def inside_other(self, points: np.ndarray, body: np.ndarray) -> np.ndarray:
        """True for points `(M, 3)` (on a face of body `body (M,)`) inside another closed body.

        Pass surface points pushed slightly outward to also catch faces in contact."""
        inside = np.zeros(len(points), dtype=bool)
        for i in range(len(self.closed)):
            sel = body != i
            if sel.any():
                idx = np.flatnonzero(sel)
                inside[idx] |= _inside(points[idx], self.closed[i])
        return inside


def repair_mesh(
    mesh: trimesh.Trimesh, label: str, max_edge: float | None = None
) -> tuple[trimesh.Trimesh, Bodies, dict[str, Any]]:
    """Validate and repair a raw triangle mesh; raises :class:`MeshError` naming `label`.

    Steps: reject empty / non-finite / out-of-range input; merge duplicate vertices; drop
    zero-area and duplicate faces; reject flat or zero-volume shapes; make winding consistent and
    normals outward (per body); fill simple holes; for several overlapping bodies keep only the
    outer surface of their union (see module doc; `max_edge` defaults to 1/128 of the longest
    extent). Returns (mesh, bodies, info dict of what was done).
    """
    v = np.asarray(mesh.vertices, dtype=np.float64)
    f = np.asarray(mesh.faces)
    if len(v) == 0 or len(f) == 0:
        raise MeshError(label, f"empty mesh ({len(v)} vertices, {len(f)} faces)")
    if f.ndim != 2 or f.shape[1] != 3:
        raise MeshError(label, f"not a triangle mesh (faces of shape {f.shape})")
    if f.min() < 0 or f.max() >= len(v):
        raise MeshError(label, "face indices out of range")
    bad = ~np.isfinite(v).all(axis=1)
    if bad.any():
        raise MeshError(label, f"{int(bad.sum())} of {len(v)} vertices have NaN/inf coordinates")
    info: dict[str, Any] = {"input_vertices": len(v), "input_faces": len(f)}
    raw = trimesh.Trimesh(v, f.astype(np.int64), process=False)
    scale = float(raw.extents.max())
    if not np.isfinite(scale) or scale <= 0:
        raise MeshError(label, "degenerate: all vertices coincide")
    m, stats = _basic_clean(raw, scale)
    info.update(stats)
    if len(m.faces) == 0:
        raise MeshError(label, "all faces are degenerate (zero area)")
    ext = m.extents
    if ext.min() <= 1e-6 * ext.max():
        raise MeshError(label, f"flat shape (extents {np.round(ext, 9).tolist()}): zero volume")
    try:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            hull_volume = float(m.convex_hull.volume)
    except Exception as exc:  # noqa: BLE001 - qhull on coplanar points
        raise MeshError(label, f"flat or degenerate shape: zero volume (convex hull failed: {exc})") from exc
    if not hull_volume > 1e-6 * ext.max() ** 3:
        raise MeshError(label, f"zero volume (hull volume {hull_volume:.3g}, longest extent {ext.max():.3g})")

    # Bodies as authored: components of the unmerged mesh, when at least two are closed on their
    # own (glued blocks share vertices once merged, which would hide them).
    parts: list[trimesh.Trimesh] | None = None
    if len(f) <= 200_000:
        raw_parts = raw.split(only_watertight=False)
        if 1 < len(raw_parts) <= 256:
            cleaned = [_basic_clean(p, scale)[0] for p in raw_parts]
            cleaned = [p for p in cleaned if len(p.faces)]
            if sum(p.is_watertight for p in cleaned) >= 2:
                parts = cleaned
                for p in parts:
                    trimesh.repair.fix_normals(p, multibody=True)
    was_watertight = m.is_watertight
    if parts is None:
        trimesh.repair.fix_normals(m, multibody=True)
        if not was_watertight:
            trimesh.repair.fill_holes(m)
            trimesh.repair.fix_normals(m, multibody=True)
        parts = m.split(only_watertight=False) if m.body_count > 1 else [m]
    info["filled_holes"] = (not was_watertight) and m.is_watertight
    info["bodies"] = len(parts)
    bodies = Bodies()
    if len(parts) > 1:
        m, bodies, n_removed = union_surface(parts, max_edge or scale / 128.0)
        info["interior_faces_removed"] = n_removed
    info["watertight"] = bool(m.is_watertight)
    info["winding_consistent"] = bool(m.is_winding_consistent)
    return m, bodies, info


def _basic_clean(mesh: trimesh.Trimesh, scale: float) -> tuple[trimesh.Trimesh, dict[str, int]]:
    """Merge duplicate vertices, drop zero-area (relative to `scale`) and duplicate faces."""
    m = trimesh.Trimesh(np.asarray(mesh.vertices), np.asarray(mesh.faces), process=False)
    n_v = len(m.vertices)
    m.merge_vertices()
    keep = m.area_faces > 1e-12 * scale**2
    m.update_faces(keep)
    n_before = len(m.faces)
    if n_before:
        m.update_faces(m.unique_faces())
    m.remove_unreferenced_vertices()
    stats = {
        "merged_vertices": n_v - len(m.vertices),
        "degenerate_faces": int((~keep).sum()),
        "duplicate_faces": n_before - len(m.faces),
    }
    return m, stats


def union_surface(
    parts: list[trimesh.Trimesh], max_edge: float, max_rounds: int = 5
) -> tuple[trimesh.Trimesh, Bodies, int]:
    """Outer surface of the union of `parts`: faces inside another closed part are removed.

    Faces crossing another closed part's surface are subdivided (up to `max_rounds` times, until
    their edges are under `max_edge`) first, so the kept surface follows the intersection closely.
    Returns (mesh, bodies with per-face body index, number of faces removed).
    """
    closed_idx = [i for i, p in enumerate(parts) if p.is_watertight and p.volume > 0]
    closed = [parts[i] for i in closed_idx]
    slot = {pi: k for k, pi in enumerate(closed_idx)}
    out_v, out_f, out_b = [], [], []
    n_removed = 0
    offset = 0
    for pi, part in enumerate(parts):
        own = slot.get(pi, -1)
        others = [c for k, c in enumerate(closed) if k != own]
        verts, faces = np.asarray(part.vertices), np.asarray(part.faces)
        if others:
            verts, faces, removed = _clean_part(verts, faces, others, max_edge, max_rounds)
            n_removed += removed
        if len(faces) == 0:
            continue
        out_v.append(verts)
        out_f.append(faces + offset)
        out_b.append(np.full(len(faces), own))
        offset += len(verts)
    if not out_f:  # everything inside everything (coincident copies): keep the input
        m = trimesh.util.concatenate(parts)
        return m, Bodies(closed, np.full(len(m.faces), -1)), 0
    m = trimesh.Trimesh(np.concatenate(out_v), np.concatenate(out_f), process=False)
    face_body = np.concatenate(out_b)
    # Merge coincident vertices (T-junction-free seams stay open, which the SDF tolerates).
    m.merge_vertices()
    return m, Bodies(closed, face_body), n_removed


def _clean_part(
    verts: np.ndarray, faces: np.ndarray, others: list[trimesh.Trimesh], max_edge: float, max_rounds: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """Remove the faces of one part that lie inside (or flat against) another closed part.

    Each face is probed at its centre and at its three corners, each pulled a little towards the
    centre and pushed a hair (`delta`) outward along the face normal: faces in contact with
    another part (coplanar, as in glued blocks) count as inside, and corners lying on another
    part's edges do not make the probe ambiguous. A face whose four probes are all inside one same
    part is removed (for convex parts the whole face is then inside). A face with some probes
    inside a part and some not straddles its surface and is subdivided while longer than
    `max_edge`; what still straddles after that is kept (a remnant narrower than `max_edge`
    inside is harmless, a hole would let the outside leak in).
    """
    delta = 1e-3 * float(np.ptp(verts, axis=0).max())
    counts = _probe(verts, faces, np.arange(len(faces)), others, delta)  # (F, n_others) in 0..4
    for _ in range(max_rounds):
        straddle = ((counts > 0) & (counts < 4)).any(axis=1) & ~(counts == 4).any(axis=1)
        if not straddle.any():
            break
        tri = verts[faces]
        longest = np.linalg.norm(tri - np.roll(tri, 1, axis=1), axis=2).max(axis=1)
        sel = np.flatnonzero(straddle & (longest > max_edge))
        if len(sel) == 0:
            break
        # trimesh's subdivide returns the untouched faces first (in order), then 4 children each.
        keep = np.ones(len(faces), dtype=bool)
        keep[sel] = False
        n_kept = int(keep.sum())
        verts, faces = trimesh.remesh.subdivide(verts, faces, face_index=sel)
        children = np.arange(n_kept, len(faces))
        counts = np.concatenate([counts[keep], _probe(verts, faces, children, others, delta)])
    inside = (counts == 4).any(axis=1)
    kept = faces[~inside]
    used = np.unique(kept)
    remap = np.full(len(verts), -1)
    remap[used] = np.arange(len(used))
    return verts[used], remap[kept], int(inside.sum())


def _probe(
    verts: np.ndarray, faces: np.ndarray, idx: np.ndarray, others: list[trimesh.Trimesh], delta: float
) -> np.ndarray:
    """Per face and other part, how many of the face's 4 probes (3 corners, centre) lie inside
    it: `(len(idx), len(others))` int8."""
    tri = verts[faces[idx]]
    center = tri.mean(axis=1, keepdims=True)
    fn = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    fn /= np.maximum(np.linalg.norm(fn, axis=1, keepdims=True), 1e-300)
    probes = (np.concatenate([tri + 1e-3 * (center - tri), center], axis=1) + delta * fn[:, None, :]).reshape(
        -1, 3
    )
    counts = np.zeros((len(idx), len(others)), dtype=np.int8)
    for j, body in enumerate(others):
        counts[:, j] = _inside(probes, body).reshape(-1, 4).sum(axis=1)
    return counts


def _inside(points: np.ndarray, body: trimesh.Trimesh) -> np.ndarray:
    lo, hi = body.bounds
    tol = 1e-9 * float(body.extents.max())
    sel = np.flatnonzero(np.all((points >= lo - tol) & (points <= hi + tol), axis=1))
    out = np.zeros(len(points), dtype=bool)
    if len(sel):
        out[sel] = winding_number(points[sel], body.triangles) > 0.5
    return out


def _inside_any(points: np.ndarray, bodies: list[trimesh.Trimesh]) -> np.ndarray:
    out = np.zeros(len(points), dtype=bool)
    for b in bodies:
        rest = np.flatnonzero(~out)
        if len(rest) == 0:
            break
        out[rest] = _inside(points[rest], b)
    return out


def normalize_mesh(
    mesh: trimesh.Trimesh, size: float | None, unit_scale: float = 1.0
) -> tuple[trimesh.Trimesh, dict[str, Any]]:
    """Centre the bounding box at the origin and scale the longest bbox edge to `size` metres, or,
    with `size` None, by `unit_scale` (metres per mesh unit: the mesh keeps its real size).

    Returns (new mesh, {"center": original bbox centre (3,), "scale": factor, "original_extents"});
    an original point p maps to ``(p - center) * scale``.
    """
    center = mesh.bounds.mean(axis=0)
    scale = float(unit_scale) if size is None else float(size) / float(mesh.extents.max())
    out = mesh.copy()
    out.apply_translation(-center)
    out.apply_scale(scale)
    return out, {"center": center.tolist(), "scale": scale, "original_extents": mesh.extents.tolist()}

"""Object ingest: read -> repair -> normalise -> points/normals -> SDF -> convex parts -> folder.

`ingest_mesh` writes one object folder atomically (built in a ``.tmp-*`` folder next to the
target, ``_SUCCESS`` written last, then renamed into place) and reuses a complete folder with the
same object id instead of recomputing. `ingest_many` runs a batch and reports failures per object.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import torch
import trimesh

from dexlite_core.config import ObjectConfig
from dexlite_core.objects.asset import (
    CONVEX_DIR,
    MESH,
    META,
    NORMALS,
    POINTS,
    SDF,
    SUCCESS,
    TMP_PREFIX,
    ObjectAsset,
    is_complete,
    load_object,
)
from dexlite_core.objects.decompose import decompose
from dexlite_core.objects.repair import Bodies, normalize_mesh, repair_mesh
from dexlite_core.objects.sdf import SDFGrid, compute_sdf
from dexlite_core.objects.source import MeshError, ObjectSource, as_source, read_source, slugify

FORMAT_VERSION = 1
TIMING = "timing.json"  # the ingest steps' wall times (not content: left out of digests)
SourceLike = ObjectSource | str | Path | trimesh.Trimesh
UNITS = {"m": 1.0, "cm": 0.01, "mm": 0.001}  # metres per unit (ObjectConfig.units)
REAL_SIZE_RANGE = (0.01, 0.50)  # plausible longest edge [m] of an object kept at its real size
# fields added after object ids were first published: hashed only when set, so existing ids stay
_LATER_FIELDS = {f.name: f.default for f in dataclasses.fields(ObjectConfig) if f.name in ("units", "scales")}


# --------------------------------------------------------------------------------------------
# Surface points


def sample_surface_points(
    mesh: trimesh.Trimesh,
    n: int,
    seed: int = 0,
    keep: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """`n` evenly spread surface points `(n, 3)` float32 with unit face normals `(n, 3)` float32.

    Area-weighted random oversampling (8 n, seeded) thinned by farthest-point sampling:
    deterministic for a fixed seed, no clumps, every part of the surface covered. `keep`, if
    given, maps candidate points `(M, 3)` and their faces `(M,)` to a bool mask `(M,)` of those
    allowed (drops points of overlapping bodies that lie inside the object).
    """
    rng = np.random.default_rng(seed)
    areas = mesh.area_faces
    m = max(8 * n, 16384)
    fi = rng.choice(len(areas), size=m, p=areas / areas.sum())
    r1 = np.sqrt(rng.random(m))
    r2 = rng.random(m)
    tri = mesh.triangles[fi]
    pts = (1 - r1)[:, None] * tri[:, 0] + (r1 * (1 - r2))[:, None] * tri[:, 1]
    pts += (r1 * r2)[:, None] * tri[:, 2]
    if keep is not None:
        mask = keep(pts, fi)
        if mask.sum() >= n:
            pts, fi = pts[mask], fi[mask]
    sel = farthest_point_sampling(pts, n)
    normals = mesh.face_normals[fi[sel]]
    return pts[sel].astype(np.float32), normals.astype(np.float32)


def farthest_point_sampling(points: np.ndarray, n: int, start: int = 0) -> np.ndarray:
    """Indices `(n,)` of a greedy farthest-point subset of points `(M, 3)` starting at `start`."""
    x, y, z = (np.ascontiguousarray(points[:, i]) for i in range(3))
    n = min(n, len(points))
    idx = np.empty(n, dtype=np.int64)
    d = np.full(len(points), np.inf)
    cur = start
    for i in range(n):
        idx[i] = cur
        d = np.minimum(d, (x - x[cur]) ** 2 + (y - y[cur]) ** 2 + (z - z[cur]) ** 2)
        cur = int(np.argmax(d))
    return idx


# --------------------------------------------------------------------------------------------
# Ingest


def object_id_for(name: str, source_bytes: bytes, cfg: ObjectConfig, unit_scale: float | None = None) -> str:
    """``<slug>-<sha256[:10]>`` of the source bytes followed by the JSON of `cfg` (and of `unit_scale`,
    a source's own metres per unit at real size, when given)."""
    d = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in _LATER_FIELDS or v != _LATER_FIELDS[k]}
    if unit_scale is not None:
        d["unit_scale"] = float(unit_scale)
    cfg_json = json.dumps(d, sort_keys=True).encode()
    return f"{slugify(name)}-{hashlib.sha256(source_bytes + cfg_json).hexdigest()[:10]}"


def effective_config(src: ObjectSource, cfg: ObjectConfig) -> ObjectConfig:
    """The config `src` is ingested with: its own `size` (bundled primitive, one of several scales)
    unless it is kept at real size with a scale of its own (a bundled mesh's URDF). Fields that do not
    apply to it go back to their defaults, so they neither change its object id nor mislead in meta."""
    if src.size is not None and not (cfg.size is None and src.unit_scale is not None):
        cfg = dataclasses.replace(cfg, size=float(src.size))
    units = cfg.units if cfg.size is None and src.unit_scale is None else "m"
    return dataclasses.replace(cfg, units=units, scales=())


def real_unit_scale(src: ObjectSource, cfg: ObjectConfig) -> float | None:
    """Metres per mesh unit of an object kept at real size (`cfg` effective, size None), else None."""
    if cfg.size is not None:
        return None
    return src.unit_scale if src.unit_scale is not None else UNITS[cfg.units]


def check_real_size(src: ObjectSource, raw: trimesh.Trimesh, unit_scale: float) -> None:
    """Refuse a mesh kept at real size that is no hand-sized object: most likely its file is in another
    unit than assumed (mm read as m), so the one-line MeshError says what the other units would give."""
    ext = float(np.ptp(np.asarray(raw.vertices), axis=0).max()) if len(raw.vertices) else 0.0
    lo, hi = REAL_SIZE_RANGE
    if not (np.isfinite(ext) and ext > 0) or lo <= ext * unit_scale <= hi:
        return  # in range, or degenerate (repair reports that)
    read_as = next((f"units {u}" for u, f in UNITS.items() if f == unit_scale and src.unit_scale is None),
                   f"scale {unit_scale:g} m per unit")
    alt = ", ".join(f"{ext * f:.4g} m if in {u}" for u, f in UNITS.items() if f != unit_scale)
    raise MeshError(src.label, f"longest bounding-box edge {ext * unit_scale:.4g} m at real size (read with "
                    f"{read_as}; {alt}), outside the plausible {lo:g}-{hi:g} m: normalise it with --size "
                    f"<metres> (objects.size) or give the file's units with --units mm|cm|m (objects.units)")


def ingest_mesh(source: SourceLike, out_root: str | Path, cfg: ObjectConfig | None = None) -> ObjectAsset:
    """Ingest one mesh into ``out_root/<object_id>/`` and return the loaded asset.

    `source`: an :class:`ObjectSource`, a mesh path (obj, stl, ply, glb/gltf, off) or a Trimesh.
    Reuses a complete folder with the same id (``asset.reused``). Raises :class:`MeshError`
    (naming the file and the reason) for unusable meshes.
    """
    cfg = cfg or ObjectConfig()
    src = as_source(source)
    cfg = effective_config(src, cfg)
    unit_scale = real_unit_scale(src, cfg)
    data, raw = read_source(src)
    if unit_scale is not None:
        check_real_size(src, raw, unit_scale)
    # a source's own unit scale is hashed; cfg.units already is (both set how big the object is)
    object_id = object_id_for(src.name, data, cfg, src.unit_scale if unit_scale is not None else None)
    root = Path(out_root)
    target = root / object_id
    if is_complete(target):
        return load_object(target, reused=True)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{object_id}-", dir=root))
    try:
        _build(src, data, raw, object_id, cfg, tmp, unit_scale)
        if target.exists() and not is_complete(target):
            shutil.rmtree(target)  # not ours (we only ever rename complete folders): stale junk
        try:
            os.rename(tmp, target)
        except OSError:
            if is_complete(target):  # another process finished the same object first
                return load_object(target, reused=True)
            raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return load_object(target)


def _build(
    src: ObjectSource,
    data: bytes,
    raw: trimesh.Trimesh,
    object_id: str,
    cfg: ObjectConfig,
    out: Path,
    unit_scale: float | None = None,
) -> None:
    """Run every ingest step on `raw` and write the object's files, ``_SUCCESS`` last, into `out`.
    `unit_scale`: metres per unit when the object keeps its real size (``cfg.size`` None)."""
    clock = _Stopwatch()
    mesh, bodies, norm, repair_info = _repaired_mesh(raw, src.label, cfg, unit_scale or 1.0)
    clock.lap("repair")

    sdf = compute_sdf(mesh, cfg.sdf_resolution, cfg.sdf_padding, seed=cfg.seed)
    values, lo, hi, _ = sdf
    grid = SDFGrid(values, lo, hi)
    clock.lap("sdf")

    points, normals = _object_points(mesh, bodies, grid, cfg, repair_info)
    clock.lap("points")

    warnings = _sdf_warnings(values)
    parts, convex_info = _convex_parts(mesh, bodies, cfg, repair_info)
    clock.lap("convex")

    meta = _object_meta(
        src,
        data,
        object_id,
        cfg,
        mesh,
        n_points=len(points),
        n_parts=len(parts),
        sdf=sdf,
        norm=norm,
        repair_info=repair_info,
        convex_info=convex_info,
        warnings=warnings,
    )
    _write_geometry(out, mesh, points, normals, values, parts)
    clock.lap("write")
    # wall times apart from meta.json: they differ run to run, and the DAG leaves files named
    # timing.json out of an artifact's content digest (two identical ingests digest the same)
    timing = dict(clock.timings)
    for part in ("sdf", "convex"):  # the steps' own clocks, also wall times
        for k in [k for k in meta[part] if k.startswith("seconds")]:
            timing[f"{part}.{k}"] = meta[part].pop(k)
    (out / TIMING).write_text(json.dumps(timing, indent=2))
    (out / META).write_text(json.dumps(meta, indent=2, default=_json_default))
    (out / SUCCESS).write_text(object_id + "\n")


class _Stopwatch:
    """Wall time of each ingest step, rounded to ms (the object's ``timing.json``)."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self._t = time.perf_counter()

    def lap(self, key: str) -> None:
        """Record the time since the previous lap (or the start) under `key`."""
        now = time.perf_counter()
        self.timings[key] = round(now - self._t, 3)
        self._t = now


def _seam_edge(raw: trimesh.Trimesh, cfg: ObjectConfig, unit_scale: float) -> float | None:
    """Longest edge for resolving seams of overlapping bodies: about one SDF voxel, in source units."""
    ext = float(np.ptp(np.asarray(raw.vertices), axis=0).max()) if len(raw.vertices) else 0.0
    if not (np.isfinite(ext) and ext > 0):
        return None
    size = cfg.size if cfg.size is not None else ext * unit_scale  # the object's longest edge [m]
    return (1.0 + 2.0 * cfg.sdf_padding / size) / max(cfg.sdf_resolution - 1, 1) * ext


def _repaired_mesh(
    raw: trimesh.Trimesh, label: str, cfg: ObjectConfig, unit_scale: float = 1.0
) -> tuple[trimesh.Trimesh, Bodies, dict[str, Any], dict[str, Any]]:
    """Repair `raw` and normalise it to ``cfg.size`` (size None: scale by `unit_scale`, real size);
    returns (mesh, bodies, normalisation, repair info)."""
    mesh, bodies, repair_info = repair_mesh(raw, label, max_edge=_seam_edge(raw, cfg, unit_scale))
    mesh, norm = normalize_mesh(mesh, cfg.size, unit_scale)
    bodies = bodies.transformed(np.asarray(norm["center"]), norm["scale"])
    return mesh, bodies, norm, repair_info


def _seam_filter(
    mesh: trimesh.Trimesh, bodies: Bodies, cfg: ObjectConfig
) -> Callable[[np.ndarray, np.ndarray], np.ndarray] | None:
    """For overlapping bodies, a `keep` mask dropping candidate points inside another body; else None."""
    face_body = bodies.face_body
    if face_body is None or len(bodies.closed) <= 1:
        return None
    delta = 1e-3 * float(mesh.extents.max())  # = 1e-3 cfg.size, also at real size (size None)

    def keep(p: np.ndarray, fi: np.ndarray) -> np.ndarray:
        return ~bodies.inside_other(p + delta * mesh.face_normals[fi], face_body[fi])

    return keep


def _flip_normals_to_sdf(grid: SDFGrid, points: np.ndarray, normals: np.ndarray) -> int:
    """Flip, in place, point normals opposing the SDF normal (open meshes); returns how many."""
    with torch.no_grad():
        _, n_sdf = grid.query(torch.from_numpy(points))
    flip = (n_sdf.numpy() * normals).sum(-1) < -0.5
    normals[flip] *= -1.0
    return int(flip.sum())


def _object_points(
    mesh: trimesh.Trimesh, bodies: Bodies, grid: SDFGrid, cfg: ObjectConfig, repair_info: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray]:
    """The object's surface points and outward normals `(n_points, 3)` float32 (notes flips in `repair_info`)."""
    keep = _seam_filter(mesh, bodies, cfg)
    points, normals = sample_surface_points(mesh, cfg.n_points, seed=cfg.seed, keep=keep)
    if not mesh.is_watertight:
        repair_info["point_normals_flipped"] = _flip_normals_to_sdf(grid, points, normals)
    return points, normals


def _sdf_warnings(values: np.ndarray) -> list[str]:
    """Warnings about the SDF grid for the meta (an object thinner than a voxel)."""
    warnings = []
    if not (values < 0).any():
        warnings.append("no SDF grid point inside the object: thinner than a voxel")
    return warnings


def _convex_parts(
    mesh: trimesh.Trimesh, bodies: Bodies, cfg: ObjectConfig, repair_info: dict[str, Any]
) -> tuple[list[trimesh.Trimesh], dict[str, Any]]:
    """Convex decomposition; a union of closed bodies only is decomposed body by body."""
    all_closed = len(bodies.closed) > 1 and len(bodies.closed) == repair_info["bodies"]
    return decompose(mesh, cfg, bodies=bodies.closed if all_closed else None)


def _object_meta(
    src: ObjectSource,
    data: bytes,
    object_id: str,
    cfg: ObjectConfig,
    mesh: trimesh.Trimesh,
    *,
    n_points: int,
    n_parts: int,
    sdf: tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]],
    norm: dict[str, Any],
    repair_info: dict[str, Any],
    convex_info: dict[str, Any],
    warnings: list[str],
) -> dict[str, Any]:
    """The object's ``meta.json`` content (docs/CONTRACTS.md "Object folder"); `sdf`: compute_sdf's result."""
    values, lo, hi, sdf_info = sdf
    volume, center_mass, vol_method = _mass_properties(mesh, values, lo, hi)
    return {
        "object_id": object_id,
        "name": src.name,
        "group": src.group or src.name,  # shared by the scales of one object (ObjectConfig.scales)
        "scale": cfg.size,  # the longest edge it was normalised to [m]; None: real size
        "source": src.describe(),
        "source_sha256": hashlib.sha256(data).hexdigest(),
        "config": dataclasses.asdict(cfg),
        "extents": mesh.extents.tolist(),
        "volume": volume,
        "volume_method": vol_method,
        "center_mass": center_mass,
        "watertight": bool(mesh.is_watertight),
        "n_parts": n_parts,
        "n_points": int(n_points),
        "n_vertices": int(len(mesh.vertices)),
        "n_faces": int(len(mesh.faces)),
        "sdf": {
            "resolution": int(cfg.sdf_resolution),
            "lo": [float(a) for a in lo],
            "hi": [float(a) for a in hi],
            **sdf_info,
        },
        "normalization": norm,
        "repair": repair_info,
        "convex": convex_info,
        "params": src.params,
        "warnings": warnings,
        "format_version": FORMAT_VERSION,
    }


def _write_geometry(
    out: Path,
    mesh: trimesh.Trimesh,
    points: np.ndarray,
    normals: np.ndarray,
    values: np.ndarray,
    parts: list[trimesh.Trimesh],
) -> None:
    """Write the mesh, point cloud, normals, SDF grid and convex parts into the folder `out`."""
    mesh.export(
        out / MESH, file_type="obj", include_normals=False, include_color=False, include_texture=False
    )
    np.save(out / POINTS, points)
    np.save(out / NORMALS, normals)
    np.save(out / SDF, values)
    (out / CONVEX_DIR).mkdir()
    for i, part in enumerate(parts):
        part.export(out / CONVEX_DIR / f"part_{i:03d}.obj", file_type="obj", include_normals=False)


def _mass_properties(
    mesh: trimesh.Trimesh, values: np.ndarray, lo: np.ndarray, hi: np.ndarray
) -> tuple[float, list[float], str]:
    """(volume m^3, centre of mass (3,), method): the mesh's when watertight, else the SDF's."""
    if mesh.is_watertight and mesh.volume > 0:
        return float(mesh.volume), [float(a) for a in mesh.center_mass], "mesh"
    r = values.shape
    step = (hi - lo) / (np.asarray(r) - 1)
    occ = np.clip(0.5 - values / float(step.mean()), 0.0, 1.0)  # soft voxel occupancy
    vol = float(occ.sum() * np.prod(step))
    ijk = np.indices(r).reshape(3, -1).T
    w = occ.ravel()
    com = (lo + (ijk * w[:, None]).sum(0) / max(w.sum(), 1e-12) * step).tolist()
    return vol, [float(a) for a in com], "sdf"


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


# --------------------------------------------------------------------------------------------
# Batches


@dataclass
class IngestResult:
    name: str
    object_id: str
    path: Path
    reused: bool
    seconds: float


@dataclass
class IngestFailure:
    name: str
    source: str
    reason: str


@dataclass
class IngestReport:
    """Outcome of :func:`ingest_many`: `ok` (in input order) and `failures` (file and reason)."""

    ok: list[IngestResult] = field(default_factory=list)
    failures: list[IngestFailure] = field(default_factory=list)

    @property
    def paths(self) -> list[Path]:
        return [r.path for r in self.ok]

    @property
    def object_ids(self) -> list[str]:
        return [r.object_id for r in self.ok]

    def summary(self) -> str:
        reused = sum(r.reused for r in self.ok)
        lines = [f"{len(self.ok)} objects ready ({reused} reused), {len(self.failures)} failed"]
        lines += [f"  FAILED {f.source}: {f.reason}" for f in self.failures]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": [{**dataclasses.asdict(r), "path": str(r.path)} for r in self.ok],
            "failures": [dataclasses.asdict(f) for f in self.failures],
        }


def _ingest_one(src: ObjectSource, out_root: str, cfg: ObjectConfig) -> IngestResult | IngestFailure:
    t0 = time.perf_counter()
    try:
        asset = ingest_mesh(src, out_root, cfg)
    except MeshError as exc:
        return IngestFailure(src.name, src.label, exc.reason)
    except Exception as exc:  # noqa: BLE001 - one object's crash must not stop the batch
        return IngestFailure(src.name, src.label, f"internal error ({type(exc).__name__}: {exc})")
    return IngestResult(
        src.name, asset.object_id, asset.path, asset.reused, round(time.perf_counter() - t0, 3)
    )


def ingest_many(
    sources: Iterable[SourceLike],
    out_root: str | Path,
    cfg: ObjectConfig | None = None,
    workers: int = 1,
) -> IngestReport:
    """Ingest a batch; a failing object is reported (file and reason) and the others go on.

    `workers > 1` runs objects in that many spawned processes (each object is independent; a
    worker that dies fails its objects, not the batch). Scripts using workers > 1 need the usual
    ``if __name__ == "__main__":`` guard (spawn start method).
    """
    cfg = cfg or ObjectConfig()
    srcs: Sequence[ObjectSource] = [as_source(s) for s in sources]
    report = IngestReport()
    if workers <= 1 or len(srcs) <= 1:
        outcomes = [_ingest_one(s, str(out_root), cfg) for s in srcs]
    else:
        outcomes = []
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(_ingest_one, s, str(out_root), cfg) for s in srcs]
            for s, fut in zip(srcs, futures, strict=True):
                try:
                    outcomes.append(fut.result())
                except Exception as exc:  # noqa: BLE001 - a worker died (native crash, OOM)
                    outcomes.append(
                        IngestFailure(s.name, s.label, f"worker crashed ({type(exc).__name__}: {exc})")
                    )
    for o in outcomes:
        (report.ok if isinstance(o, IngestResult) else report.failures).append(o)
    return report

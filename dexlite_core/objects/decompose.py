"""Convex decomposition for simulation collision: CoACD (default), V-HACD (pybullet) or one hull.

Shortcuts keep the bundled set fast: a mesh that is (nearly) convex gets its hull directly, and a
mesh made of several convex bodies (pybullet's VHACD'd assets, random_urdfs) keeps those bodies.
Any failure of the requested method falls back to the convex hull; the returned info says so.
"""

from __future__ import annotations

import os
import tempfile
import time
from typing import Any

import numpy as np
import trimesh

from dexlite_core.config import ObjectConfig

METHODS = ("coacd", "vhacd", "hull")


def convexity(mesh: trimesh.Trimesh) -> float:
    """volume / convex-hull volume in [0, 1] (1 = convex); 0 when the volume is undefined."""
    try:
        hull_vol = float(mesh.convex_hull.volume)
        vol = float(mesh.volume) if mesh.is_watertight else 0.0
    except Exception:  # noqa: BLE001 - qhull failures on degenerate input
        return 0.0
    if hull_vol <= 0 or vol <= 0:
        return 0.0
    return min(vol / hull_vol, 1.0)


def decompose(
    mesh: trimesh.Trimesh, cfg: ObjectConfig, bodies: list[trimesh.Trimesh] | None = None
) -> tuple[list[trimesh.Trimesh], dict[str, Any]]:
    """Convex parts (each a watertight convex Trimesh, same frame as `mesh`) and an info dict.

    `bodies`: the mesh's connected watertight bodies before any clean-up, if known (a union of
    convex bodies is its own decomposition). info: method requested / used, n_parts, seconds,
    convexity, and `fallback` (the reason) when the hull replaced a failed method.
    """
    t0 = time.perf_counter()
    method = cfg.convex_method.lower()
    info: dict[str, Any] = {"requested": method}
    if method not in METHODS:
        raise ValueError(f"unknown convex_method {cfg.convex_method!r} (choose from {', '.join(METHODS)})")
    ratio = convexity(mesh)
    info["convexity"] = round(ratio, 4)
    parts: list[trimesh.Trimesh] | None = None
    used = method
    if method == "hull" or ratio >= cfg.convex_skip_ratio:
        used = "hull" if method == "hull" else "hull (convex input)"
    elif (
        bodies is not None
        and 1 < len(bodies) <= cfg.max_convex_parts
        and all(convexity(b) >= cfg.convex_skip_ratio for b in bodies)
    ):
        parts = [b.convex_hull for b in bodies]
        used = "bodies (union of convex bodies)"
    else:
        try:
            parts = _coacd(mesh, cfg) if method == "coacd" else _vhacd(mesh, cfg)
            if not parts:
                raise RuntimeError("no parts returned")
        except Exception as exc:  # noqa: BLE001 - native decomposers fail in many ways
            info["fallback"] = f"{method} failed ({type(exc).__name__}: {exc}); used the convex hull"
            parts = None
            used = "hull (fallback)"
    if parts is None:
        parts = [mesh.convex_hull]
    parts = [_clean_part(p) for p in parts]
    parts = [p for p in parts if p is not None]
    if not parts:
        parts = [mesh.convex_hull]
        info["fallback"] = "all parts degenerate; used the convex hull"
        used = "hull (fallback)"
    info.update(method=used, n_parts=len(parts), seconds=round(time.perf_counter() - t0, 3))
    return parts, info


def _clean_part(part: trimesh.Trimesh) -> trimesh.Trimesh | None:
    """Convex hull of a part (outward, watertight); None when it has no volume."""
    try:
        hull = trimesh.Trimesh(
            np.asarray(part.vertices, dtype=np.float64), np.asarray(part.faces)
        ).convex_hull
    except Exception:  # noqa: BLE001 - qhull on flat parts
        return None
    if len(hull.faces) < 4 or hull.volume <= 1e-15:
        return None
    return hull


def _coacd(mesh: trimesh.Trimesh, cfg: ObjectConfig) -> list[trimesh.Trimesh]:
    """CoACD; preprocess "auto" runs without CoACD's (slow) manifold pre-pass first and retries
    with it if that fails."""
    import coacd

    coacd.set_log_level("error")
    modes = ["off", "on"] if cfg.coacd_preprocess == "auto" else [cfg.coacd_preprocess]
    cm = coacd.Mesh(np.asarray(mesh.vertices, dtype=np.float64), np.asarray(mesh.faces, dtype=np.int32))
    error: Exception | None = None
    for mode in modes:
        try:
            result = coacd.run_coacd(
                cm,
                threshold=cfg.convex_threshold,
                max_convex_hull=cfg.max_convex_parts,
                preprocess_mode=mode,
                preprocess_resolution=30,
                resolution=cfg.coacd_resolution,
                mcts_iterations=cfg.coacd_mcts_iterations,
                mcts_max_depth=cfg.coacd_mcts_max_depth,
                seed=cfg.seed,
            )
        except Exception as exc:  # noqa: BLE001
            error = exc
            continue
        parts = [trimesh.Trimesh(np.asarray(v), np.asarray(f), process=True) for v, f in result]
        parts = [p for p in parts if len(p.faces) >= 4]
        if parts:
            return parts
        error = RuntimeError(f"no parts (preprocess {mode})")
    assert error is not None
    raise error


def _vhacd(mesh: trimesh.Trimesh, cfg: ObjectConfig) -> list[trimesh.Trimesh]:
    import pybullet

    with tempfile.TemporaryDirectory(prefix="dexlite-vhacd-") as tmp:
        src = os.path.join(tmp, "in.obj")
        out = os.path.join(tmp, "out.obj")
        log = os.path.join(tmp, "log.txt")
        mesh.export(src, file_type="obj", include_normals=False, include_texture=False)
        pybullet.vhacd(src, out, log, maxNumVerticesPerCH=64, resolution=100_000)
        if not os.path.exists(out):
            raise RuntimeError("pybullet.vhacd wrote no output")
        loaded = trimesh.load(out, force="scene", process=False)
        geoms = [g for g in loaded.geometry.values() if isinstance(g, trimesh.Trimesh)]
        if len(geoms) <= 1:  # parts in one object: split by connectivity
            geoms = trimesh.util.concatenate(geoms).split(only_watertight=False) if geoms else []
    geoms = sorted(geoms, key=lambda g: -float(g.convex_hull.volume))
    return list(geoms[: cfg.max_convex_parts])

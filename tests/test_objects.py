"""Object stage: SDF accuracy and sign, query gradients, normalisation, storage, broken meshes."""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import pytest
import torch
import trimesh

from dexlite_core.config import ObjectConfig
from dexlite_core.objects import (
    MeshError,
    ObjectLoadError,
    ObjectSource,
    SDFGrid,
    bundled_sources,
    compute_sdf,
    ingest_many,
    ingest_mesh,
    list_objects,
    load_object,
    tiny_sources,
)
from dexlite_core.objects import ingest as ingest_mod
from dexlite_core.objects.asset import SUCCESS

FAST = ObjectConfig(sdf_resolution=32, convex_method="hull", n_points=512)


def box_sdf(p: np.ndarray, extents: np.ndarray) -> np.ndarray:
    q = np.abs(p) - extents / 2
    return np.linalg.norm(np.maximum(q, 0), axis=-1) + np.minimum(q.max(-1), 0)


def grid_of(mesh: trimesh.Trimesh, res: int = 48, pad: float = 0.02) -> tuple[SDFGrid, float]:
    values, lo, hi, _ = compute_sdf(mesh, res, pad)
    return SDFGrid(values, lo, hi), float(((hi - lo) / (res - 1)).max())


def random_in(grid: SDFGrid, n: int, seed: int = 0, margin: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    lo, hi = np.asarray(grid.lo) + margin, np.asarray(grid.hi) - margin
    return rng.uniform(lo, hi, (n, 3))


# ---------------------------------------------------------------------------------------- SDF


def test_box_sdf_matches_analytic_within_a_voxel():
    ext = np.array([0.10, 0.06, 0.04])
    grid, h = grid_of(trimesh.creation.box(extents=ext))
    p = random_in(grid, 5000)
    d, _ = grid.query(torch.from_numpy(p))
    exact = box_sdf(p, ext)
    err = np.abs(d.numpy() - exact)
    assert err.max() < h, err.max() / h
    assert err.mean() < 0.1 * h
    far = np.abs(exact) > 0.5 * h  # trilinear blending may flip the sign only right at the surface
    assert np.all((d.numpy()[far] < 0) == (exact[far] < 0))
    assert (exact < 0).sum() > 300 and (exact > 0).sum() > 300  # both sides were tested


def test_sphere_sdf_matches_analytic_within_a_voxel():
    r = 0.05
    grid, h = grid_of(trimesh.creation.icosphere(subdivisions=4, radius=r))
    p = random_in(grid, 5000, seed=1)
    d, _ = grid.query(torch.from_numpy(p))
    exact = np.linalg.norm(p, axis=1) - r
    assert np.abs(d.numpy() - exact).max() < h
    far = np.abs(exact) > 0.5 * h
    assert np.all((d.numpy()[far] < 0) == (exact[far] < 0))


def test_sign_is_right_for_a_box_with_a_missing_face():
    ext = np.array([0.08, 0.08, 0.08])
    box = trimesh.creation.box(extents=ext)
    top = np.flatnonzero(box.face_normals[:, 2] > 0.9)
    assert len(top) == 2
    open_box = trimesh.Trimesh(box.vertices, np.delete(box.faces, top, axis=0), process=False)
    assert not open_box.is_watertight
    grid, h = grid_of(open_box)
    p = random_in(grid, 6000, seed=2)
    exact = box_sdf(p, ext)
    d, _ = grid.query(torch.from_numpy(p))
    # Deep inside (winding number > 1/2: below the opening's solid-angle influence) -> negative.
    deep = (exact < -2 * h) & (p[:, 2] < 0.0)
    outside = (exact > 2 * h) & (p[:, 2] < 0.04)
    assert deep.sum() > 50 and outside.sum() > 200
    assert np.all(d.numpy()[deep] < 0)
    assert np.all(d.numpy()[outside] > 0)


def test_sign_is_right_for_a_sphere_with_a_hole_through_ingest(tmp_path):
    r = 0.5
    s = trimesh.creation.icosphere(subdivisions=3, radius=r)
    hole = np.flatnonzero(s.triangles_center[:, 2] > 0.45)  # a cap: too big for fill_holes
    assert len(hole) > 8
    holed = trimesh.Trimesh(s.vertices, np.delete(s.faces, hole, axis=0), process=False)
    f = tmp_path / "holed.ply"
    holed.export(f)
    a = ingest_mesh(f, tmp_path / "objs", FAST)
    assert not a.meta["watertight"]
    radius = FAST.size / 2  # normalised: extents are (1, 1, ~0.95) * scale
    scale = a.meta["normalization"]["scale"]
    center = np.asarray(a.meta["normalization"]["center"])
    rng = np.random.default_rng(3)
    dirs = rng.normal(size=(2000, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    dirs = dirs[dirs[:, 2] < 0.5]  # away from the hole
    sphere_c = -center * scale  # the sphere's centre in the object frame
    inside = sphere_c + dirs * radius * rng.uniform(0.0, 0.7, (len(dirs), 1))
    outside = sphere_c + dirs * radius * rng.uniform(1.3, 1.6, (len(dirs), 1))
    assert np.all(a.sdf.query(torch.from_numpy(inside))[0].numpy() < 0)
    assert np.all(a.sdf.query(torch.from_numpy(outside))[0].numpy() > 0)


def test_query_gradient_matches_finite_differences_and_points_outward():
    r = 0.04
    grid, h = grid_of(trimesh.creation.icosphere(subdivisions=4, radius=r))
    grid = grid.to(torch.float64)
    rng = np.random.default_rng(4)
    dirs = rng.normal(size=(300, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    p = dirs * rng.uniform(0.5 * r, 1.6 * r, (300, 1))
    x = torch.tensor(p, dtype=torch.float64, requires_grad=True)
    d, n = grid.query(x)
    (g,) = torch.autograd.grad(d.sum(), x)
    eps = 1e-7
    fd = torch.zeros_like(g)
    with torch.no_grad():
        for k in range(3):
            e = torch.zeros(3, dtype=torch.float64)
            e[k] = eps
            fd[:, k] = (grid.query(x + e)[0] - grid.query(x - e)[0]) / (2 * eps)
    # FD of the trilinear interpolant equals its derivative except across a cell face.
    close = (g - fd).norm(dim=1) < 1e-4
    assert close.float().mean() > 0.97
    radial = torch.from_numpy(dirs)
    assert ((g * radial).sum(1) > 0.9).float().mean() > 0.97  # gradient points outward
    assert torch.allclose(n.norm(dim=1), torch.ones(300, dtype=torch.float64), atol=1e-6)
    assert ((n * radial).sum(1) > 0.95).all()  # normal = normalised smooth gradient
    # Extrapolation outside the grid: large positive distance, gradient pointing away.
    far = torch.tensor([[1.0, 0.2, -0.3], [-0.5, 0.0, 0.0]], dtype=torch.float64, requires_grad=True)
    df, nf = grid.query(far)
    (gf,) = torch.autograd.grad(df.sum(), far)
    exact = far.detach().norm(dim=1) - r
    assert torch.all(df > 0.8 * exact) and torch.all(df < 1.5 * exact)
    assert torch.all((gf * far.detach()).sum(1) > 0) and torch.all((nf * far.detach()).sum(1) > 0)


def test_query_dtypes_shapes_and_distance():
    grid, _ = grid_of(trimesh.creation.box(extents=(0.1, 0.05, 0.05)), res=24)
    x = torch.from_numpy(random_in(grid, 600, seed=5)).reshape(20, 30, 3)
    d64, n64 = grid.query(x)
    d32, n32 = grid.query(x.float())
    assert d64.shape == (20, 30) and n64.shape == (20, 30, 3)
    assert d64.dtype == torch.float64 and d32.dtype == torch.float32
    assert torch.allclose(d64.float(), d32, atol=1e-5)
    assert torch.allclose(grid.distance(x), d64)
    values, lo, hi, _ = compute_sdf(trimesh.creation.box(extents=(0.1, 0.05, 0.05)), 24, 0.02)
    assert np.allclose(grid.values.numpy(), values)
    assert grid.to("cpu").query(x)[0].shape == (20, 30)


# ------------------------------------------------------------------------------------- ingest


def test_normals_unit_and_outward_on_a_sphere(tmp_path):
    src = ObjectSource("ball", generator=lambda: trimesh.creation.icosphere(3, radius=2.0))
    a = ingest_mesh(src, tmp_path, FAST)
    assert a.points.shape == (512, 3) and a.points.dtype == np.float32 == a.normals.dtype
    p, n = a.points.astype(np.float64), a.normals.astype(np.float64)
    assert np.allclose(np.linalg.norm(n, axis=1), 1.0, atol=1e-5)
    radial = p / np.linalg.norm(p, axis=1, keepdims=True)
    assert (np.sum(n * radial, axis=1) > 0.95).all()
    assert np.allclose(np.linalg.norm(p, axis=1), FAST.size / 2, atol=2e-3)
    d, _ = a.sdf.query(torch.from_numpy(p))  # points lie on the SDF's zero level
    assert d.abs().max() < 0.5 * (a.sdf.hi[0] - a.sdf.lo[0]) / 31


def test_normalisation_longest_edge_and_centre(tmp_path):
    box = trimesh.creation.box(extents=(3.0, 2.0, 1.0))
    box.apply_translation((5.0, -7.0, 2.0))
    f = tmp_path / "box.stl"
    box.export(f)
    cfg = dataclasses.replace(FAST, size=0.12)
    a = ingest_mesh(f, tmp_path / "objs", cfg)
    assert np.allclose(a.mesh.extents, (0.12, 0.08, 0.04), atol=1e-6)
    assert np.allclose(a.mesh.bounds.mean(axis=0), 0.0, atol=1e-7)
    assert np.allclose(a.meta["extents"], (0.12, 0.08, 0.04), atol=1e-6)
    assert np.all(np.abs(a.points) <= np.array([0.06, 0.04, 0.02]) + 1e-6)
    assert a.meta["watertight"] and a.meta["volume"] == pytest.approx(0.12 * 0.08 * 0.04, rel=1e-6)
    assert a.meta["sdf"]["lo"] == pytest.approx([-0.06 - cfg.sdf_padding, -0.04 - 0.04, -0.02 - 0.04])
    parts = a.convex_parts
    assert len(parts) == a.meta["n_parts"] == 1 and parts[0].is_watertight


def test_ingest_twice_reuses_the_folder(tmp_path, monkeypatch):
    f = tmp_path / "cyl.obj"
    trimesh.creation.cylinder(radius=0.3, height=1.0).export(f)
    a = ingest_mesh(f, tmp_path / "objs", FAST)
    assert not a.reused
    stamp = {p.name: p.stat().st_mtime_ns for p in a.path.iterdir()}

    def boom(*args, **kwargs):
        raise AssertionError("recomputed an object that was already there")

    monkeypatch.setattr(ingest_mod, "compute_sdf", boom)
    b = ingest_mesh(f, tmp_path / "objs", FAST)
    assert b.reused and b.path == a.path and b.object_id == a.object_id
    assert {p.name: p.stat().st_mtime_ns for p in b.path.iterdir()} == stamp
    assert np.array_equal(a.points, b.points)
    assert list_objects(tmp_path / "objs") == [a.path]
    # A different config is a different object.
    monkeypatch.undo()
    c = ingest_mesh(f, tmp_path / "objs", dataclasses.replace(FAST, size=0.05))
    assert c.object_id != a.object_id and c.object_id.startswith("cyl-")
    assert len(list_objects(tmp_path / "objs")) == 2


def test_points_are_deterministic_for_a_seed(tmp_path):
    src = tiny_sources()[0]
    a = ingest_mesh(src, tmp_path / "a", FAST)
    b = ingest_mesh(src, tmp_path / "b", FAST)
    c = ingest_mesh(src, tmp_path / "c", dataclasses.replace(FAST, seed=1))
    assert a.object_id == b.object_id != c.object_id
    assert np.array_equal(a.points, b.points) and np.array_equal(a.normals, b.normals)
    assert not np.array_equal(a.points, c.points)
    assert np.array_equal(np.load(a.path / "sdf.npy"), np.load(b.path / "sdf.npy"))


def _broken_files(tmp_path):
    d = tmp_path / "broken"
    d.mkdir()
    (d / "empty.obj").write_bytes(b"")
    (d / "nan.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 nan 0\nv 0 0 1\nf 1 2 3\nf 1 2 4\nf 1 3 4\nf 2 3 4\n")
    (d / "flat.obj").write_text("v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nf 1 2 3\nf 1 3 4\n")
    (d / "tilted_flat.obj").write_text("v 0 0 0\nv 1 1 1\nv 1 0 0\nv 2 1 1\nf 1 2 3\nf 2 4 3\n")
    (d / "garbage.stl").write_bytes(os.urandom(64) + b"\x00" * 16)
    (d / "garbage.ply").write_bytes(b"this is not a mesh at all\n" * 3)
    (d / "notes.txt").write_text("v 0 0 0\n")
    return d, [
        "empty.obj",
        "nan.obj",
        "flat.obj",
        "tilted_flat.obj",
        "garbage.stl",
        "garbage.ply",
        "notes.txt",
    ]


def test_broken_meshes_raise_mesh_error_naming_the_file(tmp_path):
    d, names = _broken_files(tmp_path)
    for name in [*names, "missing.obj"]:
        with pytest.raises(MeshError) as info:
            ingest_mesh(d / name, tmp_path / "objs", FAST)
        assert str(d / name) in str(info.value), str(info.value)
        assert isinstance(info.value, ValueError) and info.value.reason
    assert list_objects(tmp_path / "objs") == []
    assert not any((tmp_path / "objs").glob(".tmp-*")) if (tmp_path / "objs").exists() else True


def test_ingest_many_continues_past_broken_objects(tmp_path):
    d, names = _broken_files(tmp_path)
    good = tiny_sources()[:2]
    sources = [good[0], d / "nan.obj", d / "missing.obj", good[1]]
    report = ingest_many(sources, tmp_path / "objs", FAST)
    assert [r.name for r in report.ok] == [good[0].name, good[1].name]
    assert [f.source for f in report.failures] == [str(d / "nan.obj"), str(d / "missing.obj")]
    assert "NaN" in report.failures[0].reason and "not found" in report.failures[1].reason
    assert sorted(report.paths) == list_objects(tmp_path / "objs")
    assert "2 failed" in report.summary()
    json.dumps(report.to_dict())


def test_leftover_temp_dir_and_incomplete_folders_are_not_objects(tmp_path):
    root = tmp_path / "objs"
    a = ingest_mesh(tiny_sources()[0], root, FAST)
    # A crash mid-write leaves a build folder (no _SUCCESS); a half-copied folder has no _SUCCESS.
    crashed = root / f".tmp-{a.object_id}-x1y2"
    crashed.mkdir()
    (crashed / "meta.json").write_text(json.dumps(a.meta))
    np.save(crashed / "points.npy", a.points)
    partial = root / "partial-0123456789"
    partial.mkdir()
    for f in ("meta.json", "points.npy", "normals.npy", "mesh.obj"):
        (partial / f).write_bytes((a.path / f).read_bytes())
    assert list_objects(root) == [a.path]
    for bad in (crashed, partial, root / "nope"):
        with pytest.raises(ObjectLoadError) as info:
            load_object(bad)
        assert str(bad) in str(info.value)
    # A target without _SUCCESS (junk) is rebuilt, not trusted.
    (a.path / SUCCESS).unlink()
    with pytest.raises(ObjectLoadError, match="incomplete"):
        load_object(a.path)
    b = ingest_mesh(tiny_sources()[0], root, FAST)
    assert not b.reused and (b.path / SUCCESS).is_file()


def test_load_object_reports_corrupt_files(tmp_path):
    a = ingest_mesh(tiny_sources()[0], tmp_path, FAST)
    (a.path / "sdf.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(ObjectLoadError, match="sdf.npy"):
        load_object(a.path)
    (a.path / "meta.json").write_text("{not json")
    with pytest.raises(ObjectLoadError, match="meta.json"):
        load_object(a.path)


@pytest.mark.parametrize("ext", ["ply", "off", "glb"])
def test_other_formats_and_scenes(tmp_path, ext):
    b1 = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    b2 = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    b2.apply_translation((3.0, 0.0, 0.0))
    obj = trimesh.Scene([b1, b2]) if ext == "glb" else b1
    f = tmp_path / f"shape.{ext}"
    obj.export(f)
    a = ingest_mesh(f, tmp_path / "objs", FAST)
    expect = (0.1, 0.025, 0.025) if ext == "glb" else (0.1, 0.1, 0.1)
    assert np.allclose(a.mesh.extents, expect, atol=1e-6)
    if ext == "glb":  # both boxes made it in: points on both
        assert (a.points[:, 0] < -0.02).sum() > 100 and (a.points[:, 0] > 0.02).sum() > 100


def test_overlapping_bodies_become_their_union(tmp_path):
    a_box = trimesh.creation.box(extents=(1.0, 0.5, 0.5))
    b_box = trimesh.creation.box(extents=(0.5, 1.0, 0.5))
    b_box.apply_translation((0.25, 0.25, 0.0))  # a T: overlap x in [0, 0.5], y in [-0.25, 0.25]
    soup = trimesh.util.concatenate([a_box, b_box])
    cfg = dataclasses.replace(FAST, convex_method="coacd")  # a union of convex bodies skips CoACD
    a = ingest_mesh(ObjectSource("soup", generator=lambda: soup), tmp_path, cfg)
    assert a.meta["repair"]["bodies"] == 2 and a.meta["repair"]["interior_faces_removed"] > 0
    s = a.meta["normalization"]["scale"]
    c = np.asarray(a.meta["normalization"]["center"])
    assert np.allclose(c, (0.0, 0.25, 0.0)) and s == pytest.approx(0.1)

    def union_sdf(p):  # exact outside; an upper bound inside
        return (
            np.minimum(
                box_sdf(p / s + c, np.array([1.0, 0.5, 0.5])),
                box_sdf(p / s + c - np.array([0.25, 0.25, 0.0]), np.array([0.5, 1.0, 0.5])),
            )
            * s
        )

    h = max((np.asarray(a.sdf.hi) - np.asarray(a.sdf.lo)) / 31)
    p = np.random.default_rng(6).uniform(a.sdf.lo, a.sdf.hi, (4000, 3))
    d = a.sdf.query(torch.from_numpy(p))[0].numpy()
    ref = union_sdf(p)
    out = ref > 0
    assert np.abs(d[out] - ref[out]).max() < h
    inside = ref < -0.5 * h
    assert inside.sum() > 100 and np.all(d[inside] < 0) and np.all(d[inside] < ref[inside] + h)
    # The removed interior walls are gone: the SDF in the overlap is deep, not ~0.
    core = torch.tensor([[0.25, 0.0, 0.0]], dtype=torch.float64) * s - torch.from_numpy(c * s)
    assert a.sdf.query(core)[0].item() < -0.02
    # No point of the cloud on an interior wall: every point lies on the union's surface.
    assert np.abs(union_sdf(a.points.astype(np.float64))).max() < 1e-4
    assert a.meta["n_parts"] == 2 and a.meta["convex"]["method"].startswith("bodies")


def test_convex_decomposition_falls_back_to_the_hull(tmp_path, monkeypatch):
    from dexlite_core.objects import decompose

    def broken(*args, **kwargs):
        raise RuntimeError("simulated CoACD crash")

    monkeypatch.setattr(decompose, "_coacd", broken)
    cfg = dataclasses.replace(FAST, convex_method="coacd")
    torus = ObjectSource("ring", generator=lambda: trimesh.creation.torus(1.0, 0.3))
    a = ingest_mesh(torus, tmp_path, cfg)
    assert a.meta["n_parts"] == 1 and "simulated CoACD crash" in a.meta["convex"]["fallback"]
    assert a.meta["convex"]["method"] == "hull (fallback)"
    assert a.convex_parts[0].is_convex


def test_bundled_sources_are_offline_and_deterministic():
    srcs = bundled_sources(n_random=3)
    names = [s.name for s in srcs]
    assert len(names) == len(set(names))
    kinds = {s.params.get("kind") for s in srcs if s.generator is not None}
    assert {"box", "cylinder", "sphere", "capsule", "ellipsoid", "torus"} <= kinds
    real = [s for s in srcs if s.path is not None]
    assert {"bunny", "duck", "random-000", "random-002"} <= {s.name for s in real}
    assert all(s.path.is_file() for s in real)
    assert len(bundled_sources(include_primitives=False, include_real=False)) == 0
    box = next(s for s in srcs if s.params.get("kind") == "box")
    m1, m2 = box.generator(), box.generator()
    assert np.array_equal(m1.vertices, m2.vertices) and m1.is_watertight
    tiny = tiny_sources()
    assert 3 <= len(tiny) <= 4 and any(s.path is not None for s in tiny)


# --------------------------------------------------------------------------- real size, several sizes


def _box_file(path, extents, offset=(0.3, -0.2, 0.1)):
    box = trimesh.creation.box(extents=extents)
    box.apply_translation(offset)  # off-centre: real size still re-centres the bbox
    box.export(path)
    return path


@pytest.mark.parametrize("extents", [(0.045, 0.03, 0.02), (0.16, 0.05, 0.04)])
def test_real_size_keeps_a_metric_mesh_size(tmp_path, extents):
    f = _box_file(tmp_path / "box.obj", extents)
    a = ingest_mesh(f, tmp_path / "objs", dataclasses.replace(FAST, size=None))
    assert np.allclose(a.mesh.extents, extents, atol=1e-4)
    assert np.allclose(a.meta["extents"], extents, atol=1e-4)
    assert np.allclose(a.mesh.bounds.mean(axis=0), 0.0, atol=1e-7)
    assert a.meta["scale"] is None and a.meta["group"] == a.group == "box"
    assert np.all(np.abs(a.points) <= np.asarray(extents) / 2 + 1e-5)


def test_real_size_units_mm_scales_to_metres(tmp_path):
    f = _box_file(tmp_path / "box-mm.obj", (45.0, 30.0, 20.0), offset=(100.0, 0.0, 0.0))
    cfg = dataclasses.replace(FAST, size=None, units="mm")
    a = ingest_mesh(f, tmp_path / "objs", cfg)
    assert np.allclose(a.mesh.extents, (0.045, 0.03, 0.02), atol=1e-4)
    assert a.meta["config"]["units"] == "mm"
    # the same file read in metres is another object (and here an implausible one)
    with pytest.raises(MeshError):
        ingest_mesh(f, tmp_path / "objs", dataclasses.replace(cfg, units="m"))


@pytest.mark.parametrize(("extents", "measured"), [((0.0005, 0.0003, 0.0002), "0.0005 m"), ((2.0, 1.0, 0.5), "2 m")])
def test_implausible_real_size_is_a_one_line_error_naming_the_file(tmp_path, extents, measured):
    f = _box_file(tmp_path / "odd.obj", extents, offset=(0.0, 0.0, 0.0))
    with pytest.raises(ValueError) as e:
        ingest_mesh(f, tmp_path / "objs", dataclasses.replace(FAST, size=None))
    msg = str(e.value)
    assert "\n" not in msg and str(f) in msg and measured in msg, msg
    assert "--units" in msg and "--size" in msg, msg
    assert "if in mm" in msg and "if in cm" in msg, msg  # what the file would be in other units
    assert not list((tmp_path / "objs").glob("*/_SUCCESS"))
    # a size does not need to be plausible: it is normalised
    assert ingest_mesh(f, tmp_path / "objs", FAST).mesh.extents.max() == pytest.approx(0.10)


def test_cli_ingest_of_an_implausible_real_size_is_one_stderr_line(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    f = _box_file(tmp_path / "huge.obj", (2.0, 1.0, 0.5))

    def ingest(*args):
        cmd = [sys.executable, "-m", "flows.cli", "ingest", str(f), "--out", str(tmp_path / "objs"), *args]
        return subprocess.run(cmd, capture_output=True, text=True, cwd=root, timeout=120)

    p = ingest("--size", "real")
    lines = p.stderr.strip().splitlines()
    assert p.returncode != 0 and len(lines) == 1 and "Traceback" not in p.stderr, p.stderr
    assert "huge.obj" in lines[0] and "--units" in lines[0] and "--size" in lines[0], lines[0]
    p = ingest("--units", "km")
    lines = p.stderr.strip().splitlines()
    assert p.returncode != 0 and len(lines) == 1 and "--units" in lines[0] and "Traceback" not in p.stderr


def test_scales_give_one_object_per_size_with_a_shared_group(tmp_path):
    from dexlite_core.config import SelectConfig
    from dexlite_core.objects.select import ingest_rows, select_sources

    f = _box_file(tmp_path / "box.obj", (0.045, 0.03, 0.02))
    cfg = dataclasses.replace(FAST, scales=(0.06, 0.12))
    sources = select_sources(SelectConfig(bundled=(), meshes=(str(f),)), cfg)
    assert list(sources) == [f"mesh:{f}@0.06", f"mesh:{f}@0.12"]
    rows = ingest_rows(list(sources.values()), ingest_many(sources.values(), tmp_path / "objs", cfg))
    assert all(r["ok"] for r in rows), rows
    a, b = (load_object(r["path"]) for r in rows)
    assert a.object_id != b.object_id and a.group == b.group == "box"
    assert (a.meta["group"], a.meta["scale"], b.meta["scale"]) == ("box", 0.06, 0.12)
    assert a.mesh.extents.max() == pytest.approx(0.06) and b.mesh.extents.max() == pytest.approx(0.12)
    assert max(b.meta["extents"]) == pytest.approx(0.12)
    bundled = select_sources(SelectConfig(bundled=("duck", "box-cube-6cm")), cfg)
    assert list(bundled) == ["bundled:box-cube-6cm@0.06", "bundled:box-cube-6cm@0.12",
                             "bundled:duck@0.06", "bundled:duck@0.12"]
    assert {s.size for s in bundled.values()} == {0.06, 0.12}  # a scale wins over the bundled size
    assert list(select_sources(SelectConfig(bundled=("duck",)), FAST)) == ["bundled:duck"]


def test_bundled_meshes_at_real_size_use_their_urdf_scale():
    from dexlite_core.objects.ingest import effective_config, real_unit_scale

    by_name = {s.name: s for s in bundled_sources(n_random=1)}
    assert by_name["duck"].unit_scale == 0.05 and by_name["mug"].unit_scale == 1.0
    assert by_name["random-000"].unit_scale == 0.015 and by_name["bunny"].unit_scale is None
    real = dataclasses.replace(FAST, size=None)
    for name, size, scale in [("duck", None, 0.05), ("bunny", 0.10, None), ("box-cube-6cm", 0.06, None)]:
        cfg = effective_config(by_name[name], real)
        assert (cfg.size, real_unit_scale(by_name[name], cfg)) == (size, scale), name
    assert effective_config(by_name["duck"], FAST).size == 0.10  # a number: the bundled size as before


def test_object_ids_of_the_default_config_are_unchanged():
    """New ObjectConfig fields at their defaults must not change published object ids."""
    obj = b"v 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 1\nf 1 3 2\nf 1 2 4\nf 1 4 3\nf 2 3 4\n"
    assert ingest_mod.object_id_for("tetra", obj, ObjectConfig()) == "tetra-b69f791f4d"
    assert ingest_mod.object_id_for("tetra", obj, ObjectConfig(size=0.08)) == "tetra-282576590b"
    assert ingest_mod.object_id_for("tetra", obj, ObjectConfig(size=None)) != "tetra-b69f791f4d"
    with pytest.raises(ValueError, match="objects.size"):
        ObjectConfig(scales=(0.1, 0.0))


def test_two_ingests_of_one_mesh_differ_only_in_timing_json(tmp_path):
    """Wall times live in timing.json (which the DAG's digests leave out), so an object re-ingested
    elsewhere has the same content: its downstream artifacts keep their keys."""
    import hashlib

    from dag.keys import is_volatile

    f = tmp_path / "box.obj"
    trimesh.creation.box(extents=(0.08, 0.05, 0.03)).export(f)
    a = ingest_mesh(f, tmp_path / "one", FAST)
    b = ingest_mesh(f, tmp_path / "two", FAST)

    def content(root):
        return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(root.rglob("*")) if p.is_file()}

    ca, cb = content(a.path), content(b.path)
    assert set(ca) == set(cb) and "timing.json" in ca and "timings" not in a.meta
    assert {k for k in ca if ca[k] != cb[k]} <= {"timing.json"}
    assert set(json.loads((a.path / "timing.json").read_text())) >= {"repair", "sdf", "convex"}
    assert is_volatile(f"objects/{a.object_id}/timing.json") and not is_volatile(f"objects/{a.object_id}/meta.json")

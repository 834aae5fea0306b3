"""PyBullet table-rest stability filter (dexlite_core.sim.stability) on trimesh primitives."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import trimesh

from dexlite_core.config import StabilityConfig
from dexlite_core.sim import stability
from dexlite_core.sim.stability import check_objects, check_stability

CFG = StabilityConfig()


def _check(mesh: trimesh.Trimesh, cfg: StabilityConfig = CFG) -> stability.StabilityResult:
    return check_stability(mesh, [mesh.convex_hull], cfg)


def _plate() -> trimesh.Trimesh:
    """0.1 x 0.005 x 0.15 m plate standing on its 0.1 x 0.005 edge (z up)."""
    return trimesh.creation.box((0.1, 0.005, 0.15))


def _numbers(r: stability.StabilityResult) -> str:
    """Everything but timings and path, as JSON text (so NaN == NaN)."""
    d = r.to_dict()
    for key in ("sim_time", "step_time", "wall_time", "path"):
        d.pop(key)
    return json.dumps(d, sort_keys=True)


def test_keeps_cube():
    r = _check(trimesh.creation.box((0.08, 0.08, 0.08)))
    assert r.kept and r.decided_by == "as_given" and r.reason.startswith("stable")
    assert r.displacement < 0.01 and r.rotation_deg < 2.0
    assert all(p.stable for p in r.poses)
    assert r.mass == pytest.approx(500.0 * 0.08**3) and r.mass_source == "mesh"


def test_rejects_sphere():
    r = _check(trimesh.creation.icosphere(radius=0.04))
    assert not r.kept
    assert r.displacement >= CFG.max_displacement or r.rotation_deg >= CFG.max_rotation_deg
    assert not any(p.stable for p in r.poses)  # no resting pose of a ball survives the nudge
    assert "clustered hull" in r.stable_poses_note  # 1280-face hull: the coarsened path ran


def test_rejects_thin_upright_plate_but_records_it_lying_flat():
    r = _check(_plate())
    assert not r.kept and r.rotation_deg > 45.0 and "toppled" in r.reason
    assert r.poses[0].name == "as_given" and r.poses[0].support_margin == pytest.approx(0.0025, abs=1e-4)
    flat = r.poses[1]  # most probable resting pose: on a broad face
    assert flat.name == "stable_0" and flat.probability > 0.3 and flat.stable
    assert check_stability(_plate(), [_plate().convex_hull], StabilityConfig(keep_rule="any")).kept
    assert check_stability(_plate(), [_plate().convex_hull], StabilityConfig(keep_rule="most_probable")).kept


def test_rejects_roller_keeps_bottle():
    upright = trimesh.creation.cylinder(radius=0.03, height=0.1)
    lying = upright.copy().apply_transform(trimesh.transformations.rotation_matrix(math.pi / 2, [1, 0, 0]))
    assert _check(upright).kept
    r = _check(lying)
    assert not r.kept and r.displacement > CFG.max_displacement and "rolled" in r.reason


def test_thresholds_are_applied():
    cube = trimesh.creation.box((0.08, 0.08, 0.08))
    r = _check(cube, StabilityConfig(max_displacement=1e-4, n_poses=0))
    assert not r.kept and r.reason.startswith("slid")  # the 5 cm/s nudge slides it ~1-2 mm
    assert len(r.poses) == 1


def test_same_seed_same_numbers():
    ball = trimesh.creation.icosphere(subdivisions=2, radius=0.03)
    a, b = _check(ball), _check(ball)
    assert _numbers(a) == _numbers(b)
    # the sphere's point support has no preferred side: the push direction comes from the seed
    c = _check(ball, StabilityConfig(seed=1))
    assert c.poses[0].push_direction != a.poses[0].push_direction


def test_result_records_displacement_rotation_reason():
    r = _check(_plate())
    assert math.isfinite(r.displacement) and math.isfinite(r.rotation_deg) and r.reason
    assert len(r.poses) == 1 + CFG.n_poses
    for p in r.poses:
        assert math.isfinite(p.displacement) and math.isfinite(p.rotation_deg) and p.reason
        assert p.max_rotation_deg >= p.rotation_deg - 1e-6
        assert np.linalg.norm(p.orientation) == pytest.approx(1.0)
    assert r.sim_time == pytest.approx((1 + CFG.n_poses) * CFG.duration, rel=1e-3)
    json.dumps(r.to_dict())  # serialisable as is


def test_mass_properties_off_centre_and_open_mesh():
    box = trimesh.creation.box((0.06, 0.04, 0.02))
    box.apply_translation([0.01, -0.02, 0.0])
    r = _check(box, StabilityConfig(n_poses=0))
    assert r.kept and np.allclose(r.center_of_mass, [0.01, -0.02, 0.0], atol=1e-9)
    open_box = trimesh.Trimesh(box.vertices, box.faces[:-1])  # one triangle missing: not a volume
    r2 = _check(open_box, StabilityConfig(n_poses=0))
    assert r2.mass_source == "convex_hull" and r2.mass == pytest.approx(500.0 * 0.06 * 0.04 * 0.02)


def test_compound_collision_parts():
    """An L bracket from two convex parts: mass and COM from the mesh, the parts collide."""
    base = trimesh.creation.box((0.08, 0.03, 0.02))
    post = trimesh.creation.box((0.02, 0.03, 0.06))
    post.apply_translation([0.03, 0.0, 0.04])
    mesh = trimesh.util.concatenate([base, post])
    r = check_stability(mesh, [base, post], StabilityConfig(n_poses=1))
    v_base, v_post = 0.08 * 0.03 * 0.02, 0.02 * 0.03 * 0.06
    assert r.mass_source == "mesh" and r.mass == pytest.approx(500.0 * (v_base + v_post))
    assert r.center_of_mass[0] == pytest.approx(0.03 * v_post / (v_base + v_post))
    assert r.kept and r.poses[0].support_margin > 0.01


def test_fallback_random_drops(monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("no poses today")

    monkeypatch.setattr(stability.trimesh.poses, "compute_stable_poses", boom)
    r = _check(trimesh.creation.box((0.08, 0.06, 0.04)), StabilityConfig(n_poses=2))
    assert [p.name for p in r.poses] == ["as_given", "drop_0", "drop_1"]
    assert "random drops" in r.stable_poses_note
    assert all(p.stable for p in r.poses[1:])  # a settled box is at rest: stable under the nudge


def test_bad_config_raises():
    with pytest.raises(ValueError, match="keep_rule"):
        _check(trimesh.creation.box((0.05, 0.05, 0.05)), StabilityConfig(keep_rule="best"))


def _object_folder(root: Path, name: str, mesh: trimesh.Trimesh) -> Path:
    """Minimal object folder in the docs/CONTRACTS.md layout (what the filter reads)."""
    d = root / name
    (d / "convex").mkdir(parents=True)
    mesh.export(d / "mesh.obj")
    mesh.convex_hull.export(d / "convex" / "part_000.obj")
    (d / "meta.json").write_text(json.dumps({"object_id": name, "n_parts": 1}))
    (d / "_SUCCESS").write_text("")
    return d


def test_check_objects_two_workers(tmp_path):
    cfg = StabilityConfig(n_poses=1)
    dirs = [
        _object_folder(tmp_path, "cube-0", trimesh.creation.box((0.07, 0.07, 0.07))),
        _object_folder(tmp_path, "ball-0", trimesh.creation.icosphere(subdivisions=2, radius=0.03)),
        tmp_path / "missing-0",
        _object_folder(tmp_path, "plate-0", _plate()),
    ]
    res2 = check_objects(dirs, cfg, workers=2)
    assert [r.object_id for r in res2] == ["cube-0", "ball-0", "missing-0", "plate-0"]
    assert [r.kept for r in res2] == [True, False, False, False]
    assert res2[2].reason.startswith("error:") and "_SUCCESS" in res2[2].reason
    assert res2[0].path == str(dirs[0])
    res1 = check_objects(dirs, cfg, workers=1)  # same numbers in this process as in the workers
    assert [_numbers(r) for r in res1] == [_numbers(r) for r in res2]

"""Table-rest stability filter (PyBullet, headless): does an object stay put on a table?

Write-up: "Objects must remain stable on a table after 2 seconds of simulation. Criteria: lateral
displacement < 0.05 m and angular change < 7 deg" (filters spheres, thin plates, ...). Thresholds,
duration, density, friction and time step are :class:`~dexlite_core.config.StabilityConfig` fields.

Protocol, per object (``check_stability``):

1. Rigid body. Mass properties come from the mesh at ``cfg.density`` when the mesh is a closed volume
   (``trimesh`` ``is_volume``), else from its convex hull: mass = density * volume, centre of mass
   (COM) and the full inertia tensor. The body frame is the COM principal-axes frame, so PyBullet gets
   the exact diagonal inertia; the collision shape is the compound of the convex decomposition parts
   (each a PyBullet convex hull), placed in that frame through collision-frame offsets.
2. Poses to test. (a) ``as_given``: the file's orientation, z up, as a user would put the object down;
   (b) ``stable_0..``: the ``cfg.n_poses`` most probable resting poses of the collision geometry's
   convex hull from ``trimesh.poses.compute_stable_poses`` (quasi-static probabilities recorded),
   skipping poses whose down direction repeats an earlier one or the as-given one (< 1 deg). A hull of
   more than 300 faces (smooth shapes: every facet of a ball is a resting pose, and the call costs ~1 s
   per 1000 faces) is first coarsened by averaging its vertices on a grid; each pose found there is
   snapped to the true hull face facing the same way. If the computation fails, (b') ``drop_0..``:
   ``cfg.n_poses`` random orientations (from ``cfg.seed``) are released and simulated for
   ``cfg.duration`` without perturbation; each settled orientation is then a pose to test.
3. Perturbation (deterministic). A perfect sphere or a cylinder on its side does not move on a flat
   table unless disturbed, and a thin plate balanced on its edge does not fall in an ideal simulator,
   so every pose is tested under a small nudge: find the support polygon (collision vertices within
   ``1e-5 + 1e-3 * size`` m of the lowest point) and its edge nearest to the COM's vertical projection
   (for a point / segment support: the direction in which the COM lies off it, or, when the COM is
   right above it, a direction drawn from ``cfg.seed``). That outward direction ``d`` is the least
   stable side. The object is tilted by ``cfg.tilt_deg`` (2 deg) so that its top moves toward ``d``,
   released ``cfg.drop_height`` (1 mm) above the table, with initial COM velocity
   ``cfg.push_speed * d`` (0.075 m/s; a cube slides ~2 mm and settles back flat).
   Calibration on 2 to 10 cm primitives: icospheres (320 to 5120 faces) resting on a facet, and
   cylinders lying on their side, roll (> 0.06 m) or rock onto the next facet (> 9 deg); plates 5 mm
   and 10 mm thick standing on edge (10 to 15 cm tall) fall; cubes, boxes, cones, a 2 cm thick book
   on edge and upright cylinders down to width / height 0.16 stay (rotation < 3.5 deg, mostly a
   spurious spin about the vertical caused by the nudge). At 0.05 m/s, 1280-face balls of 4 to 5 cm
   radius stayed on their facet; at 0.1 m/s the spin of slim cylinders reached 9 deg.
4. Simulate ``cfg.duration`` s at ``cfg.timestep`` on a static plane (both lateral frictions
   ``cfg.lateral_friction``; no rolling/spinning friction; gravity 9.81). Each simulation starts from
   ``resetSimulation`` in this process's own DIRECT client, so results do not depend on what ran
   before: same inputs and seed, same numbers.
5. Measure. ``displacement``: horizontal distance between the COM at release and at the end [m].
   ``rotation_deg``: angle of the relative rotation between the pose's (unperturbed) orientation and
   the final orientation, so the 2 deg tilt that settles back counts as 0 and a fall counts fully.
   A pose is stable iff displacement < ``max_displacement`` and rotation < ``max_rotation_deg``.
   The reason reads "stable", "toppled 34 deg" (rotation exceeded, displacement not), "slid 0.08 m"
   (moved, never turned past the threshold), "rolled 0.31 m" (moved and turned on the way, and is still
   moving at the end or has turned back to under the threshold, i.e. whole turns), "toppled 90 deg,
   moved 0.08 m" (both exceeded, at rest), "fell through the table" or "simulation diverged".
6. Keep rule (``cfg.keep_rule``). Default ``"as_given"``: the object is kept iff its as-given pose is
   stable; the other poses are simulated and recorded. Reason: the filter answers "will this object
   stay where it is put on the table" in the orientation it is stored in (the one a user or a
   tabletop scene puts it down in); a thin plate is stable lying flat, yet the write-up counts thin
   plates among the rejects, which only the as-given rule reproduces. Alternatives:
   ``"most_probable"`` (the most probable resting pose decides; as-given if there is none) and
   ``"any"`` (kept if any tested pose is stable). The object-level displacement / rotation / reason
   are those of the deciding pose.

``check_objects`` runs the protocol on object folders (``docs/CONTRACTS.md`` format; it reads only
mesh.obj, convex/part_*.obj and meta.json, without torch) in a spawn-context process pool, one PyBullet
client per worker, results in input order; a failing object gives ``kept=False`` with
``reason="error: ..."`` instead of stopping the batch.
"""

from __future__ import annotations

import dataclasses
import json
import math
import multiprocessing as mp
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pybullet as pb
import trimesh
from scipy.spatial import ConvexHull, QhullError
from scipy.spatial.transform import Rotation

from dexlite_core.config import StabilityConfig

__all__ = [
    "KEEP_RULES",
    "PoseResult",
    "StabilityResult",
    "check_objects",
    "check_stability",
    "load_collision_model",
]

KEEP_RULES = ("as_given", "most_probable", "any")
GRAVITY = 9.81
_SAME_POSE_DEG = 1.0  # a stable pose whose down direction is this close to as-given's is a duplicate
_MOVING_SPEED = 0.01  # m/s: above this at the end, an object that moved and turned is "rolling"
_SAMPLE_EVERY = 4  # steps between orientation samples for max_rotation_deg
_POSE_HULL_FACES = 300  # stable poses on a vertex-clustered hull above this many faces


@dataclass(frozen=True)
class PoseResult:
    """One simulated resting pose.

    ``orientation``: the unperturbed pose as a quaternion (x, y, z, w) rotating the object (file)
    frame into the world (z up). ``support_margin``: distance from the COM's vertical projection to
    the nearest support-polygon edge [m], negative when it lies outside. ``push_direction``: unit
    (x, y) of the tilt / push in the world.
    """

    name: str
    probability: float | None
    orientation: tuple[float, float, float, float]
    push_direction: tuple[float, float]
    support_margin: float
    stable: bool
    displacement: float
    rotation_deg: float
    max_rotation_deg: float  # largest rotation from the pose along the way (every 4th step)
    final_speed: float  # horizontal COM speed at the end [m/s]
    reason: str


@dataclass(frozen=True)
class StabilityResult:
    """Outcome for one object. ``displacement`` [m] / ``rotation_deg`` / ``reason`` belong to the
    deciding pose (``decided_by``); every tested pose is in ``poses``. ``sim_time``: simulated seconds
    in total; ``step_time`` / ``wall_time``: wall seconds stepping / for the whole check."""

    kept: bool
    displacement: float
    rotation_deg: float
    reason: str
    decided_by: str | None = None
    poses: list[PoseResult] = field(default_factory=list)
    keep_rule: str = "as_given"
    mass: float = math.nan
    center_of_mass: tuple[float, float, float] = (math.nan, math.nan, math.nan)
    mass_source: str = ""  # "mesh" (closed volume) | "convex_hull"
    stable_poses_note: str = ""  # hull clustering used / why compute_stable_poses was not used
    sim_time: float = 0.0
    step_time: float = 0.0
    wall_time: float = 0.0
    object_id: str | None = None
    path: str | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ----------------------------------------------------------------------------------------------
# geometry


def _mass_properties(mesh: trimesh.Trimesh, density: float) -> tuple[float, np.ndarray, np.ndarray, str]:
    """(mass [kg], COM (3,), inertia about the COM (3, 3), source) at `density`."""
    source = "mesh" if mesh.is_volume else "convex_hull"
    body = mesh.copy() if source == "mesh" else mesh.convex_hull
    body.density = float(density)
    volume = float(body.volume)
    if not np.isfinite(volume) or volume <= 1e-15:
        raise ValueError(f"degenerate mesh: {source} volume {volume:.3g} m^3")
    return float(body.mass), np.asarray(body.center_mass, float), np.asarray(body.moment_inertia), source


def _principal_frame(inertia: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigen-decomposition ``inertia = R diag(lam) R^T`` with R a proper rotation, lam > 0."""
    lam, rot = np.linalg.eigh(0.5 * (inertia + inertia.T))
    if np.linalg.det(rot) < 0:
        rot[:, 0] *= -1.0
    lam = np.maximum(lam, 1e-9 * max(float(lam.max()), 1e-30))
    return lam, rot


def _support_direction(pts: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """Least-stable horizontal direction and the support margin for support points `pts` (K, 2)
    given relative to the COM projection (the origin)."""

    def random_dir() -> np.ndarray:
        a = rng.uniform(0.0, 2.0 * math.pi)
        return np.array([math.cos(a), math.sin(a)])

    centre = pts.mean(axis=0)
    spread = np.linalg.svd(pts - centre, compute_uv=False) if len(pts) > 1 else np.zeros(2)
    tol = 1e-7
    if len(pts) >= 3 and spread[-1] > tol:
        try:
            hull = ConvexHull(pts)
        except QhullError:
            hull = None
        if hull is not None:
            # equations: n . x + off <= 0 inside; the origin is -off inside edge k.
            inside = -hull.equations[:, 2]
            k = int(np.argmin(inside))
            n = hull.equations[k, :2]
            return n / np.linalg.norm(n), float(inside[k])
    if spread[0] > tol:  # segment support (a roller)
        _, _, vt = np.linalg.svd(pts - centre)
        u = vt[0]
        n = np.array([-u[1], u[0]])
        s = float(n @ (-centre))
        if abs(s) > tol:
            return n * math.copysign(1.0, s), -abs(s)
        return n * (1.0 if rng.random() < 0.5 else -1.0), 0.0
    off = -centre  # point support (a sphere)
    dist = float(np.linalg.norm(off))
    if dist > tol:
        return off / dist, -dist
    return random_dir(), 0.0


def _write_parts(parts: list[trimesh.Trimesh], folder: str) -> list[str]:
    paths = []
    for i, part in enumerate(parts):
        path = os.path.join(folder, f"part_{i:03d}.obj")
        v = np.asarray(part.vertices, float)
        f = np.asarray(part.faces, int) + 1
        lines = [f"v {x:.9g} {y:.9g} {z:.9g}" for x, y, z in v]
        lines += [f"f {a} {b} {c}" for a, b, c in f]
        with open(path, "w") as fh:
            fh.write("\n".join(lines) + "\n")
        paths.append(path)
    return paths


def _angle_deg(rot: np.ndarray) -> float:
    return float(np.degrees(Rotation.from_matrix(rot).magnitude()))


def _quat(rot: np.ndarray) -> tuple[float, float, float, float]:
    x, y, z, w = Rotation.from_matrix(rot).as_quat()
    return (float(x), float(y), float(z), float(w))


# ----------------------------------------------------------------------------------------------
# simulation

_CLIENT: int | None = None


def _client() -> int:
    """This process's PyBullet DIRECT client (created on first use)."""
    global _CLIENT
    if _CLIENT is None or not pb.isConnected(_CLIENT):
        _CLIENT = pb.connect(pb.DIRECT)
    return _CLIENT


@dataclass
class _Body:
    files: list[str]
    mass: float
    com: np.ndarray  # (3,) in the object frame
    principal: np.ndarray  # (3, 3) object-frame columns = body axes
    inertia: np.ndarray  # (3,) principal moments
    verts: np.ndarray  # (V, 3) collision vertices, object frame, relative to the COM
    support_tol: float


def _simulate(
    body: _Body,
    r_init: np.ndarray,
    velocity: np.ndarray,
    cfg: StabilityConfig,
    r_ref: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float, float, float]:
    """Release the body with object orientation `r_init` (lowest point `drop_height` above the
    table) and COM velocity `velocity`; simulate `cfg.duration`.
    Returns (start COM, end COM, end object orientation (3, 3), end velocity, largest rotation from
    `r_ref` along the way [deg] (nan without r_ref), sim s, wall s)."""
    cid = _client()
    pb.resetSimulation(physicsClientId=cid)
    pb.setPhysicsEngineParameter(
        fixedTimeStep=cfg.timestep, deterministicOverlappingPairs=1, physicsClientId=cid
    )
    pb.setGravity(0.0, 0.0, -GRAVITY, physicsClientId=cid)
    plane_shape = pb.createCollisionShape(pb.GEOM_PLANE, physicsClientId=cid)
    plane = pb.createMultiBody(0.0, plane_shape, physicsClientId=cid)
    n = len(body.files)
    rt = body.principal.T  # object frame -> body frame
    shape = pb.createCollisionShapeArray(
        [pb.GEOM_MESH] * n,
        fileNames=body.files,
        meshScales=[[1.0, 1.0, 1.0]] * n,
        collisionFramePositions=[(-(rt @ body.com)).tolist()] * n,
        collisionFrameOrientations=[list(_quat(rt))] * n,
        physicsClientId=cid,
    )
    if shape < 0:
        raise RuntimeError(f"pybullet could not build the collision shape from {n} convex part(s)")
    z0 = -float((body.verts @ r_init.T)[:, 2].min()) + cfg.drop_height
    obj = pb.createMultiBody(
        body.mass,
        shape,
        basePosition=[0.0, 0.0, z0],
        baseOrientation=list(_quat(r_init @ body.principal)),
        physicsClientId=cid,
    )
    for b in (plane, obj):
        pb.changeDynamics(b, -1, lateralFriction=cfg.lateral_friction, physicsClientId=cid)
    pb.changeDynamics(obj, -1, localInertiaDiagonal=body.inertia.tolist(), physicsClientId=cid)
    pb.resetBaseVelocity(obj, velocity.tolist(), [0.0, 0.0, 0.0], physicsClientId=cid)
    p0 = np.array(pb.getBasePositionAndOrientation(obj, physicsClientId=cid)[0])
    n_steps = max(1, int(round(cfg.duration / cfg.timestep)))
    quats = []
    t = time.perf_counter()
    for i in range(n_steps):
        pb.stepSimulation(physicsClientId=cid)
        if r_ref is not None and i % _SAMPLE_EVERY == 0:
            quats.append(pb.getBasePositionAndOrientation(obj, physicsClientId=cid)[1])
    wall = time.perf_counter() - t
    max_rot = math.nan
    q = np.asarray(quats, float)
    if r_ref is not None and len(q) and np.all(np.isfinite(q)):
        rel = Rotation.from_matrix(r_ref.T) * Rotation.from_quat(q) * Rotation.from_matrix(body.principal.T)
        max_rot = float(np.degrees(rel.magnitude().max()))
    p1, q1 = pb.getBasePositionAndOrientation(obj, physicsClientId=cid)
    v1 = np.array(pb.getBaseVelocity(obj, physicsClientId=cid)[0])
    q1 = np.array(q1)
    if np.all(np.isfinite(q1)) and np.linalg.norm(q1) > 0.5:
        r_end = Rotation.from_quat(q1).as_matrix() @ body.principal.T
    else:
        r_end = np.full((3, 3), np.nan)
    return p0, np.array(p1), r_end, v1, max_rot, n_steps * cfg.timestep, wall


def _judge(
    disp: float, rot: float, max_rot: float, speed: float, z_end: float, cfg: StabilityConfig
) -> tuple[bool, str]:
    """Stable iff final displacement and final rotation are under the thresholds; the reason
    names what happened (`max_rot`, the largest rotation on the way, tells rolling from sliding)."""
    if not (np.isfinite(disp) and np.isfinite(rot) and np.isfinite(z_end)):
        return False, "simulation diverged"
    if z_end < -0.01:
        return False, "fell through the table"
    moved, turned = disp >= cfg.max_displacement, rot >= cfg.max_rotation_deg
    if not moved and not turned:
        return True, "stable"
    if turned and not moved:
        return False, f"toppled {rot:.0f} deg"
    if not (max_rot >= cfg.max_rotation_deg):  # moved without turning (nan: unknown, say slid)
        return False, f"slid {disp:.3f} m"
    if speed > _MOVING_SPEED or not turned:
        return False, f"rolled {disp:.3f} m"
    return False, f"toppled {rot:.0f} deg, moved {disp:.3f} m"


def _test_pose(
    body: _Body,
    name: str,
    probability: float | None,
    r_pose: np.ndarray,
    rng: np.random.Generator,
    cfg: StabilityConfig,
) -> tuple[PoseResult, float, float]:
    w = body.verts @ r_pose.T
    low = w[:, 2] <= w[:, 2].min() + body.support_tol
    d2, margin = _support_direction(w[low, :2], rng)
    d = np.array([d2[0], d2[1], 0.0])
    tilt = Rotation.from_rotvec(math.radians(cfg.tilt_deg) * np.cross([0.0, 0.0, 1.0], d)).as_matrix()
    p0, p1, r_end, v1, max_rot, sim_s, wall_s = _simulate(
        body, tilt @ r_pose, cfg.push_speed * d, cfg, r_ref=r_pose
    )
    disp = float(np.linalg.norm(p1[:2] - p0[:2]))
    rot = _angle_deg(r_end @ r_pose.T) if np.all(np.isfinite(r_end)) else math.nan
    speed = float(np.linalg.norm(v1[:2]))
    stable, reason = _judge(disp, rot, max_rot, speed, float(p1[2]), cfg)
    result = PoseResult(
        name=name,
        probability=probability,
        orientation=_quat(r_pose),
        push_direction=(float(d2[0]), float(d2[1])),
        support_margin=margin,
        stable=stable,
        displacement=disp,
        rotation_deg=rot,
        max_rotation_deg=max_rot,
        final_speed=speed,
        reason=reason,
    )
    return result, sim_s, wall_s


def _resting_rotation(normal: np.ndarray) -> np.ndarray:
    """Rotation (object -> world) that turns the outward face normal `normal` to -z (trimesh's
    construction in compute_stable_poses, so the in-plane yaw matches it)."""
    z = -normal / np.linalg.norm(normal)
    x = np.array([-z[1], z[0], 0.0])
    x = np.array([1.0, 0.0, 0.0]) if np.linalg.norm(x) < 1e-12 else x / np.linalg.norm(x)
    y = np.cross(z, x)
    return np.stack([x, y / np.linalg.norm(y), z])


def _pose_hull(hull: trimesh.Trimesh, size: float) -> trimesh.Trimesh:
    """`hull`, or for a hull above _POSE_HULL_FACES faces (smooth shapes: every facet of a ball is
    a resting pose, and compute_stable_poses costs about 1 s per 1000 faces) the hull of its vertices
    averaged on a grid, coarsened until it has few enough faces."""
    cell = size / 40.0
    small = hull
    while len(small.faces) > _POSE_HULL_FACES and cell < size:
        keys = np.floor(hull.vertices / cell).astype(np.int64)
        _, inverse = np.unique(keys, axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
        sums = np.zeros((inverse.max() + 1, 3))
        np.add.at(sums, inverse, hull.vertices)
        means = sums / np.bincount(inverse)[:, None]
        try:
            candidate = trimesh.convex.convex_hull(means)
        except Exception:  # noqa: BLE001 - too coarse (flat): keep the last good one
            break
        if not candidate.is_volume:
            break
        small = candidate
        cell *= 1.5
    return small


def _stable_poses(
    hull: trimesh.Trimesh, com: np.ndarray, size: float, cfg: StabilityConfig
) -> tuple[list[tuple[np.ndarray, float]], str, str]:
    """Up to n_poses (rotation, probability) from compute_stable_poses, minus the as-given pose.
    Returns (poses, failure, info): a non-empty failure means: use random drops instead."""
    if cfg.n_poses <= 0:
        return [], "", ""
    info = ""
    try:
        small = _pose_hull(hull, size)
        if len(small.faces) < len(hull.faces):
            info = f"stable poses on a {len(small.faces)}-face clustered hull ({len(hull.faces)} faces)"
        # compute_stable_poses loops forever when the COM is not strictly inside the hull.
        inside = np.einsum("ij,ij->i", com - small.triangles_center, small.face_normals) < 0
        if not np.all(inside):
            return [], "centre of mass not strictly inside the convex hull", info
        transforms, probs = trimesh.poses.compute_stable_poses(
            small, center_mass=com, sigma=0.0, n_samples=1, seed=cfg.seed
        )
    except Exception as exc:  # noqa: BLE001 - any failure means: fall back to random drops
        return [], f"compute_stable_poses failed: {type(exc).__name__}: {exc}", info
    if len(transforms) == 0:
        return [], "compute_stable_poses found no pose", info
    out: list[tuple[np.ndarray, float]] = []
    seen = [np.array([0.0, 0.0, -1.0])]  # down directions (object frame) taken; as-given first
    cos_same = math.cos(math.radians(_SAME_POSE_DEG))
    for tf, prob in zip(transforms, probs, strict=True):
        down = np.asarray(tf)[:3, :3].T @ np.array([0.0, 0.0, -1.0])
        # snap to the face of the true hull that faces that way (a no-op without clustering)
        normal = hull.face_normals[int(np.argmax(hull.face_normals @ down))]
        if any(float(normal @ u) >= cos_same for u in seen):
            continue
        seen.append(normal)
        out.append((_resting_rotation(normal), float(prob)))
        if len(out) == cfg.n_poses:
            break
    return out, "", info


def check_stability(
    mesh: trimesh.Trimesh,
    convex_parts: list[trimesh.Trimesh],
    cfg: StabilityConfig | None = None,
    *,
    object_id: str | None = None,
) -> StabilityResult:
    """Run the table-rest protocol (module docstring) on one object.

    mesh: the object (object frame, metres; z up is its as-given orientation); convex_parts: its
    convex decomposition in the same frame (the collision geometry; [] means the mesh's hull).
    Raises ValueError for an unusable input (empty / zero-volume mesh, unknown keep rule).
    """
    cfg = cfg or StabilityConfig()
    if cfg.keep_rule not in KEEP_RULES:
        raise ValueError(f"StabilityConfig.keep_rule={cfg.keep_rule!r}; expected one of {KEEP_RULES}")
    if mesh is None or len(mesh.faces) == 0:
        raise ValueError("empty mesh")
    t_start = time.perf_counter()
    parts = [p for p in convex_parts if len(p.vertices) >= 4] or [mesh.convex_hull]
    mass, com, inertia, source = _mass_properties(mesh, cfg.density)
    lam, principal = _principal_frame(inertia)
    verts = np.concatenate([np.asarray(p.vertices, float) for p in parts])
    hull = trimesh.convex.convex_hull(verts)
    size = float(np.ptp(verts, axis=0).max())

    poses: list[PoseResult] = []
    sim_time = step_time = 0.0
    with tempfile.TemporaryDirectory(prefix="dexlite-stab-") as tmp:
        body = _Body(
            files=_write_parts(parts, tmp),
            mass=mass,
            com=com,
            principal=principal,
            inertia=lam,
            verts=verts - com,
            support_tol=1e-5 + 1e-3 * size,
        )

        def run(i: int, name: str, prob: float | None, r_pose: np.ndarray) -> None:
            nonlocal sim_time, step_time
            rng = np.random.default_rng([cfg.seed, i])
            res, s, w = _test_pose(body, name, prob, r_pose, rng, cfg)
            poses.append(res)
            sim_time += s
            step_time += w

        run(0, "as_given", None, np.eye(3))
        candidates, failure, info = _stable_poses(hull, com, size, cfg)
        for k, (r_pose, prob) in enumerate(candidates):
            run(1 + k, f"stable_{k}", prob, r_pose)
        if failure:  # fallback: random drops, settled without perturbation, then tested
            r_rand = Rotation.random(cfg.n_poses, random_state=cfg.seed).as_matrix().reshape(-1, 3, 3)
            for k, r0 in enumerate(r_rand):
                _, p1, r_end, _, _, s, w = _simulate(body, r0, np.zeros(3), cfg)
                sim_time += s
                step_time += w
                if np.all(np.isfinite(r_end)) and np.all(np.isfinite(p1)):
                    run(1 + k, f"drop_{k}", None, Rotation.from_matrix(r_end).as_matrix())

    if cfg.keep_rule == "as_given":
        decider = poses[0]
    elif cfg.keep_rule == "most_probable":
        decider = poses[1] if len(poses) > 1 else poses[0]
    else:
        decider = next((p for p in poses if p.stable), poses[0])
    reason = "stable" if decider.stable else decider.reason
    return StabilityResult(
        kept=decider.stable,
        displacement=decider.displacement,
        rotation_deg=decider.rotation_deg,
        reason=f"{reason} ({decider.name})",
        decided_by=decider.name,
        poses=poses,
        keep_rule=cfg.keep_rule,
        mass=mass,
        center_of_mass=(float(com[0]), float(com[1]), float(com[2])),
        mass_source=source,
        stable_poses_note="; ".join(x for x in (info, failure and f"{failure}: random drops") if x),
        sim_time=sim_time,
        step_time=step_time,
        wall_time=time.perf_counter() - t_start,
        object_id=object_id,
    )


# ----------------------------------------------------------------------------------------------
# object folders, process pool


def load_collision_model(path: Path | str) -> tuple[str, trimesh.Trimesh, list[trimesh.Trimesh]]:
    """(object_id, mesh, convex parts) of an object folder (docs/CONTRACTS.md), without the SDF /
    point cloud (so workers do not import torch)."""
    path = Path(path)
    if not (path / "_SUCCESS").is_file():
        raise FileNotFoundError(f"{path}: not a complete object folder (no _SUCCESS)")
    meta_file = path / "meta.json"
    object_id = path.name
    if meta_file.is_file():
        object_id = str(json.loads(meta_file.read_text()).get("object_id", object_id))
    mesh = trimesh.load(path / "mesh.obj", force="mesh")
    part_files = sorted((path / "convex").glob("part_*.obj"))
    if not part_files:
        raise FileNotFoundError(f"{path / 'convex'}: no part_*.obj convex parts")
    parts = [trimesh.load(p, force="mesh") for p in part_files]
    return object_id, mesh, parts


def _error_result(path: str, cfg: StabilityConfig, msg: str, wall: float = 0.0) -> StabilityResult:
    return StabilityResult(
        kept=False,
        displacement=math.nan,
        rotation_deg=math.nan,
        reason=f"error: {msg}",
        keep_rule=cfg.keep_rule,
        wall_time=wall,
        object_id=Path(path).name,
        path=path,
        error=msg,
    )


def _check_folder(args: tuple[str, StabilityConfig]) -> StabilityResult:
    path, cfg = args
    t = time.perf_counter()
    try:
        object_id, mesh, parts = load_collision_model(path)
        return dataclasses.replace(check_stability(mesh, parts, cfg, object_id=object_id), path=path)
    except Exception as exc:  # noqa: BLE001 - one bad object must not stop the batch
        return _error_result(path, cfg, f"{type(exc).__name__}: {exc}", time.perf_counter() - t)


def _init_worker() -> None:
    _client()


def _pool(workers: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_init_worker)


def check_objects(
    object_dirs: list[Path], cfg: StabilityConfig | None = None, workers: int = 1
) -> list[StabilityResult]:
    """Check every object folder; results in input order. `workers` > 1 uses a spawn-context process
    pool (one PyBullet client per worker); failures become ``kept=False, reason="error: ..."``.
    If a worker process dies (a crash inside PyBullet), the objects it left unfinished are rerun one
    per fresh process, so only the culprit gets ``reason="error: worker process died ..."``."""
    cfg = cfg or StabilityConfig()
    jobs = [(str(p), cfg) for p in object_dirs]
    workers = max(1, min(int(workers), len(jobs)))
    if workers == 1:
        return [_check_folder(j) for j in jobs]
    results: list[StabilityResult | None] = [None] * len(jobs)
    with _pool(workers) as ex:
        futures = [ex.submit(_check_folder, j) for j in jobs]
        for i, fut in enumerate(futures):
            try:
                results[i] = fut.result()
            except Exception:  # noqa: BLE001 - BrokenProcessPool: isolate below
                pass
    for i, res in enumerate(results):
        if res is None:
            try:
                with _pool(1) as ex:
                    results[i] = ex.submit(_check_folder, jobs[i]).result()
            except Exception as exc:  # noqa: BLE001
                msg = f"worker process died ({type(exc).__name__}: {exc})"
                results[i] = _error_result(jobs[i][0], cfg, msg)
    return [r for r in results if r is not None]

"""MuJoCo scene of the lift test: the Shadow Hand on a lifting slide (pose set per grasp) plus one free object.

Built once per object (:func:`build_scene`) and reused for every grasp of that object with
``mj_resetData`` (simulation notes item 7). The physical parameters are documented in
:mod:`dexlite_core.sim.lift`; this module only assembles the model:

- hand: :func:`dexlite_core.hand.asset.build_hand_spec` (OpenAI / gymnasium-robotics asset, palm
  root, each explicit finger contact pair once; its visual meshes dropped here). The body
  ``hand_root`` carries the grasp's palm pose in ``model.body_pos`` / ``body_quat``
  (:meth:`Scene.set_hand_pose`, per grasp) and one slide joint ``lift_z`` whose local axis is set to
  ``R^T e_z`` so that it always lifts along world z. Every hand body is gravity-compensated.
- actuators: 1 stiff lift servo (critically damped) then 22 finger position servos (one per joint,
  ``kp = cfg.kp``, OpenAI's torque limits, no control range so a squeeze target may lie past a
  joint limit): ``ctrl = [lift z, 22 joint targets]``.
- object: one free body, one mesh geom per convex part, explicit mass / COM / inertia (from the
  parts' union at uniform density, scaled to ``cfg.object_mass``).
- contacts: hand collision geoms keep OpenAI's ``contype=1, conaffinity=0``; object geoms get
  ``contype=0, conaffinity=1`` so they collide with every hand collision geom and with nothing
  else. Both sides carry the same friction, condim, solref and solimp, so the mixed contact
  parameters are exactly those values.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import mujoco
import numpy as np

from dexlite_core.config import LiftConfig
from dexlite_core.hand.asset import JOINT_NAMES, PALM_BODY, ROOT_BODY, build_hand_spec

OBJECT_BODY = "object"
LIFT_JOINT = "lift_z"

# OpenAI's finger torque limits (gymnasium-robotics shared.xml, reference section 4) [N m].
# J0 (DIP) has no actuator on the real hand (tendon-coupled to J1); it gets J1's limit.
FORCE_LIMITS: dict[str, float] = {
    "J3": 0.9, "J2": 0.9, "J1": 0.7245, "J0": 0.7245, "LFJ4": 0.9,
    "THJ4": 2.3722, "THJ3": 1.45, "THJ2": 0.99, "THJ1": 0.99, "THJ0": 0.81,
}  # fmt: skip

Part = tuple[np.ndarray, np.ndarray]  # vertices (n, 3) float64, faces (m, 3) int32


def force_limit(joint: str) -> float:
    """OpenAI torque limit of a finger joint, e.g. ``robot0:FFJ1`` -> 0.7245 N m."""
    short = joint.split(":")[-1]
    return FORCE_LIMITS.get(short, FORCE_LIMITS.get(short[-2:], 0.9))


@dataclass(frozen=True)
class ObjectGeometry:
    """Convex parts of an object (object frame) with their union's mass properties per unit mass.

    ``parts``: tuple of (vertices (n, 3) float64, faces (m, 3) int32). ``com`` (3,) and
    ``inertia`` (3, 3) about the COM for a 1 kg body of uniform density; ``radius``: largest vertex
    distance from the object origin [m]. ``digest``: content hash (cache key in worker processes).
    """

    parts: tuple[Part, ...]
    com: np.ndarray
    inertia: np.ndarray
    radius: float
    digest: str = field(default="")

    @classmethod
    def from_meshes(cls, meshes: Sequence[object]) -> ObjectGeometry:
        """From convex parts (``trimesh.Trimesh`` or anything with ``vertices`` / ``faces``)."""
        if len(meshes) == 0:
            raise ValueError("object has no convex parts")
        parts: list[Part] = []
        for i, mesh in enumerate(meshes):
            v = np.asarray(mesh.vertices, dtype=np.float64)  # type: ignore[attr-defined]
            f = np.asarray(mesh.faces, dtype=np.int32)  # type: ignore[attr-defined]
            if v.ndim != 2 or v.shape[1] != 3 or len(v) < 4 or not np.isfinite(v).all():
                raise ValueError(f"convex part {i}: needs >= 4 finite 3-D vertices, got {v.shape}")
            parts.append((v, f))
        com, inertia = _mass_properties(parts)
        radius = float(max(np.linalg.norm(v, axis=1).max() for v, _ in parts))
        h = hashlib.sha256()
        for v, f in parts:
            h.update(v.tobytes())
            h.update(f.tobytes())
        return cls(tuple(parts), com, inertia, radius, h.hexdigest()[:16])


def _mass_properties(parts: Sequence[Part]) -> tuple[np.ndarray, np.ndarray]:
    """COM and inertia (about the COM, per unit mass) of the union of convex parts.

    Each part's hull is integrated exactly (tetrahedra from its centroid); overlaps between parts
    are counted twice, which CoACD's near-disjoint parts make negligible.
    """
    vols, coms, seconds = [], [], []
    for v, _ in parts:
        vol, c, second = _hull_moments(v)
        vols.append(vol)
        coms.append(c)
        seconds.append(second)
    total = float(sum(vols))
    if total <= 1e-12:  # degenerate (flat) object: treat its vertices as point masses
        pts = np.concatenate([v for v, _ in parts])
        com = pts.mean(0)
        d = pts - com
        second = d.T @ d / len(pts)
    else:
        com = sum(vol * c for vol, c in zip(vols, coms, strict=True)) / total
        second = sum(seconds) / total  # E[x x^T] about the origin
        second = second - np.outer(com, com)
    inertia = np.trace(second) * np.eye(3) - second
    floor = 1e-12 + 1e-6 * float(np.trace(inertia))
    return com, inertia + floor * np.eye(3)  # never singular


def _hull_moments(v: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Volume, centroid and second moment sum(vol * E[x x^T]) about the origin of conv(v)."""
    from scipy.spatial import ConvexHull, QhullError

    try:
        hull = ConvexHull(v)
    except (QhullError, ValueError):
        return 0.0, v.mean(0), np.zeros((3, 3))
    c0 = v[hull.vertices].mean(0)
    tri = v[hull.simplices]  # (T, 3, 3)
    a, b, c = tri[:, 0] - c0, tri[:, 1] - c0, tri[:, 2] - c0
    vol = np.abs(np.einsum("ij,ij->i", a, np.cross(b, c))) / 6.0  # (T,)
    total = float(vol.sum())
    if total <= 0:
        return 0.0, c0, np.zeros((3, 3))
    # tetra (c0, p1, p2, p3): E[x x^T] = (sum_i p_i p_i^T + (sum p)(sum p)^T) / 20 over its 4 vertices
    verts = np.concatenate([np.broadcast_to(c0, (len(tri), 1, 3)), tri], axis=1)  # (T, 4, 3)
    s = verts.sum(1)
    ex = (np.einsum("tki,tkj->tij", verts, verts) + np.einsum("ti,tj->tij", s, s)) / 20.0
    second = np.einsum("t,tij->ij", vol, ex)
    centroid = np.einsum("t,ti->i", vol, verts.mean(1)) / total
    return total, centroid, second


@dataclass
class Scene:
    """A compiled lift-test model and the indices the protocol needs."""

    model: mujoco.MjModel
    root_body: int  # hand_root: its model.body_pos / body_quat carry the grasp's palm pose
    lift_joint: int  # the slide joint that lifts the hand (world z whatever the pose)
    lift_qadr: int
    lift_dof: int
    finger_qadr: np.ndarray  # (22,) qpos addresses, JOINT_NAMES order
    finger_dof: np.ndarray  # (22,) dof addresses
    obj_qadr: int  # free joint: qpos[obj_qadr : obj_qadr + 7] = pos (3), quat (4)
    obj_dadr: int
    obj_body: int
    palm_body: int
    hand_geoms: np.ndarray  # collision geoms of the hand (those that can touch the object)
    obj_geoms: np.ndarray
    joint_chain: list[np.ndarray]  # per finger joint: indices (0..21) of the joints of its finger
    tip_body: np.ndarray  # (22,) the distal body of each joint's finger
    body_moves: np.ndarray  # (nbody, 22) bool: body b is moved by finger joint j (in its subtree)
    geom_is_hand: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, bool))
    geom_is_obj: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, bool))

    def set_hand_pose(self, t: np.ndarray, R: np.ndarray, slide_axis: np.ndarray | None = None) -> None:
        """Place the palm at (t, R) in the world (= object) frame with the slide along world z, or
        along `slide_axis` (3,) given in the palm frame (the dexgraspbench protocol's approach).

        Writes ``model.body_pos`` / ``body_quat`` of ``hand_root`` and the slide's local axis
        (``R^T e_z`` for world z); every grasp sets all three, so the model never carries a previous
        grasp's pose.
        """
        m = self.model
        quat = np.zeros(4)
        mujoco.mju_mat2Quat(quat, np.ascontiguousarray(R, dtype=np.float64).reshape(9))
        m.body_pos[self.root_body] = t
        m.body_quat[self.root_body] = quat
        m.jnt_axis[self.lift_joint] = R[2, :] if slide_axis is None else slide_axis  # R^T e_z


def build_scene(obj: ObjectGeometry, cfg: LiftConfig, visual: bool = False) -> Scene:
    """Compile the lift-test model for one object (about 0.1 s; reuse it for all its grasps)."""
    return _index(scene_spec(obj, cfg, visual).compile())


def scene_spec(obj: ObjectGeometry, cfg: LiftConfig, visual: bool = False) -> mujoco.MjSpec:
    """The uncompiled model of :func:`build_scene` (a fresh ``MjSpec``: callers may edit it, e.g. to
    write an MJCF file with ``spec.to_xml()``)."""
    spec = build_hand_spec()
    spec.compiler.inertiafromgeom = mujoco.mjtInertiaFromGeom.mjINERTIAFROMGEOM_FALSE
    if not visual:  # visual meshes never collide; dropping them halves the build time
        used: set[str] = set()
        for g in list(spec.geoms):
            if g.type == mujoco.mjtGeom.mjGEOM_MESH and g.contype == 0 and g.conaffinity == 0:
                spec.delete(g)
            elif g.type == mujoco.mjtGeom.mjGEOM_MESH:
                used.add(g.meshname)
        for mesh in list(spec.meshes):
            if mesh.name not in used:
                spec.delete(mesh)

    opt = spec.option
    opt.timestep = cfg.timestep
    opt.gravity = [0.0, 0.0, -9.81]
    opt.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    opt.cone = mujoco.mjtCone.mjCONE_ELLIPTIC if cfg.cone == "elliptic" else mujoco.mjtCone.mjCONE_PYRAMIDAL
    opt.impratio = cfg.impratio
    opt.solver = {"newton": mujoco.mjtSolver.mjSOL_NEWTON, "cg": mujoco.mjtSolver.mjSOL_CG,
                  "pgs": mujoco.mjtSolver.mjSOL_PGS}[cfg.solver]  # fmt: skip
    opt.jacobian = mujoco.mjtJacobian.mjJAC_SPARSE if cfg.sparse else mujoco.mjtJacobian.mjJAC_DENSE
    opt.noslip_iterations = cfg.noslip_iterations
    if not cfg.refsafe:  # keep solref[0] even when < 2 * timestep
        opt.disableflags |= mujoco.mjtDisableBit.mjDSBL_REFSAFE
    if not cfg.joint_frictionloss:  # OpenAI's 0.001 N m: one always-active constraint row per joint
        opt.disableflags |= mujoco.mjtDisableBit.mjDSBL_FRICTIONLOSS

    root = spec.body(ROOT_BODY)  # pose set per grasp (model.body_pos / body_quat, see set_hand_pose)
    root.add_joint(name=LIFT_JOINT, type=mujoco.mjtJoint.mjJNT_SLIDE, axis=[0, 0, 1], armature=cfg.root_armature)
    for body in spec.bodies:
        if body.name not in ("world", ""):
            body.gravcomp = 1.0
    act = spec.add_actuator(name=f"A_{LIFT_JOINT}", target=LIFT_JOINT, trntype=mujoco.mjtTrn.mjTRN_JOINT)
    act.set_to_position(kp=cfg.root_kp, dampratio=1.0)
    for jname in JOINT_NAMES:
        act = spec.add_actuator(name=f"A_{jname}", target=jname, trntype=mujoco.mjtTrn.mjTRN_JOINT)
        act.set_to_position(kp=cfg.kp, kv=cfg.kv)
        act.forcelimited = mujoco.mjtLimited.mjLIMITED_TRUE
        lim = cfg.finger_force_limit or force_limit(jname)
        act.forcerange = [-lim, lim]
        act.ctrllimited = mujoco.mjtLimited.mjLIMITED_FALSE

    friction = [cfg.friction, cfg.torsional_friction, cfg.rolling_friction]
    for g in spec.geoms:
        if g.contype or g.conaffinity:  # hand collision geoms
            g.solref = list(cfg.solref)
            g.solimp = [*cfg.solimp, 0.5, 2.0]
            g.friction = friction
            g.condim = cfg.condim
            g.margin = 0.0

    body = spec.worldbody.add_body(name=OBJECT_BODY)
    body.add_freejoint(name="object_free")
    body.explicitinertial = True
    body.mass = cfg.object_mass
    body.ipos = obj.com.tolist()
    inertia = obj.inertia * cfg.object_mass
    body.fullinertia = [inertia[0, 0], inertia[1, 1], inertia[2, 2], inertia[0, 1], inertia[0, 2], inertia[1, 2]]
    for i, (v, f) in enumerate(obj.parts):
        mesh = spec.add_mesh(name=f"object_part_{i:03d}")
        mesh.uservert = v.reshape(-1).tolist()
        mesh.userface = f.reshape(-1).tolist()
        mesh.inertia = mujoco.mjtMeshInertia.mjMESH_INERTIA_CONVEX
        body.add_geom(
            name=f"object_part_{i:03d}", type=mujoco.mjtGeom.mjGEOM_MESH, meshname=mesh.name,
            contype=0, conaffinity=1, condim=cfg.condim, friction=friction,
            solref=list(cfg.solref), solimp=[*cfg.solimp, 0.5, 2.0], mass=0.0, rgba=[0.8, 0.5, 0.2, 1],
        )  # fmt: skip
    return spec


def _index(model: mujoco.MjModel) -> Scene:
    lift = model.joint(LIFT_JOINT).id
    fid = [model.joint(n).id for n in JOINT_NAMES]
    obj_body = model.body(OBJECT_BODY).id
    obj_jnt = model.body_jntadr[obj_body]
    hand_root = model.body(ROOT_BODY).id
    in_hand = np.array([_is_descendant(model, b, hand_root) for b in range(model.nbody)])
    gbody = model.geom_bodyid
    collide = (model.geom_contype != 0) | (model.geom_conaffinity != 0)
    geom_is_hand = in_hand[gbody] & collide
    geom_is_obj = gbody == obj_body
    jbody = model.jnt_bodyid[fid]
    body_moves = np.array([[_is_descendant(model, b, int(jb)) for jb in jbody] for b in range(model.nbody)])
    tips = [max(np.flatnonzero(body_moves[:, j]), key=lambda b: _depth(model, b)) for j in range(len(fid))]
    # the finger of joint j: joints whose body is on the path to its tip
    chains = [np.array([k for k in range(len(fid)) if tips[k] == tips[j]]) for j in range(len(fid))]
    return Scene(
        model=model,
        root_body=hand_root,
        lift_joint=lift,
        lift_qadr=int(model.jnt_qposadr[lift]),
        lift_dof=int(model.jnt_dofadr[lift]),
        finger_qadr=model.jnt_qposadr[fid].copy(),
        finger_dof=model.jnt_dofadr[fid].copy(),
        obj_qadr=int(model.jnt_qposadr[obj_jnt]),
        obj_dadr=int(model.jnt_dofadr[obj_jnt]),
        obj_body=obj_body,
        palm_body=model.body(PALM_BODY).id,
        hand_geoms=np.flatnonzero(geom_is_hand),
        obj_geoms=np.flatnonzero(geom_is_obj),
        joint_chain=chains,
        tip_body=np.array(tips),
        body_moves=body_moves,
        geom_is_hand=geom_is_hand,
        geom_is_obj=geom_is_obj,
    )


def _is_descendant(model: mujoco.MjModel, body: int, ancestor: int) -> bool:
    while body > 0:
        if body == ancestor:
            return True
        body = int(model.body_parentid[body])
    return ancestor == 0


def _depth(model: mujoco.MjModel, body: int) -> int:
    d = 0
    while body > 0:
        body = int(model.body_parentid[body])
        d += 1
    return d

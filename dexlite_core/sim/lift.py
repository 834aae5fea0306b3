"""MuJoCo lift test (write-up) and six-direction hold test (DexGraspNet / BODex), batched.

Scene (built once per object, reused for all its grasps with ``mj_resetData``):
  * the Shadow Hand of :mod:`dexlite_core.hand.asset`; its root ``hand_root`` is a free body welded
    to a mocap target, so it moves with real velocity and friction can carry the object
    (a mocap-driven hand cannot: simulation notes item 1); hand bodies are gravity-compensated;
  * 22 position actuators, one per finger joint, kp = ``LiftConfig.kp`` (5) and OpenAI's torque
    limits for the real hand (0.72-0.9 N m on fingers, up to 2.37 N m on the thumb);
  * hand collision geoms with MuJoCo Menagerie's contact softness, solref (0.005, 1) and solimp
    (0.5, 0.99, 1e-4) (notes item 3), friction ``LiftConfig.friction`` on hand and object;
  * the object as one free body whose geoms are its convex decomposition pieces, mass
    ``LiftConfig.object_mass`` (0.1 kg) with the inertia of its mesh scaled to that mass.

Protocol for a pose q (the palm frame in the object frame; the object starts at the origin):
  1. place the hand at q, the object at rest, gravity off; record the initial penetration depth
     (deepest hand-object contact after ``mj_forward``);
  2. close: finger targets move from q to q + squeeze * s over ``close_time`` (s = each joint's
     closing direction: +1 for finger flexion (J2, J1, J0, LFJ4, THJ3), -1 for the thumb's
     THJ1/THJ0 which flex negative (notes item 2), 0 for ab/adduction and thumb rotation),
     clipped to the joint range; record how far the object moved while the fingers closed;
  3. lift: gravity on; the mocap target rises ``lift_height`` (1 m) over ``lift_time`` with a
     smooth (cosine) profile, then holds ``hold_time``;
  4. success when (object rise) / (hand rise) > ``ratio_threshold`` (0.9); also recorded: the
     object's slip in the hand frame during lift and hold (notes item 6: a palm-up tray or a
     closed hand below the object can pass the ratio test; the slip and the six-direction test
     expose them);
  5. six-direction test (optional): from the closed state of step 2, gravity off, a force of
     m * 9.81 N pushes the object along +x, -x, +y, -y, +z, -z (world) for ``six_dir_time`` each;
     a direction passes when the object moves < 2 cm and turns < 15 deg; the grasp passes when all
     six do (checked every 0.1 s, stopping at the first failure).

The simulation is deterministic: the same poses give the same table, in any number of workers.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import mujoco
import numpy as np
import pandas as pd
import trimesh

from ..config import LiftConfig
from ..hand.asset import FINGER_JOINTS, JOINT_NAMES, PREFIX, ROOT_BODY, build_hand_spec
from ..hand.rotation import euler_to_matrix_np

# OpenAI's actuator force ranges for the real hand (shared.xml), per finger joint name suffix
FORCE_LIMITS = {"J3": 0.9, "J2": 0.9, "J1": 0.7245, "J0": 0.7245, "LFJ4": 0.9,
                "THJ4": 2.3722, "THJ3": 1.45, "THJ2": 0.99, "THJ1": 0.99, "THJ0": 0.81}  # fmt: skip


def closing_directions() -> np.ndarray:
    """`(22,)` closing sign of each finger joint (module docstring, step 2)."""
    signs = []
    for j in FINGER_JOINTS:
        if j.startswith("TH"):
            signs.append({"THJ4": 0.0, "THJ3": 1.0, "THJ2": 0.0, "THJ1": -1.0, "THJ0": -1.0}[j])
        elif j == "LFJ4":
            signs.append(1.0)
        else:
            signs.append(0.0 if j.endswith("J3") else 1.0)
    return np.array(signs)


def _force_limit(joint: str) -> float:
    return FORCE_LIMITS.get(joint, FORCE_LIMITS.get(joint[-2:], 0.9))


def build_scene(convex_parts: Sequence[trimesh.Trimesh], cfg: LiftConfig) -> mujoco.MjModel:
    """Compile the hand + object scene (module docstring)."""
    if not convex_parts:
        raise ValueError("the object has no collision geometry (no convex parts)")
    spec = build_hand_spec()
    spec.option.timestep = cfg.timestep
    spec.option.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    spec.option.cone = mujoco.mjtCone.mjCONE_ELLIPTIC
    spec.option.impratio = 10.0
    spec.option.gravity = [0.0, 0.0, -9.81]
    for body in spec.bodies:
        if body.name == ROOT_BODY or body.name.startswith(PREFIX):
            body.gravcomp = 1.0
    for geom in spec.geoms:
        if geom.contype:  # collision geoms (visual meshes have contype 0)
            geom.solref = [0.005, 1.0]
            geom.solimp = [0.5, 0.99, 1e-4, 0.5, 2.0]
            geom.friction = [cfg.friction, 0.02, 0.0001]
            geom.condim = 4
    root = spec.body(ROOT_BODY)
    root.add_freejoint(name="hand_free")
    root.mass, root.inertia, root.explicitinertial = 0.05, [1e-4, 1e-4, 1e-4], True
    target = spec.worldbody.add_body(name="hand_target", mocap=True)
    weld = spec.add_equality(
        name="hand_weld", type=mujoco.mjtEq.mjEQ_WELD, name1=ROOT_BODY, name2="hand_target"
    )
    weld.objtype = mujoco.mjtObj.mjOBJ_BODY
    weld.solref = [0.01, 1.0]
    assert target is not None
    for j in FINGER_JOINTS:
        lim = _force_limit(j)
        act = spec.add_actuator(name=f"A_{j}", target=PREFIX + j, trntype=mujoco.mjtTrn.mjTRN_JOINT)
        act.set_to_position(kp=cfg.kp)
        act.forcelimited, act.forcerange = True, [-lim, lim]

    obj = spec.worldbody.add_body(name="object")
    obj.add_freejoint(name="object_free")
    merged = trimesh.util.concatenate(list(convex_parts))
    hull = merged.convex_hull
    vol = float(hull.volume)
    inertia = hull.moment_inertia * (cfg.object_mass / vol) if vol > 1e-12 else np.eye(3) * 1e-6
    obj.mass, obj.explicitinertial = cfg.object_mass, True
    obj.ipos = hull.center_mass
    obj.fullinertia = [
        inertia[0, 0],
        inertia[1, 1],
        inertia[2, 2],
        inertia[0, 1],
        inertia[0, 2],
        inertia[1, 2],
    ]
    for i, part in enumerate(convex_parts):
        spec.add_mesh(
            name=f"object_part_{i}",
            uservert=np.asarray(part.vertices, dtype=np.float64).ravel(),
            userface=np.asarray(part.faces, dtype=np.int32).ravel(),
        )
        obj.add_geom(
            type=mujoco.mjtGeom.mjGEOM_MESH,
            meshname=f"object_part_{i}",
            contype=1,
            conaffinity=1,
            condim=4,
            friction=[cfg.friction, 0.02, 0.0001],
            density=0.0,
        )
    return spec.compile()


class LiftSimulator:
    """One compiled scene and its data; ``run(q)`` performs the protocol for one pose."""

    def __init__(self, convex_parts: Sequence[trimesh.Trimesh], cfg: LiftConfig) -> None:
        self.cfg = cfg
        self.model = build_scene(convex_parts, cfg)
        self.data = mujoco.MjData(self.model)
        m = self.model
        self.finger_qpos = np.array([m.jnt_qposadr[m.joint(n).id] for n in JOINT_NAMES])
        self.hand_qpos = m.jnt_qposadr[m.joint("hand_free").id]
        self.obj_qpos = m.jnt_qposadr[m.joint("object_free").id]
        self.obj_body = m.body("object").id
        self.root_body = m.body(ROOT_BODY).id
        self.mocap = m.body("hand_target").mocapid[0]
        self.ranges = m.jnt_range[[m.joint(n).id for n in JOINT_NAMES]]
        self.closing = closing_directions()
        geom_body = m.geom_bodyid
        self.obj_geoms = set(np.flatnonzero(geom_body == self.obj_body).tolist())
        self.steps_close = max(1, round(cfg.close_time / cfg.timestep))
        self.steps_lift = max(1, round(cfg.lift_time / cfg.timestep))
        self.steps_hold = max(1, round(cfg.hold_time / cfg.timestep))
        self.mass = float(m.body_subtreemass[self.obj_body])

    # -- helpers ---------------------------------------------------------------------------
    def _reset(self, q: np.ndarray) -> None:
        m, d = self.model, self.data
        mujoco.mj_resetData(m, d)
        R = euler_to_matrix_np(q[3:6])
        quat = np.zeros(4)
        mujoco.mju_mat2Quat(quat, R.ravel())
        d.qpos[self.hand_qpos : self.hand_qpos + 3] = q[:3]
        d.qpos[self.hand_qpos + 3 : self.hand_qpos + 7] = quat
        d.qpos[self.obj_qpos : self.obj_qpos + 7] = [0, 0, 0, 1, 0, 0, 0]
        d.qpos[self.finger_qpos] = q[6:]
        d.mocap_pos[self.mocap] = q[:3]
        d.mocap_quat[self.mocap] = quat
        d.ctrl[:] = np.clip(q[6:], self.ranges[:, 0], self.ranges[:, 1])
        m.opt.gravity[:] = 0.0
        mujoco.mj_forward(m, d)

    def _penetration(self) -> tuple[float, int]:
        d = self.data
        depth, n = 0.0, 0
        for i in range(d.ncon):
            c = d.contact[i]
            if (c.geom1 in self.obj_geoms) != (c.geom2 in self.obj_geoms):
                n += 1
                depth = max(depth, -float(c.dist))
        return depth, n

    def _obj_pose(self) -> tuple[np.ndarray, np.ndarray]:
        return self.data.xpos[self.obj_body].copy(), self.data.xquat[self.obj_body].copy()

    def _hand_pose(self) -> tuple[np.ndarray, np.ndarray]:
        return self.data.xpos[self.root_body].copy(), self.data.xmat[self.root_body].reshape(3, 3).copy()

    @staticmethod
    def _angle(q1: np.ndarray, q2: np.ndarray) -> float:
        return math.degrees(2 * math.acos(min(1.0, abs(float(np.dot(q1, q2))))))

    def _close(self, q: np.ndarray) -> None:
        m, d = self.model, self.data
        start = np.clip(q[6:], self.ranges[:, 0], self.ranges[:, 1])
        goal = np.clip(start + self.cfg.squeeze * self.closing, self.ranges[:, 0], self.ranges[:, 1])
        ramp = max(1, self.steps_close // 2)
        for k in range(self.steps_close):
            d.ctrl[:] = start + (goal - start) * min(1.0, (k + 1) / ramp)
            mujoco.mj_step(m, d)

    # -- the tests -------------------------------------------------------------------------
    def six_directions(self, snapshot: np.ndarray) -> bool:
        """From the closed-state snapshot, push along +-x, +-y, +-z (module docstring, step 5)."""
        m, d, cfg = self.model, self.data, self.cfg
        m.opt.gravity[:] = 0.0
        check_every = max(1, round(0.1 / cfg.timestep))
        steps = max(1, round(cfg.six_dir_time / cfg.timestep))
        ok = True
        for axis in range(3):
            for sign in (1.0, -1.0):
                mujoco.mj_setState(m, d, snapshot, mujoco.mjtState.mjSTATE_INTEGRATION)
                mujoco.mj_forward(m, d)
                p0, r0 = self._obj_pose()
                force = np.zeros(6)
                force[axis] = sign * self.mass * 9.81
                for k in range(steps):
                    d.xfrc_applied[self.obj_body] = force
                    mujoco.mj_step(m, d)
                    if (k + 1) % check_every == 0 or k == steps - 1:
                        p, r = self._obj_pose()
                        if (
                            np.linalg.norm(p - p0) >= cfg.six_dir_max_displacement
                            or self._angle(r, r0) >= cfg.six_dir_max_rotation_deg
                        ):
                            ok = False
                            break
                d.xfrc_applied[self.obj_body] = 0.0
                if not ok:
                    return False
        return True

    def run(self, q: np.ndarray, six_directions: bool = True) -> dict[str, Any]:
        m, d, cfg = self.model, self.data, self.cfg
        q = np.asarray(q, dtype=np.float64)
        self._reset(q)
        depth, n_contacts = self._penetration()
        obj0, _ = self._obj_pose()
        self._close(q)
        obj_closed, _ = self._obj_pose()
        moved = float(np.linalg.norm(obj_closed - obj0))
        _, n_closed = self._penetration()
        size = mujoco.mj_stateSize(m, mujoco.mjtState.mjSTATE_INTEGRATION)
        snapshot = np.empty(size)
        mujoco.mj_getState(m, d, snapshot, mujoco.mjtState.mjSTATE_INTEGRATION)

        hand0, hand_R0 = self._hand_pose()
        rel0 = hand_R0.T @ (obj_closed - hand0)
        m.opt.gravity[:] = [0.0, 0.0, -9.81]
        mocap0 = d.mocap_pos[self.mocap].copy()
        for k in range(self.steps_lift + self.steps_hold):
            s = min(1.0, (k + 1) / self.steps_lift)
            d.mocap_pos[self.mocap] = mocap0 + [0.0, 0.0, cfg.lift_height * 0.5 * (1 - math.cos(math.pi * s))]
            mujoco.mj_step(m, d)
        hand1, hand_R1 = self._hand_pose()
        obj1, _ = self._obj_pose()
        hand_rise = float(hand1[2] - hand0[2])
        ratio = float((obj1[2] - obj_closed[2]) / hand_rise) if abs(hand_rise) > 1e-6 else 0.0
        slip = float(np.linalg.norm(hand_R1.T @ (obj1 - hand1) - rel0))
        row = {
            "lift_success": bool(ratio > cfg.ratio_threshold and np.isfinite(ratio)),
            "lift_ratio": ratio,
            "object_moved_at_contact": moved,
            "penetration_depth": depth,
            "slip": slip,
            "n_contacts": n_closed,
            "n_contacts_initial": n_contacts,
        }
        row["six_dir_success"] = bool(self.six_directions(snapshot)) if six_directions else None
        return row


# -- batched API --------------------------------------------------------------------------------
def _check_poses(poses: np.ndarray) -> np.ndarray:
    poses = np.asarray(poses, dtype=np.float64)
    if poses.ndim != 2 or poses.shape[1] != 28:
        raise ValueError(f"poses must be (B, 28), got {poses.shape}")
    bad = np.flatnonzero(~np.isfinite(poses).all(axis=1))
    if len(bad):
        raise ValueError(f"{len(bad)} pose(s) hold NaN/inf; first at row {int(bad[0])}")
    return poses


def _parts_of(obj: Any) -> list[trimesh.Trimesh]:
    if isinstance(obj, (list, tuple)):
        return list(obj)
    if isinstance(obj, (str, Path)):
        from ..objects import load_object

        obj = load_object(Path(obj))
    return list(obj.convex_parts)


def _run_chunk(parts_data: list[tuple[np.ndarray, np.ndarray]], poses: np.ndarray, cfg_dict: dict,
               six: bool) -> list[dict]:  # fmt: skip
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    parts = [trimesh.Trimesh(v, f, process=False) for v, f in parts_data]
    sim = LiftSimulator(parts, LiftConfig(**cfg_dict))
    return [sim.run(q, six) for q in poses]


def lift_test(
    obj: Any,
    poses: np.ndarray,
    cfg: LiftConfig | None = None,
    workers: int = 1,
    six_directions: bool = True,
) -> pd.DataFrame:
    """Lift-test poses `(B, 28)` on one object (an ObjectAsset, its folder, or its convex parts).

    Returns one row per pose: lift_success, lift_ratio, object_moved_at_contact (m),
    penetration_depth (m), slip (m), n_contacts, six_dir_success.
    """
    cfg = cfg or LiftConfig()
    poses = _check_poses(poses)
    parts = _parts_of(obj)
    if len(poses) == 0:
        return pd.DataFrame(columns=list(_EMPTY_ROW))
    parts_data = [(np.asarray(p.vertices), np.asarray(p.faces)) for p in parts]
    if workers <= 1 or len(poses) < 2:
        rows = _run_chunk(parts_data, poses, asdict(cfg), six_directions)
    else:
        chunks = np.array_split(poses, min(workers, len(poses)))
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(_run_chunk, parts_data, c, asdict(cfg), six_directions) for c in chunks]
            rows = [r for f in futures for r in f.result()]
    return pd.DataFrame(rows)


_EMPTY_ROW = {
    "lift_success": False, "lift_ratio": 0.0, "object_moved_at_contact": 0.0, "penetration_depth": 0.0,
    "slip": 0.0, "n_contacts": 0, "n_contacts_initial": 0, "six_dir_success": None,
}  # fmt: skip


def evaluate_grasps(
    table: Any,
    objects_root: Path,
    cfg: LiftConfig | None = None,
    workers: int = 1,
    six_directions: bool = True,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Lift-test every grasp of a grasp table (object_id, q) against objects under `objects_root`.

    Returns the per-grasp table (input columns + results) and a summary with n, success_rate,
    six_direction_success_rate and per-object rates.
    """
    import pyarrow as pa

    df = table.to_pandas() if isinstance(table, pa.Table) else pd.DataFrame(table).copy()
    if not {"object_id", "q"} <= set(df.columns):
        raise ValueError("a grasp table needs columns object_id and q")
    df = df.reset_index(drop=True)
    results = []
    for oid, rows in df.groupby("object_id", sort=True):
        folder = Path(objects_root) / str(oid)
        if not folder.is_dir():
            raise FileNotFoundError(f"object {oid!r} not found under {objects_root}")
        poses = np.stack([np.asarray(v, dtype=np.float64) for v in rows["q"]])
        try:
            poses = _check_poses(poses)
        except ValueError as e:
            raise ValueError(f"object {oid!r}: {e}") from e
        res = lift_test(folder, poses, cfg, workers, six_directions)
        res.index = rows.index
        results.append(res)
    res = pd.concat(results).sort_index() if results else pd.DataFrame(columns=list(_EMPTY_ROW))
    out = df.drop(columns=[c for c in res.columns if c in df.columns]).join(res)
    return out, summarise(out)


def summarise(df: pd.DataFrame) -> dict[str, Any]:
    """n, success_rate, six_direction_success_rate and per-object rates of evaluated grasps."""
    n = int(len(df))
    six = df["six_dir_success"].dropna() if "six_dir_success" in df else pd.Series(dtype=bool)
    per_object = {
        str(o): {"n": int(len(g)), "success_rate": float(g["lift_success"].mean())}
        for o, g in df.groupby("object_id")
    } if n else {}  # fmt: skip
    return {
        "n": n,
        "success_rate": float(df["lift_success"].mean()) if n else 0.0,
        "six_direction_success_rate": float(six.astype(bool).mean()) if len(six) else None,
        "per_object": per_object,
    }

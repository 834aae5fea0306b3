"""MJCF scene files of grasps: the real Shadow Hand posed on an object, one file per object.

:func:`write_grasp_scene` writes ``<name>.xml``, the lift test's scene (:func:`dexlite_core.sim.scene.scene_spec`,
default :class:`~dexlite_core.config.LiftConfig`, visual meshes kept) with two changes so that one file
holds every grasp of its object:

- the hand's root body ``hand_root`` is a **mocap** body (its lift slide joint and servo removed), so a
  keyframe carries the palm pose (``mpos``, ``mquat``: the palm frame ``robot0:palm`` in the object
  frame, which is the world frame) next to the 22 finger angles (``qpos``) and the finger servo
  targets (``ctrl`` = the grasp's angles); the object's free joint starts at the origin, unrotated;
- the object's convex parts are referenced by the absolute path of ``<object>/convex/part_*.obj``
  (the hand's meshes by the absolute path of the gymnasium-robotics asset), so the file opens from
  wherever it is and is small; it needs the object folder and the installed asset where they are.

One keyframe per grasp, named by the caller (``grasp_<row>`` from the exporter), in the given order;
the model's default state has the palm at the first grasp (fingers straight). In
``python -m mujoco.viewer --mjcf <file>``: Simulation -> Key -> "Load key" shows a grasp. Pressing play
simulates the lift scene's physics with the hand held by the mocap body (gravity on the object only).

Why one file per object with keyframes, not one per grasp: the hand model (about 20 KB of XML) is
written once per object instead of once per grasp, and the viewer's key slider steps through the
grasps of an object. MuJoCo writes numbers with 6 significant digits, so a pose read back
(:func:`read_grasp_scene`) matches to about 1e-6 (rad / m), and body positions to well under 1e-4 m.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import mujoco
import numpy as np

from dexlite_core.atomic import atomic_write_bytes
from dexlite_core.config import LiftConfig
from dexlite_core.hand.asset import JOINT_NAMES, POSE_DIM, ROOT_BODY
from dexlite_core.hand.euler_np import euler_to_matrix_np, matrix_to_euler_np
from dexlite_core.sim.lift import check_poses, object_geometry
from dexlite_core.sim.scene import LIFT_JOINT, OBJECT_BODY, scene_spec

OBJECT_JOINT = "object_free"


def _quat(R: np.ndarray) -> np.ndarray:
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, np.ascontiguousarray(R, dtype=np.float64).reshape(9))
    return quat


def grasp_scene_spec(
    object_dir: str | os.PathLike[str],
    poses: np.ndarray,
    names: Sequence[str] | None = None,
    cfg: LiftConfig | None = None,
) -> mujoco.MjSpec:
    """The scene of the module docstring for a complete object folder and poses `(K, 28)` (K >= 1),
    keyframes named `names` (default ``grasp_<k>``)."""
    folder = Path(object_dir).resolve()
    q = check_poses(poses, f"{folder.name}: ")
    if len(q) == 0:
        raise ValueError(f"{folder}: no poses to write")
    names = [f"grasp_{k}" for k in range(len(q))] if names is None else [str(n) for n in names]
    if len(names) != len(q) or len(set(names)) != len(names):
        raise ValueError(f"{folder}: need {len(q)} distinct keyframe names, got {len(names)}")
    spec = scene_spec(object_geometry(folder), cfg or LiftConfig(), visual=True)
    parts = sorted((folder / "convex").glob("part_*.obj"))  # the files object_geometry read, in order
    for i, f in enumerate(parts):
        mesh = spec.mesh(f"object_part_{i:03d}")
        mesh.file = str(f)
        mesh.uservert = []
        mesh.userface = []
    spec.delete(spec.actuator(f"A_{LIFT_JOINT}"))
    spec.delete(spec.joint(LIFT_JOINT))
    root = spec.body(ROOT_BODY)
    root.mocap = True
    R = euler_to_matrix_np(q[:, 3:6])  # (K, 3, 3)
    root.pos = q[0, :3].tolist()
    root.quat = _quat(R[0]).tolist()
    model = spec.compile()  # for the qpos layout
    fq = model.jnt_qposadr[[model.joint(n).id for n in JOINT_NAMES]]
    oq = int(model.jnt_qposadr[model.joint(OBJECT_JOINT).id])
    for k in range(len(q)):
        qpos = model.qpos0.copy()
        qpos[fq] = q[k, 6:]
        qpos[oq : oq + 7] = [0, 0, 0, 1, 0, 0, 0]
        spec.add_key(name=names[k], qpos=qpos.tolist(), mpos=q[k, :3].tolist(), mquat=_quat(R[k]).tolist(),
                     ctrl=q[k, 6:].tolist())  # fmt: skip
    return spec


def write_grasp_scene(
    object_dir: str | os.PathLike[str],
    poses: np.ndarray,
    path: str | os.PathLike[str],
    names: Sequence[str] | None = None,
    cfg: LiftConfig | None = None,
) -> Path:
    """Write :func:`grasp_scene_spec` as an MJCF file at `path` (atomically); return the path."""
    xml = grasp_scene_spec(object_dir, poses, names, cfg).to_xml()
    return atomic_write_bytes(path, xml.encode())


def read_grasp_scene(path: str | os.PathLike[str]) -> tuple[list[str], np.ndarray]:
    """Keyframe names and poses `(K, 28)` float64 of a file :func:`write_grasp_scene` wrote (euler
    angles canonical: ry in [-pi/2, pi/2]). Loads it with MuJoCo, so the files it references must exist."""
    model = mujoco.MjModel.from_xml_path(os.fspath(path))
    if model.nmocap != 1 or model.body(ROOT_BODY).mocapid[0] != 0 or OBJECT_BODY not in _body_names(model):
        raise ValueError(f"{path}: not a DexLite grasp scene (no mocap {ROOT_BODY!r} / {OBJECT_BODY!r} body)")
    fq = model.jnt_qposadr[[model.joint(n).id for n in JOINT_NAMES]]
    q = np.zeros((model.nkey, POSE_DIM))
    R = np.zeros((model.nkey, 9))
    for k in range(model.nkey):
        mujoco.mju_quat2Mat(R[k], model.key_mquat[k, :4])
    q[:, :3] = model.key_mpos[:, :3]
    q[:, 3:6] = matrix_to_euler_np(R.reshape(-1, 3, 3))
    q[:, 6:] = model.key_qpos[:, fq]
    return [model.key(k).name for k in range(model.nkey)], q


def _body_names(model: mujoco.MjModel) -> set[str]:
    return {model.body(b).name for b in range(model.nbody)}

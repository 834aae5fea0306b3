"""Export grasps as DexGraspBench (DGB) grasp files, and read them back.

**File.** DGB evaluates one grasp per ``.npy`` file (``src/task/evaluation.py`` globs
``<grasp_dir>/**/*.npy``; its converters write ``graspdata/<object>/scale006_pose000/<i>.npy``): ``np.save``
of one dict with

- ``pregrasp_qpos``, ``grasp_qpos``, ``squeeze_qpos``: float64 ``(29,)``: the hand root's free-joint
  pose ``[x, y, z, qw, qx, qy, qz]`` then the 22 joints in DGB's order :data:`DGB_JOINT_NAMES` (Menagerie's
  names: FFJ4..FFJ1, MFJ4..MFJ1, RFJ4..RFJ1, LFJ5..LFJ1, THJ5..THJ1);
- ``obj_path`` (str): the object folder, MeshProcess layout (``urdf/meshes/convex_piece_*.obj``,
  ``info/simplified.json``, ``mesh/simplified.obj``); ``obj_scale`` (float): the factor DGB multiplies
  those meshes by; ``obj_pose``: ``[0, 0, 0, 1, 0, 0, 0]`` (object frame = world frame).

**Layout** (:func:`export_dexgraspbench`): ``<out>/graspdata/<object_id>/<row>.npy`` (``row``: the grasp's
0-based row in the exported table; our object ids already carry the scale, so there is no
``scaleXXX_poseYYY`` level) and ``<out>/objects/<object_id>/`` the MeshProcess folder, written from our
object folder: the convex parts and ``mesh.obj`` divided by ``obj_scale`` =
:func:`storage.dexgraspnet.dexgraspnet_scale` of ``mesh.obj`` (DGN's normalisation, as DGB's objects),
``info/simplified.json`` ``{scale: 1, density: 1, mass: volume}`` (DGB rescales the density so the
object weighs its ``obj_mass``). ``<out>`` plays DGB's ``save_dir`` (its ``grasp_dir`` is
``${save_dir}/graspdata``).

**Frame.** Our pose places ``robot0:palm`` (OpenAI asset) in the object frame. DGB's hand
(``assets/hand/shadow/right_hand.xml``, Menagerie minus forearm and wrist) has its free joint on the XML's
world frame, with ``rh_palm`` at ``pos="0 0 0.034"``, unrotated; DGB's BODex converter shifts the URDF
palm poses by ``-R [0, 0, 0.034]`` (``src/task/convert_format.py``) for that reason. The two palm frames
coincide (same knuckle offsets; checked below), so the root is ``p = t - R [0, 0, 0.034]``, ``quat(R)``
(w >= 0), and back ``t = p + R [0, 0, 0.034]``.

**Joints.** Menagerie's names are ours shifted by one (J3/J2/J1/J0 -> J4/J3/J2/J1, LFJ4 -> LFJ5,
THJ4..THJ0 -> THJ5..THJ1) and four axes point the other way: FF/MF ab/adduction (FFJ4, MFJ4: axis
-y vs our +y), THJ2 (axis -y vs +y) and THJ1 (distal frame turned -90 deg about z: our -1.571..0 is its
0..1.571); :data:`DGB_JOINT_SIGNS`. Checked by forward kinematics of DGB's XML (meshes stripped)
against our hand on 100 random in-range poses: fingertips 3 cm out along every distal link agree
to 0 mm (FF/MF/RF), 1.8 mm (LF: Menagerie's metacarpal sits elsewhere) and 0.42 mm (thumb base offset),
where flipping any one sign moves a tip by 23-198 mm. Our joint ranges map inside DGB's.

**Pregrasp and squeeze** are our ``dexgraspbench`` protocol's (:mod:`dexlite_core.sim.dexgraspbench`):
:meth:`~dexlite_core.sim.dexgraspbench.DexGraspBenchSimulator.pregrasp` opens the joints that close onto
the object by ``pregrasp_open`` (squeeze = 2 grasp - pregrasp), and the pregrasp palm backs off
``pregrasp_backoff`` along ``-APPROACH_AXIS`` (palm +y); the squeeze palm is the grasp's.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dexlite_core.atomic import atomic_path, atomic_write_bytes
from dexlite_core.config import DexGraspBenchConfig
from dexlite_core.hand.asset import FINGER_JOINTS, N_JOINTS, POSE_DIM
from dexlite_core.hand.euler_np import euler_to_matrix_np, matrix_to_euler_np
from storage.dexgraspnet import load_pickled_npy

_MEN = {"J3": "J4", "J2": "J3", "J1": "J2", "J0": "J1"}
DGB_JOINT_NAMES: tuple[str, ...] = tuple(
    "rh_" + (f"LFJ{int(j[-1]) + 1}" if j.startswith("LF") else f"THJ{int(j[-1]) + 1}" if j.startswith("TH")
             else j[:2] + _MEN[j[2:]])
    for j in FINGER_JOINTS
)  # fmt: skip
DGB_JOINT_SIGNS: np.ndarray = np.array([-1, 1, 1, 1, -1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, -1, -1], float)
PALM_OFFSET: np.ndarray = np.array([0.0, 0.0, 0.034])  # rh_palm in DGB's hand XML world frame
DGB_QPOS_DIM = 7 + N_JOINTS
QPOS_KEYS: tuple[str, ...] = ("pregrasp_qpos", "grasp_qpos", "squeeze_qpos")
OBJ_POSE_IDENTITY: tuple[float, ...] = (0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0)

assert len(DGB_JOINT_NAMES) == N_JOINTS and DGB_JOINT_NAMES[12] == "rh_LFJ5" and DGB_JOINT_NAMES[-1] == "rh_THJ1"


class DexGraspBenchFormatError(ValueError):
    """A DexGraspBench grasp file does not have the expected structure (names the file and key)."""


def _matrix_to_quat(R: np.ndarray) -> np.ndarray:
    """`(..., 3, 3)` -> `(..., 4)` unit quaternions ``[w, x, y, z]`` with w >= 0."""
    from scipy.spatial.transform import Rotation

    R = np.asarray(R, dtype=np.float64)
    xyzw = Rotation.from_matrix(R.reshape(-1, 3, 3)).as_quat()
    wxyz = np.concatenate([xyzw[:, 3:], xyzw[:, :3]], axis=1)
    wxyz *= np.where(wxyz[:, :1] < 0, -1.0, 1.0)
    return wxyz.reshape(*R.shape[:-2], 4)


def _quat_to_matrix(quat: np.ndarray) -> np.ndarray:
    """`(..., 4)` ``[w, x, y, z]`` (normalised here) -> `(..., 3, 3)`."""
    from scipy.spatial.transform import Rotation

    quat = np.asarray(quat, dtype=np.float64)
    wxyz = quat.reshape(-1, 4)
    R = Rotation.from_quat(np.concatenate([wxyz[:, 1:], wxyz[:, :1]], axis=1)).as_matrix()
    return R.reshape(*quat.shape[:-1], 3, 3)


def pose_to_dgb_qpos(q: np.ndarray) -> np.ndarray:
    """Our poses `(..., 28)` -> DGB qpos `(..., 29)` float64 (root pose, then DGB's joint order/signs)."""
    q = np.asarray(q, dtype=np.float64)
    if q.shape[-1] != POSE_DIM:
        raise ValueError(f"poses must have {POSE_DIM} values in the last axis, got shape {q.shape}")
    R = euler_to_matrix_np(q[..., 3:6])
    out = np.empty((*q.shape[:-1], DGB_QPOS_DIM))
    out[..., :3] = q[..., :3] - R @ PALM_OFFSET
    out[..., 3:7] = _matrix_to_quat(R)
    out[..., 7:] = q[..., 6:] * DGB_JOINT_SIGNS
    return out


def dgb_qpos_to_pose(qpos: np.ndarray) -> np.ndarray:
    """Inverse of :func:`pose_to_dgb_qpos`: `(..., 29)` -> `(..., 28)` float64, euler angles canonical
    (ry in [-pi/2, pi/2], as :func:`~dexlite_core.hand.euler_np.matrix_to_euler_np`)."""
    qpos = np.asarray(qpos, dtype=np.float64)
    if qpos.shape[-1] != DGB_QPOS_DIM:
        raise ValueError(f"DexGraspBench qpos must have {DGB_QPOS_DIM} values in the last axis, got {qpos.shape}")
    R = _quat_to_matrix(qpos[..., 3:7])
    out = np.empty((*qpos.shape[:-1], POSE_DIM))
    out[..., :3] = qpos[..., :3] + R @ PALM_OFFSET
    out[..., 3:6] = matrix_to_euler_np(R)
    out[..., 6:] = qpos[..., 7:] * DGB_JOINT_SIGNS
    return out


def grasp_entries(
    poses: np.ndarray, object_dir: str | os.PathLike[str], cfg: DexGraspBenchConfig | None = None
) -> list[dict[str, np.ndarray]]:
    """Per pose `(N, 28)` of one object: ``{pregrasp_qpos, grasp_qpos, squeeze_qpos}`` (29,) each,
    pregrasp and squeeze from our protocol's rule (module docstring; one MuJoCo scene per call)."""
    from dexlite_core.sim.dexgraspbench import APPROACH_AXIS, DexGraspBenchSimulator
    from dexlite_core.sim.lift import check_poses, object_geometry

    cfg = cfg or DexGraspBenchConfig()
    q = check_poses(poses, f"{Path(object_dir).name}: ")
    sim = DexGraspBenchSimulator(object_geometry(Path(object_dir)), cfg)
    out = []
    for qk in q:
        pre_joints, squeeze_joints, _ = sim.pregrasp(qk)
        R = euler_to_matrix_np(qk[3:6])
        pre = np.concatenate([qk[:3] - cfg.pregrasp_backoff * (R @ APPROACH_AXIS), qk[3:6], pre_joints])
        squeeze = np.concatenate([qk[:6], squeeze_joints])
        pre_d, grasp_d, squeeze_d = pose_to_dgb_qpos(np.stack([pre, qk, squeeze]))
        out.append({"pregrasp_qpos": pre_d, "grasp_qpos": grasp_d, "squeeze_qpos": squeeze_d})
    return out


def write_dexgraspbench_npy(
    path: str | os.PathLike[str], qpos: dict[str, np.ndarray], obj_path: str, obj_scale: float,
    obj_pose: Sequence[float] = OBJ_POSE_IDENTITY,
) -> Path:  # fmt: skip
    """Write one DGB grasp file (module docstring) atomically; `qpos`: the three ``*_qpos`` arrays."""
    data: dict[str, Any] = {
        "obj_path": str(obj_path),
        "obj_scale": float(obj_scale),
        "obj_pose": np.asarray(obj_pose, dtype=np.float64).reshape(7),
    }
    for k in QPOS_KEYS:
        data[k] = np.asarray(qpos[k], dtype=np.float64).reshape(DGB_QPOS_DIM)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, data, allow_pickle=True)
    return Path(path)


def read_dexgraspbench_npy(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load and check one DGB grasp file: the dict with ``obj_path`` (str), ``obj_scale`` (float > 0),
    ``obj_pose`` (7,) and the three ``*_qpos`` (29,) float64 arrays (``approach_qpos`` / ``lift_qpos``
    kept if present). Only load files you trust (pickle). Raises FileNotFoundError or
    :class:`DexGraspBenchFormatError` naming the file and the key."""
    name = os.fspath(path)
    data = load_pickled_npy(path, "DexGraspBench", DexGraspBenchFormatError)
    if not isinstance(data, dict):
        raise DexGraspBenchFormatError(f"{name}: expected a pickled dict, got {type(data).__name__}")
    missing = [k for k in (*QPOS_KEYS, "obj_path", "obj_scale", "obj_pose") if k not in data]
    if missing:
        raise DexGraspBenchFormatError(f"{name}: lacks {missing} (keys: {sorted(map(str, data))})")
    out = dict(data)
    for k, dim in ((k, DGB_QPOS_DIM) for k in QPOS_KEYS):
        try:
            arr = np.asarray(data[k], dtype=np.float64)
        except (TypeError, ValueError) as e:
            raise DexGraspBenchFormatError(f"{name}: {k} is not numeric ({e})") from e
        if arr.shape != (dim,) or not np.isfinite(arr).all():
            raise DexGraspBenchFormatError(f"{name}: {k} must be {dim} finite numbers, got shape {arr.shape}")
        norm = float(np.linalg.norm(arr[3:7]))
        if abs(norm - 1.0) > 1e-3:
            raise DexGraspBenchFormatError(f"{name}: {k}[3:7] is not a unit quaternion (norm {norm:.4g})")
        out[k] = arr
    pose = np.asarray(data["obj_pose"], dtype=np.float64).reshape(-1)
    if pose.shape != (7,) or not np.isfinite(pose).all():
        raise DexGraspBenchFormatError(f"{name}: obj_pose must be 7 finite numbers [x y z qw qx qy qz]")
    out["obj_pose"] = pose
    try:
        scale = float(data["obj_scale"])
    except (TypeError, ValueError) as e:
        raise DexGraspBenchFormatError(f"{name}: obj_scale is not a number") from e
    if not (math.isfinite(scale) and scale > 0):
        raise DexGraspBenchFormatError(f"{name}: obj_scale must be > 0, got {scale}")
    out["obj_scale"] = scale
    out["obj_path"] = str(data["obj_path"])
    return out


def _obj_text(vertices: np.ndarray, faces: np.ndarray) -> bytes:
    lines = [f"v {x:.9g} {y:.9g} {z:.9g}" for x, y, z in np.asarray(vertices, dtype=np.float64)]
    lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in np.asarray(faces, dtype=np.int64)]
    return ("\n".join(lines) + "\n").encode()


def write_meshprocess_object(object_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str]) -> tuple[Path, float]:
    """DGB's object folder (MeshProcess layout, module docstring) for one of our object folders at
    `out_dir`; returns ``(out_dir, obj_scale)``. Each file is written atomically."""
    import trimesh
    from scipy.spatial import ConvexHull

    from dexlite_core.sim.lift import object_geometry
    from storage.dexgraspnet import dexgraspnet_scale

    src, out = Path(object_dir), Path(out_dir)
    mesh_file = src / "mesh.obj"
    if not mesh_file.is_file():
        raise FileNotFoundError(f"{mesh_file}: object mesh not found")
    try:
        mesh = trimesh.load(mesh_file, force="mesh", process=False)
    except Exception as e:  # noqa: BLE001 - name the file and the reason
        raise ValueError(f"{mesh_file}: unreadable mesh ({e})") from e
    scale = dexgraspnet_scale(mesh.vertices)
    geom = object_geometry(src)
    volume = 0.0
    for i, (v, f) in enumerate(geom.parts):
        vn = v / scale
        atomic_write_bytes(out / "urdf" / "meshes" / f"convex_piece_{i:03d}.obj", _obj_text(vn, f))
        try:
            volume += float(ConvexHull(vn).volume)
        except Exception:  # noqa: BLE001 - a flat part weighs nothing
            pass
    atomic_write_bytes(out / "mesh" / "simplified.obj", _obj_text(np.asarray(mesh.vertices) / scale, mesh.faces))
    extents = (np.asarray(mesh.vertices).max(0) - np.asarray(mesh.vertices).min(0)) / scale
    info = {"scale": 1.0, "density": 1.0, "mass": volume, "gravity_center": (geom.com / scale).tolist(),
            "obb": extents.tolist()}  # fmt: skip
    atomic_write_bytes(out / "info" / "simplified.json", json.dumps(info, indent=1).encode())
    return out, scale


def export_dexgraspbench(
    poses: np.ndarray,
    rows: Sequence[int],
    object_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    cfg: DexGraspBenchConfig | None = None,
) -> list[Path]:
    """One object's grasps `(N, 28)` as DGB files ``<out>/graspdata/<object_id>/<row>.npy`` plus its
    MeshProcess folder ``<out>/objects/<object_id>/`` (module docstring); returns the grasp files."""
    src, root = Path(object_dir), Path(out).resolve()
    oid = src.name
    obj_dir, scale = write_meshprocess_object(src, root / "objects" / oid)
    entries = grasp_entries(poses, src, cfg)
    if len(rows) != len(entries):
        raise ValueError(f"{oid}: {len(rows)} row numbers for {len(entries)} poses")
    return [write_dexgraspbench_npy(root / "graspdata" / oid / f"{int(r)}.npy", e, str(obj_dir), scale)
            for r, e in zip(rows, entries, strict=True)]  # fmt: skip

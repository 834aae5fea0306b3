"""The real Shadow Hand: the MJCF and meshes shipped in `gymnasium-robotics`, loaded offline.

We keep OpenAI's asset (`gymnasium_robotics/envs/assets/hand/reach.xml`, the one DexGraspNet also
uses) and rebuild it, with `mujoco.MjSpec`, into a *free-floating right hand rooted at the palm*:

1. the forearm, the wrist body and both wrist joints (WRJ1, WRJ0) are dropped; the 6-DoF root pose
   of the pose vector replaces them (the palm frame is the root: origin at the wrist end of the
   palm, fingers along +z, palmar side towards -y);
2. sensors, actuators and tendons are dropped: the fixed tendons couple J0 to J1 (DIP to PIP) and
   the optimiser, like DexGraspNet's, treats all 22 finger joints as free. Simulation adds its own
   actuators (see :mod:`dexlite_core.sim.lift`);
3. the palm body hangs from an empty body ``hand_root`` at the world origin, where simulation
   attaches a free joint;
4. the explicit finger-finger contact pairs, which the asset lists twice, are kept once.

Joint order is DexGraspNet's: FFJ3..FFJ0, MFJ3..MFJ0, RFJ3..RFJ0, LFJ4..LFJ0, THJ4..THJ0.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import mujoco
import numpy as np

PREFIX = "robot0:"
FINGER_JOINTS: tuple[str, ...] = (
    *(f"FFJ{i}" for i in (3, 2, 1, 0)),
    *(f"MFJ{i}" for i in (3, 2, 1, 0)),
    *(f"RFJ{i}" for i in (3, 2, 1, 0)),
    *(f"LFJ{i}" for i in (4, 3, 2, 1, 0)),
    *(f"THJ{i}" for i in (4, 3, 2, 1, 0)),
)
JOINT_NAMES: tuple[str, ...] = tuple(PREFIX + j for j in FINGER_JOINTS)
ROOT_NAMES: tuple[str, ...] = ("tx", "ty", "tz", "rx", "ry", "rz")
POSE_NAMES: tuple[str, ...] = ROOT_NAMES + FINGER_JOINTS
N_JOINTS = 22
POSE_DIM = 28
ROOT_BODY = "hand_root"
PALM_BODY = PREFIX + "palm"


class HandAssetError(RuntimeError):
    """The Shadow Hand asset cannot be found or loaded."""


def asset_dir() -> Path:
    """Folder holding gymnasium-robotics' hand MJCF files (found without importing the package)."""
    spec = importlib.util.find_spec("gymnasium_robotics")
    if spec is None or spec.origin is None:
        raise HandAssetError(
            "the Shadow Hand asset comes from the 'gymnasium-robotics' package, which is not installed"
        )
    folder = Path(spec.origin).parent / "envs" / "assets" / "hand"
    if not (folder / "reach.xml").is_file():
        raise HandAssetError(f"no reach.xml under {folder}: is gymnasium-robotics complete?")
    return folder


def mesh_dir() -> Path:
    return asset_dir().parent / "stls" / "hand"


def build_hand_spec() -> mujoco.MjSpec:
    """A fresh `MjSpec` of the palm-rooted free hand (see module docstring). Callers may edit it."""
    spec = mujoco.MjSpec.from_file(str(asset_dir() / "reach.xml"))
    spec.meshdir = str(mesh_dir())
    spec.texturedir = str(asset_dir().parent / "textures")
    for kind in (spec.sensors, spec.actuators, spec.tendons):
        for element in list(kind):
            spec.delete(element)
    spec.copy_during_attach = True
    root = spec.worldbody.add_body(name=ROOT_BODY)
    root.add_frame().attach_body(spec.body(PALM_BODY), "", "")
    spec.delete(spec.body(PREFIX + "hand mount"))  # forearm, wrist and the original palm
    spec.delete(spec.body("floor0"))
    for geom in list(spec.geoms):
        if geom.name == "floor0":
            spec.delete(geom)
    palm = spec.body(PALM_BODY)
    palm.pos = [0.0, 0.0, 0.0]
    spec.delete(spec.joint(PREFIX + "WRJ0"))
    seen: set[tuple[str, ...]] = set()
    for pair in list(spec.pairs):  # the asset lists each finger-finger contact pair twice
        key = tuple(sorted((pair.geomname1, pair.geomname2)))
        if key in seen:
            spec.delete(pair)
        seen.add(key)
    return spec


@functools.lru_cache(maxsize=1)
def hand_model() -> mujoco.MjModel:
    """Compiled model of :func:`build_hand_spec` (cached; treat as read-only)."""
    model = build_hand_spec().compile()
    names = tuple(model.joint(i).name for i in range(model.njnt))
    if names != JOINT_NAMES:
        raise HandAssetError(f"unexpected joint order in the hand asset: {names}")
    return model


def joint_limits() -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper limits of the 22 finger joints, read from the MJCF: two (22,) arrays."""
    rng = np.asarray(hand_model().jnt_range, dtype=np.float64)
    return rng[:, 0].copy(), rng[:, 1].copy()

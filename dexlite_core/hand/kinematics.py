"""Batched forward kinematics of the Shadow Hand with pytorch_kinematics.

pytorch_kinematics parses the flattened MJCF that :func:`dexlite_core.hand.asset.build_hand_spec`
writes. Its MJCF parser (0.10.0) keys the joint-type map by MuJoCo enums while current mujoco hands
it `np.int32` values (``KeyError: np.int32(3)``); :func:`_patch_pk_joint_types` adds plain-int keys,
the one place this is worked around (tested in ``tests/test_hand.py``).
"""

from __future__ import annotations

import functools

import mujoco
import pytorch_kinematics as pk
import pytorch_kinematics.mjcf as pk_mjcf
import torch

from .asset import JOINT_NAMES, PALM_BODY, build_hand_spec


def _patch_pk_joint_types() -> None:
    """Let pytorch_kinematics' MJCF parser accept `np.int32` joint types (idempotent)."""
    # The enum keys hash like ints but compare unequal to np.int32: re-key the map with plain ints.
    fixed = {int(key): value for key, value in pk_mjcf.JOINT_TYPE_MAP.items()}
    fixed.setdefault(int(mujoco.mjtJoint.mjJNT_HINGE), "revolute")
    fixed.setdefault(int(mujoco.mjtJoint.mjJNT_SLIDE), "prismatic")
    pk_mjcf.JOINT_TYPE_MAP.clear()
    pk_mjcf.JOINT_TYPE_MAP.update(fixed)


@functools.lru_cache(maxsize=1)
def _hand_xml() -> str:
    return build_hand_spec().to_xml()


def build_chain(dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> pk.Chain:
    """pytorch_kinematics chain rooted at the palm, joints in :data:`JOINT_NAMES` order."""
    _patch_pk_joint_types()
    chain = pk.build_chain_from_mjcf(_hand_xml(), body=PALM_BODY)
    names = tuple(chain.get_joint_parameter_names())
    if names != JOINT_NAMES:
        raise RuntimeError(f"pytorch_kinematics joint order differs from the asset: {names}")
    return chain.to(dtype=dtype, device=device)


class HandKinematics:
    """Link poses of the hand in the palm frame for a batch of joint vectors.

    ``link_transforms(joints)`` steps:
      1. pytorch_kinematics composes every frame's transform from the joint angles
         (its analytical-Jacobian backward keeps this cheap under autograd);
      2. the frames of the links we use are gathered in ``link_names`` order.
    """

    def __init__(self, link_names: list[str], dtype: torch.dtype, device: torch.device | str) -> None:
        self.chain = build_chain(dtype, device)
        self.link_names = list(link_names)
        self._frame_idx = self.chain.get_frame_indices(*self.link_names).to(device)

    def link_transforms(self, joints: torch.Tensor) -> torch.Tensor:
        """Args: joints `(B, 22)`. Returns `(B, L, 4, 4)` palm-frame transforms of ``link_names``."""
        all_frames = self.chain.forward_kinematics_tensor(joints)  # (F, B, 4, 4)
        return all_frames.index_select(0, self._frame_idx).transpose(0, 1)

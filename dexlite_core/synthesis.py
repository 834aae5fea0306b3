"""Grasp synthesis by energy optimisation: seed grasps from scratch and post-optimisation.

Both run :class:`~dexlite_core.optim.annealing.AnnealingOptimizer` on one object at a time with
all its poses in one batch `(B, 28)`; they differ only in where the poses start (DexGraspNet
initialisation vs. network samples) and in the annealing schedule.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import trimesh

from .config import AnnealingConfig, EnergyConfig, SeedConfig
from .energy import TERMS, ObjectField, grasp_energy
from .hand.model import HandModel
from .optim.annealing import AnnealingOptimizer, AnnealingState
from .optim.init import initial_poses


@functools.lru_cache(maxsize=4)
def hand_on(device: str, dtype: torch.dtype = torch.float32) -> HandModel:
    """One hand model per device (building one reads the MJCF and derives the geometry)."""
    return HandModel(device=device, dtype=dtype)


def object_field(obj, device: torch.device, dtype: torch.dtype = torch.float32) -> ObjectField:
    """The energy's view of an ingested object (:class:`dexlite_core.objects.ObjectAsset`)."""
    points = torch.as_tensor(np.asarray(obj.points), dtype=dtype, device=device)
    return ObjectField(obj.sdf.to(device), points)


@dataclass
class OptimisedGrasps:
    q: np.ndarray  # (B, 28) float32
    contact_idx: np.ndarray  # (B, K) int
    terms: dict[str, np.ndarray]  # E_fc ... E_joints, energy: each (B,)
    history: list[dict[str, float]]


def _result(state: AnnealingState) -> OptimisedGrasps:
    terms = {k: state.terms.as_dict()[k].cpu().numpy().astype(np.float32) for k in TERMS}
    terms["energy"] = state.terms.total.cpu().numpy().astype(np.float32)
    return OptimisedGrasps(
        state.q.detach().cpu().numpy().astype(np.float32), state.idx.cpu().numpy(), terms, state.history
    )


def optimise(
    field: ObjectField,
    q0: torch.Tensor,
    idx0: torch.Tensor,
    annealing: AnnealingConfig,
    energy: EnergyConfig,
    seed: int = 0,
    progress: Callable[[AnnealingState], None] | None = None,
) -> OptimisedGrasps:
    """Run the annealing optimiser on poses `q0 (B, 28)` with contacts `idx0 (B, K)`."""
    device = q0.device
    hand = hand_on(str(device), q0.dtype)
    gen = torch.Generator(device=device).manual_seed(seed)
    opt = AnnealingOptimizer(
        lambda q, i: grasp_energy(hand, field, q, i, energy), hand.n_candidates, annealing, gen
    )
    return _result(opt.run(q0, idx0, callback=progress))


def seed_grasps(
    mesh: trimesh.Trimesh,
    field: ObjectField,
    n: int,
    seed_cfg: SeedConfig,
    energy: EnergyConfig,
    seed: int = 0,
    progress: Callable[[AnnealingState], None] | None = None,
) -> OptimisedGrasps:
    """`n` grasps optimised from DexGraspNet-style initial poses around `mesh`."""
    device = field.points.device
    hand = hand_on(str(device), field.points.dtype)
    q0, idx0 = initial_poses(
        hand, mesh, n, seed_cfg, energy.n_contacts, generator=torch.Generator().manual_seed(seed)
    )
    return optimise(field, q0, idx0, seed_cfg.annealing, energy, seed=seed + 1, progress=progress)


def contact_indices_for(hand: HandModel, field: ObjectField, q: torch.Tensor, k: int) -> torch.Tensor:
    """For poses `q (B, 28)`, `k` contacts on `k` different links nearest the surface: `(B, k)`.

    Network samples come without contact indices; post-optimisation starts from these. Taking the
    best candidate of each link (not the k best overall) spreads contacts over the fingers, as
    force closure needs.
    """
    with torch.no_grad():
        dist = field.sdf.query(hand(q).contact_candidates)[0].abs()  # (B, M)
        link = hand.cand_link  # (M,), candidates grouped by link
        n_links = int(link.max()) + 1
        best = torch.full((q.shape[0], n_links), float("inf"), dtype=dist.dtype, device=dist.device)
        best = best.scatter_reduce(1, link.expand_as(dist), dist, reduce="amin")
        links = best.topk(k, dim=-1, largest=False).indices  # (B, k) links with the closest contact
        # the closest candidate of each chosen link
        masked = torch.where(link[None, None, :] == links[..., None], dist[:, None, :], float("inf"))
        return masked.argmin(-1)


def grasps_table(object_id: str, grasps: OptimisedGrasps, source: str, **columns):
    """The optimised grasps as a grasp table (:mod:`dexlite_core.dataset` schema).

    ``grasp_id`` defaults to 0..B-1; any other grasp column can be given in `columns`.
    """
    from .dataset import grasps_to_table

    columns.setdefault("grasp_id", np.arange(len(grasps.q), dtype=np.int64))
    return grasps_to_table(
        object_id, grasps.q, source, contact_idx=grasps.contact_idx.astype(np.int16), **grasps.terms, **columns
    )

"""Grasp synthesis by energy optimisation: seed grasps from scratch and post-optimisation.

Both run :class:`~dexlite_core.optim.annealing.AnnealingOptimizer` on one object at a time with
all its poses in one batch `(B, 28)`; they differ only in where the poses start (DexGraspNet
initialisation vs. network samples) and in the annealing schedule.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import trimesh

from .config import AnnealingConfig, EnergyConfig, SeedConfig
from .energy import TERMS, ObjectField, force_closure, grasp_energy
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


def _nearest_per_link(hand: HandModel, dist: torch.Tensor) -> torch.Tensor:
    """Each link's candidate nearest the surface: unsigned distances `(B, M)` -> indices `(B, L)`."""
    link = hand.cand_link  # (M,), candidates grouped by link
    own = link[None, :] == torch.arange(int(link.max()) + 1, device=link.device)[:, None]  # (L, M)
    return torch.where(own, dist[:, None, :], float("inf")).argmin(-1)


def contact_indices_for(hand: HandModel, field: ObjectField, q: torch.Tensor, k: int) -> torch.Tensor:
    """For poses `q (B, 28)`, `k` contacts on `k` different links nearest the surface: `(B, k)`.

    Network samples come without contact indices; post-optimisation starts from these. Taking the
    best candidate of each link (not the k best overall) spreads contacts over the fingers, as
    force closure needs.
    """
    with torch.no_grad():
        dist = field.sdf.query(hand(q).contact_candidates)[0].abs()  # (B, M)
        per_link = _nearest_per_link(hand, dist)  # (B, L)
        links = dist.gather(1, per_link).topk(k, dim=-1, largest=False).indices  # (B, k) the closest links
        return per_link.gather(1, links)


def fitted_contact_indices(
    hand: HandModel, field: ObjectField, q: torch.Tensor, energy: EnergyConfig, chunk: int = 128
) -> torch.Tensor:
    """For poses `q (B, 28)` that held in simulation but carry no contacts (CVAE expansions fed
    back by ``--rounds``, imported grasps): the `K` contacts on `K` different links that best
    explain the grasp, `(B, K)`.

    Steps: 1. each of the hand's L links offers its candidate nearest the surface; 2. every one of
    the C(L, K) link subsets is scored by ``w_fc E_fc + w_dis E_dis`` (the energy's contact terms);
    3. the lowest-scoring subset wins. Unlike :func:`contact_indices_for` this never picks K fingers
    on one side of the object, whose normals cannot balance: on the default run's fed-back
    expansions it gives E_fc 0.37 instead of 9.0 at the same poses, about what the optimiser's own
    contacts give for seed grasps (0.17 / 0.31 refitted).
    """
    k, w = energy.n_contacts, energy.weights
    n_links = int(hand.cand_link.max()) + 1
    subsets = torch.tensor(list(itertools.combinations(range(n_links), k)), device=q.device)  # (C, K)
    out = []
    with torch.no_grad():
        for part in q.split(chunk):
            cand = hand(part).contact_candidates  # (b, M, 3)
            phi, normal = field.sdf.query(cand)
            dist = phi.abs()
            idx = _nearest_per_link(hand, dist)[:, subsets]  # (b, C, K) candidate indices
            b, c = idx.shape[:2]
            flat = idx.reshape(b, -1, 1)  # (b, C * K, 1)
            points = torch.gather(cand, 1, flat.expand(-1, -1, 3)).reshape(b * c, k, 3)
            normals = torch.gather(normal, 1, flat.expand(-1, -1, 3)).reshape(b * c, k, 3)
            score = w.fc * force_closure(points, normals).reshape(b, c)
            score = score + w.dis * torch.gather(dist, 1, flat[..., 0]).reshape(b, c, k).sum(-1)
            out.append(idx[torch.arange(b, device=q.device), score.argmin(-1)])
    return torch.cat(out) if out else torch.zeros((0, k), dtype=torch.long, device=q.device)


def grasps_table(object_id: str, grasps: OptimisedGrasps, source: str, **columns):
    """The optimised grasps as a grasp table (:mod:`dexlite_core.dataset` schema).

    ``grasp_id`` defaults to 0..B-1; any other grasp column can be given in `columns`.
    """
    from .dataset import grasps_to_table

    columns.setdefault("grasp_id", np.arange(len(grasps.q), dtype=np.int64))
    return grasps_to_table(
        object_id, grasps.q, source, contact_idx=grasps.contact_idx.astype(np.int16), **grasps.terms, **columns
    )

"""Sampling grasps from a trained CVAE and refining them by post-optimisation.

One implementation for the DAG's ``sample`` / ``postopt`` stages and ``dexlite sample``:

* pure synthesis: z ~ N(0, I), associated point uniform over the object's cloud, decode;
* dataset expansion: encode a known grasp, perturb z by ``z_noise`` times its sigma, decode;
* post-optimisation: the annealing optimiser with the write-up's 200-step schedule, starting from
  the samples, contacts initialised at each link's candidate nearest the surface.

Random draws come from a CPU generator seeded per call, so a seed gives the same grasps on CPU
and CUDA.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from .config import AnnealingConfig, EnergyConfig, SampleConfig, TrainConfig
from .dataset import concat_tables, grasps_to_table, table_q
from .models import GraspCVAE, associated_point_index
from .objects import load_object
from .seeding import stable_int
from .synthesis import OptimisedGrasps, contact_indices_for, grasps_table, hand_on, object_field, optimise
from .train import model_cloud

log = logging.getLogger("dexlite.sampling")
ID_STRIDE = 1_000_000  # grasp_id = object index * ID_STRIDE + i (raw), + EXPANDED_OFFSET + i (expanded)
EXPANDED_OFFSET = 500_000


@dataclass
class GraspSampler:
    """A trained CVAE in eval mode and the cloud size it was trained with."""

    model: GraspCVAE
    n_points: int

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @classmethod
    def load(cls, checkpoint: str | Path, device: torch.device | str = "cpu") -> GraspSampler:
        """From a training checkpoint (``{"model": state, "config": TrainConfig fields}``)."""
        path = Path(checkpoint)
        if not path.is_file():
            raise FileNotFoundError(f"no checkpoint at {path}")
        try:
            ckpt = torch.load(path, map_location=device, weights_only=False)
        except Exception as e:  # a truncated or foreign file
            raise ValueError(f"{path}: not a readable DexLite checkpoint ({e})") from e
        state = ckpt.get("model") if isinstance(ckpt, dict) else None
        if not isinstance(state, dict):
            raise ValueError(f"{path}: not a DexLite checkpoint (no model state)")
        saved = ckpt.get("config") or {}
        cfg = TrainConfig(**{k: v for k, v in saved.items() if k in TrainConfig.__dataclass_fields__})
        model = GraspCVAE.from_config(cfg)
        model.load_state_dict(state)
        return cls(model.to(device).eval(), cfg.n_points)

    def cloud(self, obj) -> torch.Tensor:
        """`(n_points, 3)` float32 cloud of an :class:`~dexlite_core.objects.ObjectAsset`."""
        return torch.as_tensor(model_cloud(obj.points, self.n_points), dtype=torch.float32, device=self.device)

    @torch.no_grad()
    def sample(self, obj, n: int, seed: int = 0) -> np.ndarray:
        """Pure synthesis: `n` poses `(n, 28)` float32 for one object."""
        gen = torch.Generator().manual_seed(seed)
        q = self.model.sample(self.cloud(obj), n, generator=gen)
        return q.reshape(-1, 28).cpu().numpy().astype(np.float32)

    @torch.no_grad()
    def expand(self, obj, q: np.ndarray, n_per: int, z_noise: float = 0.1, seed: int = 0) -> np.ndarray:
        """Dataset expansion: `n_per` variations of each known grasp `q (G, 28)` -> `(G * n_per, 28)`,
        grouped by grasp."""
        gen = torch.Generator().manual_seed(seed)
        cloud = self.cloud(obj)
        qt = torch.as_tensor(np.asarray(q), dtype=torch.float32, device=self.device)
        assoc = associated_point_index(cloud, qt)
        out = self.model.expand(cloud, qt, assoc, n_per, z_noise=z_noise, generator=gen)
        return out.reshape(-1, 28).cpu().numpy().astype(np.float32)


def postoptimise(obj, q: np.ndarray, annealing: AnnealingConfig, energy: EnergyConfig,
                 device: torch.device | str = "cpu", seed: int = 0) -> OptimisedGrasps:  # fmt: skip
    """Post-optimisation (write-up: ``annealing`` = ``cfg.postopt``, 200 steps) of poses `q (B, 28)`."""
    device = torch.device(device)
    field = object_field(obj, device)
    qt = torch.as_tensor(np.asarray(q), dtype=torch.float32, device=device)
    idx = contact_indices_for(hand_on(str(device)), field, qt, energy.n_contacts)
    return optimise(field, qt, idx, annealing, energy, seed=seed)


def sample_objects(sampler: GraspSampler, folders: Mapping[str, Path], cfg: SampleConfig,
                   dataset: pa.Table | None = None) -> pa.Table:
    """Grasps of every object (id -> object folder, in that order): ``cfg.n_per_object`` pure
    synthesis samples (source "raw") and ``cfg.expand_per_grasp`` expansions of each of the object's
    `dataset` grasps (source "expanded"), seeded per object."""
    data_ids = np.asarray(dataset.column("object_id").to_pylist()) if dataset is not None else np.asarray([])
    tables = []
    t0 = time.perf_counter()
    for k, (oid, folder) in enumerate(folders.items()):
        obj = load_object(folder)
        seed = cfg.seed + stable_int(oid)
        base = k * ID_STRIDE
        if cfg.n_per_object > 0:
            q = sampler.sample(obj, cfg.n_per_object, seed=seed)
            tables.append(grasps_to_table(oid, q, "raw", grasp_id=base + np.arange(len(q))))
        rows = np.flatnonzero(data_ids == oid)
        if dataset is not None and cfg.expand_per_grasp > 0 and len(rows):
            q = sampler.expand(obj, table_q(dataset.take(rows)), cfg.expand_per_grasp, cfg.latent_noise,
                               seed=seed + 1)
            tables.append(grasps_to_table(oid, q, "expanded", grasp_id=base + EXPANDED_OFFSET + np.arange(len(q))))
        log.info("sample: %d/%d %s (%.1f s)", k + 1, len(folders), oid, time.perf_counter() - t0)
    return concat_tables(tables)


def postoptimise_objects(sampled: pa.Table, folders: Mapping[str, Path], annealing: AnnealingConfig,
                         energy: EnergyConfig, device: torch.device | str = "cpu") -> pa.Table:
    """Post-optimise the pure-synthesis ("raw") grasps of each object (id -> folder, in that order)
    of a sampled table; each keeps its sample's ``grasp_id``, so before / after compare the same
    grasps. Seeded per object."""
    raw = sampled.filter(pc.equal(sampled.column("source"), "raw"))
    ids = np.asarray(raw.column("object_id").to_pylist())
    tables = []
    for k, (oid, folder) in enumerate(folders.items()):
        t0 = time.perf_counter()
        part = raw.take(np.flatnonzero(ids == oid))
        if part.num_rows == 0:
            continue
        res = postoptimise(load_object(folder), table_q(part), annealing, energy, device, seed=stable_int(oid))
        tables.append(grasps_table(oid, res, "postopt", grasp_id=part.column("grasp_id")))
        log.info("postopt: %d/%d %s: %d grasps (%.1f s)", k + 1, len(folders), oid, part.num_rows,
                 time.perf_counter() - t0)
    return concat_tables(tables)


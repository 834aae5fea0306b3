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

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .config import AnnealingConfig, EnergyConfig, TrainConfig
from .models import GraspCVAE, associated_point_index
from .synthesis import OptimisedGrasps, contact_indices_for, hand_on, object_field, optimise
from .train import model_cloud


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

"""Sampling grasps from a trained CVAE and refining them by post-optimisation.

* pure synthesis: z ~ N(0, I), associated point uniform over the object's cloud, decode;
* dataset expansion: encode a known grasp, perturb z (noise scaled by its sigma) and/or move the
  associated point to one of its nearest cloud points, decode;
* post-optimisation: the annealing optimiser with the write-up's 200-step schedule, starting from
  the samples, contacts initialised at the candidates nearest the surface.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .config import PipelineConfig, TrainConfig
from .models import GraspCVAE
from .synthesis import OptimisedGrasps, contact_indices_for, hand_on, object_field, optimise


def load_model(checkpoint: str | Path, device: torch.device | str = "cpu") -> GraspCVAE:
    """A trained model from a training checkpoint (or a bare state dict), in eval mode."""
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        ckpt = torch.load(path, map_location=device, weights_only=False)
    except Exception as e:  # a truncated or foreign file
        raise ValueError(f"{path}: not a readable DexLite checkpoint ({e})") from e
    state = ckpt.get("model", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"{path}: not a DexLite checkpoint (no model state)")
    cfg = TrainConfig(
        **{k: v for k, v in ckpt.get("config", {}).items() if k in TrainConfig.__dataclass_fields__}
    )
    model = GraspCVAE.from_config(cfg)
    model.load_state_dict(state)
    return model.to(device).eval()


def _cloud(obj, device: torch.device) -> torch.Tensor:
    return torch.as_tensor(np.asarray(obj.points), dtype=torch.float32, device=device)


def sample_object(model: GraspCVAE, obj, n: int, seed: int = 0) -> np.ndarray:
    """Pure synthesis: `n` poses `(n, 28)` float32 for one object, deterministic for `seed`."""
    device = next(model.parameters()).device
    gen = torch.Generator(device=device).manual_seed(seed)
    with torch.no_grad():
        q = model.sample(_cloud(obj, device), n, generator=gen)
    return q.cpu().numpy().astype(np.float32)


def expand_object(
    model: GraspCVAE,
    obj,
    q: np.ndarray,
    n_per: int,
    z_noise: float = 1.0,
    assoc_jitter: int = 8,
    seed: int = 0,
) -> np.ndarray:
    """Dataset expansion: `n_per` variations of each known grasp `q (G, 28)` -> `(G * n_per, 28)`."""
    from .models import associated_point_index

    device = next(model.parameters()).device
    gen = torch.Generator(device=device).manual_seed(seed)
    cloud = _cloud(obj, device)
    qt = torch.as_tensor(np.asarray(q), dtype=torch.float32, device=device)
    with torch.no_grad():
        assoc = associated_point_index(cloud, qt)
        out = model.expand(cloud, qt, assoc, n_per, z_noise=z_noise, assoc_jitter=assoc_jitter, generator=gen)
    return out.reshape(-1, 28).cpu().numpy().astype(np.float32)


def postoptimise(obj, q: np.ndarray, cfg: PipelineConfig, device: torch.device | str = "cpu", seed: int = 0
                 ) -> OptimisedGrasps:  # fmt: skip
    """The write-up's post-optimisation (``cfg.postopt``, 200 steps) of poses `q (B, 28)`."""
    device = torch.device(device)
    field = object_field(obj, device)
    qt = torch.as_tensor(np.asarray(q), dtype=torch.float32, device=device)
    idx = contact_indices_for(hand_on(str(device)), field, qt, cfg.energy.n_contacts)
    return optimise(field, qt, idx, cfg.postopt, cfg.energy, seed=seed)

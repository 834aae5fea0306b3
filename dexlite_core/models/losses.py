"""CVAE losses of the write-up and their combination with the grasp energy terms.

    L_recon = 1/B sum_b ||q_b - q_hat_b||^2
    L_KL    = -1/(2B) sum_b sum_i (1 + log sigma_{b,i}^2 - mu_{b,i}^2 - sigma_{b,i}^2)
    L_total = w_recon L_recon + w_KL L_KL + w_fc E_fc + w_dis E_dis + w_pen E_pen + w_spen E_spen
              + w_joints E_joints                     (each E averaged over the batch)

Space of the reconstruction loss: pass the model's :class:`~dexlite_core.models.cvae.PoseNormalizer`
(``normalizer=model.normalizer``) to compute it on *normalised* poses, where translation (metres),
Euler angles and joint angles (radians) are all of order one; without it the loss is on raw poses
and the translation (centimetres, i.e. ~0.01 in metres) is almost ignored next to the angles.
The energy terms themselves come from :mod:`dexlite_core.energy` (not computed here).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import torch

from ..config import EnergyWeights

if TYPE_CHECKING:
    from .cvae import PoseNormalizer

ENERGY_KEYS = ("fc", "dis", "pen", "spen", "joints")


def reconstruction_loss(
    q: torch.Tensor, q_hat: torch.Tensor, normalizer: PoseNormalizer | None = None
) -> torch.Tensor:
    """Mean over the batch of the squared L2 distance.

    Args:
        q: `(B, 28)` target poses (pose space).
        q_hat: `(B, 28)` reconstructed poses (pose space).
        normalizer: when given, both are normalised first (recommended; see module docstring).
    Returns:
        scalar tensor.
    """
    if q.shape != q_hat.shape:
        raise ValueError(f"q {tuple(q.shape)} and q_hat {tuple(q_hat.shape)} differ in shape")
    if normalizer is not None:
        q, q_hat = normalizer.normalize(q), normalizer.normalize(q_hat)
    return (q - q_hat).pow(2).sum(dim=-1).mean()


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sigma^2) || N(0, I)) summed over latent dims, averaged over the batch.

    Args:
        mu: `(B, D)` posterior means.
        logvar: `(B, D)` posterior log-variances log sigma^2.
    Returns:
        scalar tensor `-1/(2B) sum_b sum_i (1 + logvar - mu^2 - exp(logvar))` (>= 0; 0 iff mu = 0
        and logvar = 0).
    """
    if mu.shape != logvar.shape:
        raise ValueError(f"mu {tuple(mu.shape)} and logvar {tuple(logvar.shape)} differ in shape")
    B = mu.shape[0]
    return -0.5 * (1.0 + logvar - mu.pow(2) - logvar.exp()).sum() / B


def _energy_value(energy: Mapping[str, torch.Tensor], key: str) -> torch.Tensor | None:
    for name in (f"E_{key}", key):
        if name in energy:
            return energy[name]
    return None


def total_loss(
    recon: torch.Tensor,
    kl: torch.Tensor,
    energy: Mapping[str, torch.Tensor] | None = None,
    w_recon: float = 1.0,
    w_kl: float = 0.001,
    weights: EnergyWeights | None = None,
) -> dict[str, torch.Tensor]:
    """Weighted training loss of the write-up.

    Args:
        recon: scalar L_recon; kl: scalar L_KL.
        energy: energy terms, each `(B,)` per grasp (or a scalar), keyed ``"E_fc"`` ... ``"E_joints"``
            (as :class:`dexlite_core.energy.EnergyTerms.as_dict`) or ``"fc"`` ... ``"joints"``;
            missing terms count as zero. Each is averaged over the batch.
        w_recon, w_kl: the CVAE weights (``TrainConfig.w_recon`` / ``w_kl``).
        weights: energy weights (default :class:`EnergyWeights`, the write-up's table).
    Returns:
        dict with ``"recon"``, ``"kl"``, every energy term present as ``"E_<name>"`` (batch mean) and
        ``"loss"`` the weighted total (all scalars).
    """
    w = weights or EnergyWeights()
    out: dict[str, torch.Tensor] = {"recon": recon, "kl": kl}
    loss = w_recon * recon + w_kl * kl
    for key in ENERGY_KEYS:
        value = _energy_value(energy or {}, key)
        if value is None:
            continue
        term = value.mean() if value.dim() > 0 else value
        out[f"E_{key}"] = term
        loss = loss + getattr(w, key) * term
    unknown = set(energy or {}) - {f"E_{k}" for k in ENERGY_KEYS} - set(ENERGY_KEYS)
    if unknown:
        raise KeyError(f"unknown energy term(s): {sorted(unknown)}")
    out["loss"] = loss
    return out

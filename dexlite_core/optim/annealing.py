"""RMSProp with Metropolis acceptance and contact switching (write-up; DexGraspNet's optimiser).

One tensor program for a batch of B poses `q (B, 28)` with chosen contacts `idx (B, K)` on any
device. Each step t (all quantities per pose unless said):

1. step size   s_t = alpha * gamma_s ^ floor(t / n_s)          (alpha 0.005; DexGraspNet's 0.95 / 50)
2. RMSProp     v   = mu v + (1 - mu) g^2  (v starts at g_0^2);   q' = q - s_t g / (sqrt(v) + eps)
3. switching   each of the K contact indices is redrawn uniformly from the M candidates with
               probability p_switch (0.5)
4. evaluate    E' = E(q', idx') and its gradient g'
5. accept      with probability min(1, exp((E - E') / T_t)), T_t = T_0 gamma ^ floor(t / n_period)
               (T_0 18, gamma 0.95, n_period 30); a rejected pose keeps q, idx, E and g.
6. best          with ``keep_best``, each pose's lowest-energy (q, idx, E) so far is kept beside the
                 chain and returned by :meth:`AnnealingOptimizer.run` (the chain itself is unchanged).

The second moment v is kept per pose and per coordinate (the write-up's formula); DexGraspNet
averages it over the batch, which couples unrelated grasps: we do not.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ..config import AnnealingConfig
from ..energy import EnergyTerms

EnergyFn = Callable[[torch.Tensor, torch.Tensor], EnergyTerms]


@dataclass
class AnnealingState:
    q: torch.Tensor  # (B, 28)
    idx: torch.Tensor  # (B, K)
    terms: EnergyTerms  # each (B,), detached
    grad: torch.Tensor  # (B, 28)
    v: torch.Tensor  # (B, 28) RMSProp second moment
    step: int = 0
    accepted: torch.Tensor | None = None  # (B,) bool, last step
    history: list[dict[str, float]] = field(default_factory=list)
    best: tuple[torch.Tensor, torch.Tensor, EnergyTerms] | None = None  # lowest-energy (q, idx, terms)

    def update_best(self) -> None:
        """Step 6: keep, per pose, the lowest-energy state seen so far."""
        if self.best is None:
            self.best = (self.q.clone(), self.idx.clone(), self.terms)
            return
        q_b, idx_b, terms_b = self.best
        better = self.terms.total < terms_b.total  # (B,)
        b = better[:, None]
        self.best = (
            torch.where(b, self.q, q_b),
            torch.where(b, self.idx, idx_b),
            EnergyTerms(**{k: torch.where(better, new, old) for (k, new), old in
                           zip(self.terms.as_dict().items(), terms_b.as_dict().values(), strict=True)}),
        )  # fmt: skip

    def best_state(self) -> AnnealingState:
        """A state holding the best poses (self when no best was tracked)."""
        if self.best is None:
            return self
        q, idx, terms = self.best
        return AnnealingState(q, idx, terms, self.grad, self.v, self.step, self.accepted, self.history, self.best)


def _evaluate(energy_fn: EnergyFn, q: torch.Tensor, idx: torch.Tensor) -> tuple[EnergyTerms, torch.Tensor]:
    q = q.detach().requires_grad_(True)
    with torch.enable_grad():
        terms = energy_fn(q, idx)
        (grad,) = torch.autograd.grad(terms.total.sum(), q)
    detached = EnergyTerms(**{k: v.detach() for k, v in terms.as_dict().items()})
    return detached, grad


class AnnealingOptimizer:
    """Batched annealing RMSProp over an energy ``energy_fn(q (B,28), idx (B,K)) -> EnergyTerms``."""

    def __init__(
        self,
        energy_fn: EnergyFn,
        n_candidates: int,
        cfg: AnnealingConfig | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        self.energy_fn = energy_fn
        self.n_candidates = n_candidates
        self.cfg = cfg or AnnealingConfig()
        self.generator = generator

    def temperature(self, t: int) -> float:
        c = self.cfg
        return c.starting_temperature * c.temperature_decay ** (t // c.annealing_period)

    def step_size(self, t: int) -> float:
        c = self.cfg
        return c.step_size * c.stepsize_decay ** (t // c.stepsize_period)

    def init(self, q: torch.Tensor, idx: torch.Tensor) -> AnnealingState:
        if not torch.isfinite(q).all():
            bad = (~torch.isfinite(q)).any(-1).nonzero().flatten().tolist()
            raise ValueError(f"initial poses contain NaN/inf at rows {bad[:10]}")
        terms, grad = _evaluate(self.energy_fn, q, idx)
        return AnnealingState(q.detach().clone(), idx.clone(), terms, grad, grad * grad)

    def _rand(self, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
        """Uniform draws from the optimiser's generator (which must live on `device`)."""
        return torch.rand(shape, generator=self.generator, device=device)

    def switch_contacts(self, idx: torch.Tensor) -> torch.Tensor:
        """Redraw each index with probability ``switch_possibility``: `(B, K)` -> `(B, K)`."""
        mask = self._rand(tuple(idx.shape), idx.device) < self.cfg.switch_possibility
        fresh = (
            (self._rand(tuple(idx.shape), idx.device) * self.n_candidates)
            .long()
            .clamp_max(self.n_candidates - 1)
        )
        return torch.where(mask, fresh, idx)

    @staticmethod
    def accept_probability(e_old: torch.Tensor, e_new: torch.Tensor, temperature: float) -> torch.Tensor:
        """Metropolis: `min(1, exp((E_old - E_new) / T))`, `(B,)`."""
        return torch.exp(((e_old - e_new) / temperature).clamp(max=0.0))

    def step(self, s: AnnealingState) -> AnnealingState:
        """One annealing step (module docstring, steps 1-5), in place on `s`."""
        c = self.cfg
        s.v = c.mu * s.v + (1.0 - c.mu) * s.grad * s.grad
        q_new = s.q - self.step_size(s.step) * s.grad / (s.v.sqrt() + c.eps)
        idx_new = self.switch_contacts(s.idx)
        terms_new, grad_new = _evaluate(self.energy_fn, q_new, idx_new)
        p = self.accept_probability(s.terms.total, terms_new.total, self.temperature(s.step))
        accept = self._rand(tuple(p.shape), p.device) < p
        accept &= torch.isfinite(terms_new.total)
        a = accept[:, None]
        s.q = torch.where(a, q_new.detach(), s.q)
        s.idx = torch.where(a, idx_new, s.idx)
        s.grad = torch.where(a, grad_new, s.grad)
        s.terms = EnergyTerms(
            **{k: torch.where(accept, new, old) for (k, new), old in
               zip(terms_new.as_dict().items(), s.terms.as_dict().values(), strict=True)}
        )  # fmt: skip
        s.accepted = accept
        s.step += 1
        return s

    def run(
        self,
        q: torch.Tensor,
        idx: torch.Tensor,
        n_iter: int | None = None,
        callback: Callable[[AnnealingState], None] | None = None,
        log_every: int = 10,
    ) -> AnnealingState:
        """Optimise from `q (B, 28)`, `idx (B, K)` for `n_iter` steps (default ``cfg.n_iter``).

        Returns the final chain state, or with ``cfg.keep_best`` a state holding each pose's
        lowest-energy visit (its history is the chain's).
        """
        s = self.init(q, idx)
        n_iter = self.cfg.n_iter if n_iter is None else n_iter
        if self.cfg.keep_best:
            s.update_best()
        for _ in range(n_iter):
            self.step(s)
            if self.cfg.keep_best:
                s.update_best()
            if s.step % log_every == 0 or s.step == n_iter:
                s.history.append(
                    {
                        "step": s.step,
                        "energy": float(s.terms.total.mean()),
                        "accept_rate": float(s.accepted.float().mean()),
                        "temperature": self.temperature(s.step),
                        **({"best_energy": float(s.best[2].total.mean())} if s.best is not None else {}),
                        **{k: float(v.mean()) for k, v in s.terms.as_dict().items() if k != "total"},
                    }
                )
            if callback is not None:
                callback(s)
        return s.best_state() if self.cfg.keep_best else s

"""Conditional VAE over grasp poses, conditioned on the object (write-up appendix, "CVAE" tables).

Condition ``c`` (512): ``concat(global feature (256), local feature of the associated point (256))``,
both from :class:`~dexlite_core.models.pointnet.PointNet`. This is our reading of the write-up's
"540 (28 + 512)" encoder input and "768 (256 + 512)" decoder input: the write-up says PointNet
extracts "global geometric features and local features for specific surface points", and the only
specific point it names is the *associated point* ("the target point on the object where the grasp
approaches from").

Encoder (training and dataset expansion), input ``concat(q_norm (28), c (512)) = 540``::

    FC1 540 -> 256 ReLU, FC2 256 -> 512 ReLU, FC3 512 -> 256 ReLU, FC_mu 256 -> 256, FC_sigma 256 -> 256

``FC_sigma`` predicts the log-variance ``log sigma^2`` (unconstrained, so sigma > 0 always; the KL of
:func:`~dexlite_core.models.losses.kl_divergence` takes it directly). Reparameterisation:
``z = mu + exp(logvar / 2) * eps``, ``eps ~ N(0, I)``.

Decoder, input ``concat(z (256), c (512)) = 768``::

    FC1 768 -> 256 ReLU, FC2 256 -> 512 ReLU, FC3 512 -> 256 ReLU, FC_out 256 -> 28 (no activation)

The decoder outputs a *normalised* pose; :class:`PoseNormalizer` (a submodule whose offset/scale are
buffers, so every checkpoint is self-contained) maps it back to the pose ``q = [t, euler, joints]``:

* translation: ``t / translation_scale`` (default 0.1 m: object size 0.1 m plus stand-off);
* Euler angles ('sxyz', radians): ``euler / pi`` (no wrap handling: the data's angles are in
  (-pi, pi] and the loss treats them as plain numbers);
* joints: mapped to [-1, 1] by the limits of :func:`dexlite_core.hand.asset.joint_limits`.
:meth:`PoseNormalizer.from_data` instead standardises by the data's mean / std.

Associated point used for training (:func:`associated_point_index`): the cloud point nearest to the
*palm centre*, the centre of the palmar face of the main palm box ``robot0:C_palm0`` of the MJCF
(palm-frame point :data:`PALM_CENTRE` = (0.011, -0.0111, 0.038) m: box centre (0.011, 0, 0.038),
half-thickness 0.0111 towards the palmar side -y), mapped to the object frame by the pose's
``R = euler_to_matrix(euler)`` and ``t``. It is the object point the palm faces, well defined for
every grasp and cheap to compute.

Efficiency: PointNet runs once per *object*; :meth:`GraspCVAE.encode_object` returns its features and
every method that takes ``points`` also accepts one shared cloud ``(N, 3)`` (broadcast) or clouds
``(O, N, 3)`` plus ``object_index (B,)``; sampling and expansion decode many grasps from one encoding.

Parameter counts (biases included): PointNet 406,016; encoder 532,992; decoder 466,972; total
1,405,980 (arithmetic in ``tests/test_models.py``).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..config import TrainConfig
from ..hand.rotation import euler_to_matrix
from .pointnet import FEATURE_DIM, PointNet, gather_points, nearest_point_index

POSE_DIM = 28
LATENT_DIM = 256
HIDDEN: tuple[int, int, int] = (256, 512, 256)
# centre of the palmar face of robot0:C_palm0 (box centre (0.011, 0, 0.038), half size y 0.0111), metres
PALM_CENTRE: tuple[float, float, float] = (0.011, -0.0111, 0.038)


class PoseNormalizer(nn.Module):
    """Affine per-dimension map between poses `(..., 28)` and normalised poses: `(q - offset) / scale`.

    `offset` and `scale` are `(28,)` buffers (saved in the state dict).
    """

    offset: torch.Tensor
    scale: torch.Tensor

    def __init__(self, offset: torch.Tensor | None = None, scale: torch.Tensor | None = None) -> None:
        """Explicit `offset`/`scale` `(28,)`, or both None for :meth:`limits_params` defaults."""
        super().__init__()
        if (offset is None) != (scale is None):
            raise ValueError("give both offset and scale, or neither")
        if offset is None or scale is None:
            offset, scale = self.limits_params()
        offset = torch.as_tensor(offset, dtype=torch.float32).reshape(-1)
        scale = torch.as_tensor(scale, dtype=torch.float32).reshape(-1)
        if offset.shape != (POSE_DIM,) or scale.shape != (POSE_DIM,):
            raise ValueError(f"offset and scale must be ({POSE_DIM},), got {offset.shape}, {scale.shape}")
        if not bool((scale > 0).all()):
            raise ValueError("every scale must be positive")
        self.register_buffer("offset", offset)
        self.register_buffer("scale", scale)

    @staticmethod
    def limits_params(
        translation_scale: float = 0.1,
        lower: torch.Tensor | None = None,
        upper: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Offset and scale `(28,)`: t / translation_scale, euler / pi, joints to [-1, 1] by limits.

        `lower`/`upper` `(22,)` default to :func:`dexlite_core.hand.asset.joint_limits`.
        """
        if lower is None or upper is None:
            from ..hand.asset import joint_limits

            lo_np, hi_np = joint_limits()
            lower, upper = torch.as_tensor(lo_np), torch.as_tensor(hi_np)
        lo = torch.as_tensor(lower, dtype=torch.float64)
        hi = torch.as_tensor(upper, dtype=torch.float64)
        offset = torch.cat([torch.zeros(6, dtype=torch.float64), (lo + hi) / 2])
        half = ((hi - lo) / 2).clamp(min=1e-3)
        scale = torch.cat([torch.full((3,), translation_scale), torch.full((3,), math.pi), half])
        return offset.float(), scale.float()

    @classmethod
    def from_limits(cls, translation_scale: float = 0.1) -> PoseNormalizer:
        """Normaliser from the joint limits and a translation scale (metres)."""
        return cls(*cls.limits_params(translation_scale))

    @classmethod
    def from_data(cls, q: torch.Tensor, min_std: float = 1e-3) -> PoseNormalizer:
        """Standardising normaliser: per-dimension mean and std (floored at `min_std`) of `q (G, 28)`."""
        q = q.detach().double().reshape(-1, POSE_DIM)
        std = q.std(dim=0, unbiased=False) if q.shape[0] > 1 else torch.ones(POSE_DIM, dtype=q.dtype)
        return cls(q.mean(dim=0).float(), std.clamp(min=min_std).float())

    def normalize(self, q: torch.Tensor) -> torch.Tensor:
        """`(..., 28)` poses -> `(..., 28)` normalised poses."""
        return (q - self.offset.to(q.dtype)) / self.scale.to(q.dtype)

    def denormalize(self, q_norm: torch.Tensor) -> torch.Tensor:
        """`(..., 28)` normalised poses -> `(..., 28)` poses."""
        return q_norm * self.scale.to(q_norm.dtype) + self.offset.to(q_norm.dtype)


def palm_centre(q: torch.Tensor) -> torch.Tensor:
    """`(B, 28)` poses -> `(B, 3)` palm centre (:data:`PALM_CENTRE`) in the object frame."""
    R = euler_to_matrix(q[:, 3:6])  # (B, 3, 3)
    p = torch.tensor(PALM_CENTRE, dtype=q.dtype, device=q.device)
    return (R @ p) + q[:, :3]


def associated_point_index(points: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Associated point of each grasp: the cloud point nearest to the palm centre.

    Args:
        points: `(B, N, 3)` object clouds (object frame), or `(N, 3)` shared by all grasps.
        q: `(B, 28)` poses.
    Returns:
        `(B,)` long indices into N.
    """
    return nearest_point_index(points, palm_centre(q).to(points.dtype))


def _mlp(dims: tuple[int, ...]) -> nn.Sequential:
    """Linear layers `dims[0] -> ... -> dims[-1]`, each followed by ReLU."""
    layers: list[nn.Module] = []
    for a, b in zip(dims[:-1], dims[1:], strict=True):
        layers += [nn.Linear(a, b), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class GraspCVAE(nn.Module):
    """PointNet + CVAE of the write-up (see module docstring). All poses in and out are in pose space.

    Shapes: B grasps, N points, O objects, D = latent_dim (256), C = 2 * 256 = 512 condition.
    """

    def __init__(
        self,
        latent_dim: int = LATENT_DIM,
        hidden: tuple[int, int, int] = HIDDEN,
        normalizer: PoseNormalizer | None = None,
    ) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.cond_dim = 2 * FEATURE_DIM
        self.pointnet = PointNet()
        self.encoder = _mlp((POSE_DIM + self.cond_dim, *hidden))
        self.fc_mu = nn.Linear(hidden[-1], latent_dim)
        self.fc_logvar = nn.Linear(hidden[-1], latent_dim)  # the write-up's FC_sigma: log sigma^2
        self.decoder = nn.Sequential(
            _mlp((latent_dim + self.cond_dim, *hidden)), nn.Linear(hidden[-1], POSE_DIM)
        )
        self.normalizer = normalizer if normalizer is not None else PoseNormalizer()

    @classmethod
    def from_config(cls, cfg: TrainConfig, normalizer: PoseNormalizer | None = None) -> GraspCVAE:
        return cls(latent_dim=cfg.latent_dim, normalizer=normalizer)

    # ------------------------------------------------------------------ helpers
    def _param(self) -> torch.Tensor:
        return self.fc_mu.weight

    def encode_object(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """PointNet features of clouds `(O, N, 3)` or `(N, 3)` -> global `(O, 256)`, local `(O, N, 256)`."""
        p = self._param()
        return self.pointnet(points.to(device=p.device, dtype=p.dtype))

    def condition(
        self,
        global_feat: torch.Tensor,
        local_feat: torch.Tensor,
        assoc_idx: torch.Tensor,
        object_index: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Condition vectors from object features.

        Args:
            global_feat: `(O, 256)`; local_feat: `(O, N, 256)`.
            assoc_idx: `(B,)` or `(B, M)` associated point indices into N.
            object_index: `(B,)` object of each row; default `arange(B)` when O == B, zeros when O == 1.
        Returns:
            `(B, 512)` or `(B, M, 512)`: concat(global, local[assoc]).
        """
        B = assoc_idx.shape[0]
        O = global_feat.shape[0]
        dev = global_feat.device
        if object_index is None:
            if O == B:
                object_index = torch.arange(B, device=dev)
            elif O == 1:
                object_index = torch.zeros(B, dtype=torch.long, device=dev)
            else:
                raise ValueError(f"{O} objects for {B} grasps: pass object_index")
        obj = object_index.to(dev).long()
        a = assoc_idx.to(dev).long()
        if a.dim() == 1:
            return torch.cat([global_feat[obj], local_feat[obj, a]], dim=-1)
        loc = local_feat[obj[:, None], a]  # (B, M, 256)
        glob = global_feat[obj][:, None].expand(-1, a.shape[1], -1)
        return torch.cat([glob, loc], dim=-1)

    def encode_from_condition(self, q: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`q (B, 28)` poses, `c (B, 512)` -> mu `(B, D)`, logvar `(B, D)`."""
        qn = self.normalizer.normalize(q.to(c.dtype).to(c.device))
        h = self.encoder(torch.cat([qn, c], dim=-1))
        return self.fc_mu(h), self.fc_logvar(h)

    def decode_from_condition(
        self, z: torch.Tensor, c: torch.Tensor, normalized: bool = False
    ) -> torch.Tensor:
        """`z (..., D)`, `c (..., 512)` -> poses `(..., 28)` (normalised poses if `normalized`)."""
        out = self.decoder(torch.cat([z.to(c.dtype), c], dim=-1))
        return out if normalized else self.normalizer.denormalize(out)

    # ------------------------------------------------------------------ main API
    def encode(
        self,
        points: torch.Tensor,
        q: torch.Tensor,
        assoc_idx: torch.Tensor,
        object_index: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior of grasps `q (B, 28)` on clouds `points` ((B|O|1, N, 3) or (N, 3)) at `assoc_idx (B,)`.

        Returns mu `(B, D)` and logvar `(B, D)`.
        """
        g, loc = self.encode_object(points)
        return self.encode_from_condition(q, self.condition(g, loc, assoc_idx, object_index))

    def decode(
        self,
        z: torch.Tensor,
        points: torch.Tensor,
        assoc_idx: torch.Tensor,
        object_index: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Poses `(B, 28)` from latents `z (B, D)` on clouds ((B|O|1, N, 3) or (N, 3)) at `assoc_idx (B,)`."""
        g, loc = self.encode_object(points)
        return self.decode_from_condition(z, self.condition(g, loc, assoc_idx, object_index))

    def forward(
        self,
        points: torch.Tensor,
        q: torch.Tensor,
        assoc_idx: torch.Tensor,
        object_index: torch.Tensor | None = None,
        sample_latent: bool | None = None,
    ) -> dict[str, torch.Tensor]:
        """Encode, reparameterise, decode.

        Args:
            points: `(B, N, 3)` clouds, or `(O, N, 3)` with `object_index (B,)`, or one `(N, 3)` cloud.
            q: `(B, 28)` poses; assoc_idx: `(B,)` associated point indices.
            sample_latent: draw `z = mu + sigma * eps` (default: in training mode) or use `z = mu`.
        Returns:
            dict: ``q_hat (B, 28)`` pose space, ``q_hat_norm (B, 28)`` normalised, ``mu``, ``logvar``,
            ``z`` `(B, D)`.
        """
        g, loc = self.encode_object(points)
        c = self.condition(g, loc, assoc_idx, object_index)
        mu, logvar = self.encode_from_condition(q, c)
        if self.training if sample_latent is None else sample_latent:
            z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        else:
            z = mu
        q_hat_norm = self.decode_from_condition(z, c, normalized=True)
        return {
            "q_hat": self.normalizer.denormalize(q_hat_norm),
            "q_hat_norm": q_hat_norm,
            "mu": mu,
            "logvar": logvar,
            "z": z,
        }

    @staticmethod
    def _randn(
        shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device
    ) -> torch.Tensor:
        dev = generator.device if generator is not None else device
        return torch.randn(shape, generator=generator, device=dev).to(device)

    @staticmethod
    def _randint(
        high: int, shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device
    ) -> torch.Tensor:
        dev = generator.device if generator is not None else device
        return torch.randint(0, high, shape, generator=generator, device=dev).to(device)

    def _decode_chunked(self, z: torch.Tensor, c: torch.Tensor, chunk: int) -> torch.Tensor:
        """`z (M, D)`, `c (M, 512)` -> `(M, 28)`, decoded `chunk` rows at a time."""
        if z.shape[0] == 0:
            return c.new_zeros(0, POSE_DIM)
        parts = [
            self.decode_from_condition(z[i : i + chunk], c[i : i + chunk]) for i in range(0, len(z), chunk)
        ]
        return torch.cat(parts)

    @torch.no_grad()
    def sample(
        self,
        points: torch.Tensor,
        n: int,
        assoc_idx: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        features: tuple[torch.Tensor, torch.Tensor] | None = None,
        chunk: int = 65536,
    ) -> torch.Tensor:
        """Pure synthesis: `z ~ N(0, I)` decoded with each object's condition.

        Call ``model.eval()`` first (BatchNorm running statistics). Random draws, in this order:
        associated points (uniform over cloud indices, when `assoc_idx` is None), then z, both from
        `generator` (on its own device, then moved), so a seeded generator gives identical output.

        Args:
            points: `(B, N, 3)` clouds, or one cloud `(N, 3)`.
            n: grasps per cloud.
            assoc_idx: `(B, n)` (or `(n,)` for one cloud) associated point indices; None: uniform.
            features: precomputed :meth:`encode_object` output for `points` (skips PointNet).
        Returns:
            `(B, n, 28)` poses for `(B, N, 3)` input; `(n, 28)` for a single `(N, 3)` cloud.
        """
        single = points.dim() == 2
        g, loc = features if features is not None else self.encode_object(points)
        B, N = loc.shape[0], loc.shape[1]
        dev = g.device
        if assoc_idx is None:
            a = self._randint(N, (B, n), generator, dev)
        else:
            a = assoc_idx.to(dev).long().reshape(B, n)
        z = self._randn((B, n, self.latent_dim), generator, dev).to(g.dtype)
        c = self.condition(g, loc, a)  # (B, n, 512)
        out = self._decode_chunked(z.reshape(B * n, -1), c.reshape(B * n, -1), chunk).reshape(B, n, POSE_DIM)
        return out[0] if single else out

    @torch.no_grad()
    def expand(
        self,
        points: torch.Tensor,
        q: torch.Tensor,
        assoc_idx: torch.Tensor,
        n_per: int,
        z_noise: float = 1.0,
        assoc_jitter: int = 0,
        generator: torch.Generator | None = None,
        chunk: int = 65536,
    ) -> torch.Tensor:
        """Dataset expansion: variations of known grasps.

        Each grasp is encoded to (mu, sigma); every variation decodes ``z = mu + z_noise * sigma * eps``
        (``z_noise = 0``: z = mu) with the associated point replaced, when ``assoc_jitter = k > 1``, by
        one of the k cloud points nearest to the original one (itself included), uniformly. Call
        ``model.eval()`` first. Draws (from `generator`): eps, then the neighbour choice.

        Args:
            points: `(B, N, 3)` clouds, or one cloud `(N, 3)` shared by all grasps.
            q: `(B, 28)` known grasps; assoc_idx: `(B,)` their associated points.
            n_per: variations per grasp.
        Returns:
            `(B, n_per, 28)` poses.
        """
        g, loc = self.encode_object(points)
        B = q.shape[0]
        dev = g.device
        a = assoc_idx.to(dev).long()
        c = self.condition(g, loc, a)  # (B, 512)
        mu, logvar = self.encode_from_condition(q, c)
        eps = self._randn((B, n_per, self.latent_dim), generator, dev).to(mu.dtype)
        z = mu[:, None] + z_noise * torch.exp(0.5 * logvar)[:, None] * eps  # (B, n_per, D)
        if assoc_jitter > 1:
            p = points.to(device=dev, dtype=g.dtype)
            p = p.unsqueeze(0).expand(B, -1, -1) if p.dim() == 2 else p  # (B, N, 3)
            anchor = gather_points(p, a)[:, None]  # (B, 1, 3)
            d = torch.cdist(anchor, p, compute_mode="donot_use_mm_for_euclid_dist")[:, 0]  # (B, N)
            k = min(assoc_jitter, p.shape[1])
            nbr = d.topk(k, dim=1, largest=False).indices  # (B, k)
            pick = self._randint(k, (B, n_per), generator, dev)
            a2 = torch.gather(nbr, 1, pick)  # (B, n_per)
        else:
            a2 = a[:, None].expand(B, n_per)
        obj = torch.arange(B, device=dev) if g.shape[0] == B else torch.zeros(B, dtype=torch.long, device=dev)
        c2 = self.condition(g, loc, a2, obj)  # (B, n_per, 512)
        out = self._decode_chunked(z.reshape(B * n_per, -1), c2.reshape(B * n_per, -1), chunk)
        return out.reshape(B, n_per, POSE_DIM)

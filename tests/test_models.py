"""PointNet + grasp CVAE: shapes, parameter counts of the write-up tables, losses, sampling, expansion."""

from __future__ import annotations

import io
import math

import pytest
import torch

from dexlite_core.config import EnergyWeights, TrainConfig
from dexlite_core.hand.rotation import euler_to_matrix
from dexlite_core.models import (
    PALM_CENTRE,
    GraspCVAE,
    PointNet,
    PoseNormalizer,
    associated_point_index,
    kl_divergence,
    nearest_point_index,
    reconstruction_loss,
    total_loss,
)


def n_params(*modules: torch.nn.Module) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


def cloud(n: int = 256, seed: int = 0, radius: float = 0.05) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    p = torch.randn(n, 3, generator=g)
    return radius * p / p.norm(dim=1, keepdim=True)


def random_poses(model: GraspCVAE, B: int, seed: int = 0) -> torch.Tensor:
    """Poses inside the normaliser's box: t ~ N(0, 8 cm), euler U(-3, 3), joints within limits."""
    g = torch.Generator().manual_seed(seed)
    lo = model.normalizer.offset - model.normalizer.scale
    hi = model.normalizer.offset + model.normalizer.scale
    t = 0.08 * torch.randn(B, 3, generator=g)
    e = (torch.rand(B, 3, generator=g) * 2 - 1) * 3.0
    j = lo[6:] + (hi[6:] - lo[6:]) * torch.rand(B, 22, generator=g)
    return torch.cat([t, e, j], dim=1)


@pytest.fixture(scope="module")
def model() -> GraspCVAE:
    torch.manual_seed(0)
    return GraspCVAE.from_config(TrainConfig()).eval()


# ------------------------------------------------------------------ architecture


def test_parameter_counts_match_appendix(model: GraspCVAE) -> None:
    # PointNet: conv (c_in * c_out weights + c_out bias) + BatchNorm (gamma, beta: 2 * c_out)
    conv1 = 3 * 64 + 64 + 2 * 64  # 384
    conv2 = 64 * 128 + 128 + 2 * 128  # 8,576
    conv3 = 128 * 1024 + 1024 + 2 * 1024  # 134,144
    conv4 = 1024 * 256 + 256 + 2 * 256  # 262,912
    pointnet = conv1 + conv2 + conv3 + conv4
    assert pointnet == 406_016
    assert n_params(model.pointnet) == pointnet
    # encoder: FC1 540->256, FC2 256->512, FC3 512->256, FC_mu 256->256, FC_sigma 256->256
    encoder = (540 * 256 + 256) + (256 * 512 + 512) + (512 * 256 + 256) + 2 * (256 * 256 + 256)
    assert encoder == 532_992
    assert n_params(model.encoder, model.fc_mu, model.fc_logvar) == encoder
    # decoder: FC1 768->256, FC2 256->512, FC3 512->256, FC_out 256->28
    decoder = (768 * 256 + 256) + (256 * 512 + 512) + (512 * 256 + 256) + (256 * 28 + 28)
    assert decoder == 466_972
    assert n_params(model.decoder) == decoder
    assert n_params(model) == pointnet + encoder + decoder == 1_405_980
    # layer widths, in order
    lin = [m for m in model.encoder if isinstance(m, torch.nn.Linear)] + [model.fc_mu, model.fc_logvar]
    assert [(m.in_features, m.out_features) for m in lin] == [
        (540, 256), (256, 512), (512, 256), (256, 256), (256, 256)
    ]  # fmt: skip
    lin = [m for m in model.decoder.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in lin] == [(768, 256), (256, 512), (512, 256), (256, 28)]
    convs = [m for m in model.pointnet.modules() if isinstance(m, torch.nn.Conv1d)]
    assert [(m.in_channels, m.out_channels, m.kernel_size) for m in convs] == [
        (3, 64, (1,)), (64, 128, (1,)), (128, 1024, (1,)), (1024, 256, (1,))
    ]  # fmt: skip


def test_pointnet_last_layer_has_no_activation() -> None:
    net = PointNet().eval()
    g, loc = net(cloud(128))
    assert (loc < 0).any(), "conv4 + BN output must be able to go negative (no ReLU)"
    torch.testing.assert_close(g, loc.max(dim=1).values)
    kinds = [type(m).__name__ for m in net.mlp]
    assert kinds[-2:] == ["Conv1d", "BatchNorm1d"] and kinds.count("ReLU") == 3


def test_shapes(model: GraspCVAE) -> None:
    pts = torch.stack([cloud(200, 0), cloud(200, 1)])  # (2, 200, 3)
    q = random_poses(model, 2)
    a = associated_point_index(pts, q)
    assert a.shape == (2,) and a.dtype == torch.long
    g, loc = model.encode_object(pts)
    assert g.shape == (2, 256) and loc.shape == (2, 200, 256)
    g1, loc1 = model.encode_object(pts[0])
    assert g1.shape == (1, 256) and loc1.shape == (1, 200, 256)
    out = model(pts, q, a)
    assert out["q_hat"].shape == (2, 28) and out["q_hat_norm"].shape == (2, 28)
    assert out["mu"].shape == out["logvar"].shape == out["z"].shape == (2, 256)
    mu, logvar = model.encode(pts, q, a)
    torch.testing.assert_close(mu, out["mu"])
    torch.testing.assert_close(model.decode(mu, pts, a), out["q_hat"])  # eval: z = mu
    assert model.sample(pts, 5, generator=torch.Generator().manual_seed(0)).shape == (2, 5, 28)
    assert model.sample(pts[0], 7, generator=torch.Generator().manual_seed(0)).shape == (7, 28)
    assert model.expand(pts, q, a, 3).shape == (2, 3, 28)
    assert model.expand(pts[0], q, a, 3, assoc_jitter=4).shape == (2, 3, 28)


def test_object_index_matches_repeated_clouds(model: GraspCVAE) -> None:
    clouds = torch.stack([cloud(128, 0), cloud(128, 1)])  # (O=2, N, 3)
    obj = torch.tensor([1, 0, 1, 1])
    q = random_poses(model, 4)
    a = associated_point_index(clouds[obj], q)
    ref = model(clouds[obj], q, a)
    got = model(clouds, q, a, object_index=obj)
    torch.testing.assert_close(got["q_hat"], ref["q_hat"])
    torch.testing.assert_close(got["mu"], ref["mu"])


def test_global_feature_permutation_invariant(model: GraspCVAE) -> None:
    pts = cloud(300)
    perm = torch.randperm(300, generator=torch.Generator().manual_seed(3))
    g, loc = model.encode_object(pts)
    gp, locp = model.encode_object(pts[perm])
    torch.testing.assert_close(gp, g)
    torch.testing.assert_close(locp[0], loc[0, perm])
    # ... and the whole model, with the associated point following the permutation
    q = random_poses(model, 1)
    a = associated_point_index(pts, q)
    inv = torch.argsort(perm)
    torch.testing.assert_close(model(pts[perm], q, inv[a])["q_hat"], model(pts, q, a)["q_hat"])
    # a different cloud gives a different global feature
    assert not torch.allclose(model.encode_object(cloud(300, seed=9))[0], g)


# ------------------------------------------------------------------ normaliser, associated point


def test_pose_normalizer_round_trip_and_limits() -> None:
    from dexlite_core.hand.asset import joint_limits

    norm = PoseNormalizer()
    lo, hi = (torch.as_tensor(x, dtype=torch.float32) for x in joint_limits())
    q = torch.zeros(2, 28)
    q[0, 6:], q[1, 6:] = lo, hi
    q[0, :3], q[1, :3] = torch.tensor([0.1, -0.1, 0.05]), torch.tensor([-0.1, 0.0, 0.1])
    q[0, 3:6], q[1, 3:6] = math.pi, -math.pi / 2
    qn = norm.normalize(q)
    torch.testing.assert_close(qn[0, 6:], -torch.ones(22))
    torch.testing.assert_close(qn[1, 6:], torch.ones(22))
    torch.testing.assert_close(qn[:, :3], q[:, :3] / 0.1)
    torch.testing.assert_close(qn[:, 3:6], q[:, 3:6] / math.pi)
    torch.testing.assert_close(norm.denormalize(qn), q)
    data = torch.randn(500, 28) * torch.linspace(0.01, 2, 28) + 3
    fitted = PoseNormalizer.from_data(data)
    z = fitted.normalize(data)
    torch.testing.assert_close(z.mean(0), torch.zeros(28), atol=1e-4, rtol=0)
    torch.testing.assert_close(z.std(0, unbiased=False), torch.ones(28), atol=1e-4, rtol=0)


def test_associated_point_is_nearest_to_palm_centre() -> None:
    pts = cloud(512)
    q = torch.zeros(3, 28)
    q[:, 3:6] = torch.tensor([[0.0, 0.0, 0.0], [math.pi / 2, 0.0, 0.0], [0.3, -1.0, 2.0]])
    q[:, :3] = torch.tensor([[-0.011, 0.08, -0.038], [0.0, 0.0, -0.09], [0.05, 0.05, 0.05]])
    R = euler_to_matrix(q[:, 3:6])
    centre = (R @ torch.tensor(PALM_CENTRE)) + q[:, :3]
    brute = ((pts[None] - centre[:, None]) ** 2).sum(-1).argmin(1)
    assert torch.equal(associated_point_index(pts, q), brute)
    assert torch.equal(associated_point_index(pts.expand(3, -1, -1), q), brute)
    # palm centre straight above the object's +y pole, palmar side (-y) facing it: the point is the pole
    assert pts[brute[0], 1] > 0.047
    assert torch.equal(nearest_point_index(pts, pts[[5, 17]]), torch.tensor([5, 17]))


# ------------------------------------------------------------------ losses


def test_kl_zero_at_prior_and_positive_elsewhere() -> None:
    z = torch.zeros(4, 256)
    assert kl_divergence(z, z).item() == 0.0
    mu = torch.full((4, 256), 0.1)
    assert kl_divergence(mu, z).item() == pytest.approx(0.5 * 256 * 0.01, rel=1e-5)
    assert kl_divergence(z, torch.full((4, 256), -1.0)).item() > 0
    assert kl_divergence(z, torch.full((4, 256), 1.0)).item() > 0
    # the write-up's formula, term by term, on random inputs
    g = torch.Generator().manual_seed(0)
    mu, lv = torch.randn(5, 256, generator=g), torch.randn(5, 256, generator=g)
    ref = (
        -1
        / (2 * 5)
        * sum(float(1 + lv[b, i] - mu[b, i] ** 2 - lv[b, i].exp()) for b in range(5) for i in range(256))
    )
    assert kl_divergence(mu, lv).item() == pytest.approx(ref, rel=1e-4)


def test_reconstruction_loss_and_total() -> None:
    q = torch.zeros(2, 28)
    q_hat = q.clone()
    q_hat[0, 0], q_hat[1, 10] = 3.0, 4.0
    assert reconstruction_loss(q, q_hat).item() == pytest.approx((9 + 16) / 2)
    norm = PoseNormalizer(torch.zeros(28), torch.full((28,), 2.0))
    assert reconstruction_loss(q, q_hat, norm).item() == pytest.approx((9 + 16) / 8)
    energy = {"E_fc": torch.tensor([1.0, 3.0]), "E_dis": torch.tensor([0.5, 0.5]), "joints": torch.ones(2)}
    out = total_loss(torch.tensor(2.0), torch.tensor(10.0), energy, 1.0, 0.001, EnergyWeights())
    assert out["loss"].item() == pytest.approx(2.0 + 0.01 + 1.0 * 2.0 + 100.0 * 0.5 + 1.0 * 1.0)
    assert out["E_fc"].item() == pytest.approx(2.0) and "E_pen" not in out
    with pytest.raises(KeyError):
        total_loss(torch.tensor(0.0), torch.tensor(0.0), {"E_bogus": torch.ones(2)})


# ------------------------------------------------------------------ learning


def test_tiny_overfit_reduces_reconstruction_tenfold() -> None:
    torch.manual_seed(0)
    model = GraspCVAE().train()
    pts = cloud(256)
    q = random_poses(model, 8, seed=1)
    a = associated_point_index(pts, q)

    def recon() -> float:
        with torch.no_grad():
            out = model(pts, q, a, sample_latent=False)
        return reconstruction_loss(q, out["q_hat"], model.normalizer).item()

    start = recon()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(200):
        out = model(pts, q, a)
        loss = reconstruction_loss(q, out["q_hat"], model.normalizer) + 1e-3 * kl_divergence(
            out["mu"], out["logvar"]
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
    end = recon()
    assert end < start / 10, (start, end)


# ------------------------------------------------------------------ sampling and expansion


def test_sampling_deterministic_per_seed(model: GraspCVAE) -> None:
    pts = cloud(256)
    a = model.sample(pts, 32, generator=torch.Generator().manual_seed(7))
    b = model.sample(pts, 32, generator=torch.Generator().manual_seed(7))
    c = model.sample(pts, 32, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    assert torch.isfinite(a).all()
    assert a.std(dim=0).min() > 0  # the samples differ from one another
    # precomputed features give the same samples
    feats = model.encode_object(pts)
    d = model.sample(pts, 32, generator=torch.Generator().manual_seed(7), features=feats)
    torch.testing.assert_close(d, a)
    # explicit associated points are used as given
    idx = torch.full((32,), 3)
    e = model.sample(pts, 32, assoc_idx=idx, generator=torch.Generator().manual_seed(7))
    assert not torch.allclose(e, a)


def test_expand_small_noise_stays_close(model: GraspCVAE) -> None:
    pts = cloud(256)
    q = random_poses(model, 4, seed=2)
    a = associated_point_index(pts, q)
    with torch.no_grad():
        mean_decode = model(pts, q, a, sample_latent=False)["q_hat"]
    g = torch.Generator().manual_seed(0)
    exact = model.expand(pts, q, a, 3, z_noise=0.0, generator=g)
    torch.testing.assert_close(exact, mean_decode[:, None].expand(-1, 3, -1))
    norm = model.normalizer
    small = norm.normalize(model.expand(pts, q, a, 16, z_noise=0.01, generator=g))
    big = norm.normalize(model.expand(pts, q, a, 16, z_noise=1.0, generator=g))
    ref = norm.normalize(mean_decode)[:, None]
    d_small = (small - ref).norm(dim=-1).mean()
    d_big = (big - ref).norm(dim=-1).mean()
    assert 0 < d_small < 0.05 * d_big
    jit = model.expand(pts, q, a, 16, z_noise=0.0, assoc_jitter=8, generator=g)
    assert torch.isfinite(jit).all()
    assert (jit - mean_decode[:, None]).abs().amax() > 0  # a moved associated point changes the grasp


# ------------------------------------------------------------------ devices and checkpoints


def test_state_dict_round_trip_is_self_contained(model: GraspCVAE) -> None:
    custom = GraspCVAE(normalizer=PoseNormalizer.from_data(torch.randn(50, 28))).eval()
    buf = io.BytesIO()
    torch.save(custom.state_dict(), buf)
    assert "normalizer.offset" in custom.state_dict() and "normalizer.scale" in custom.state_dict()
    fresh = GraspCVAE().eval()
    fresh.load_state_dict(torch.load(io.BytesIO(buf.getvalue()), weights_only=True))
    torch.testing.assert_close(fresh.normalizer.scale, custom.normalizer.scale)
    pts = cloud(128)
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    assert torch.equal(fresh.sample(pts, 8, generator=g1), custom.sample(pts, 8, generator=g2))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")
def test_runs_on_cuda(model: GraspCVAE) -> None:
    dev = torch.device("cuda")
    pts = cloud(256)
    q = random_poses(model, 4)
    a = associated_point_index(pts, q)
    m = GraspCVAE().to(dev).eval()
    m.load_state_dict(model.state_dict())
    out = m(pts.to(dev), q.to(dev), a.to(dev))
    assert out["q_hat"].device.type == "cuda"
    assert associated_point_index(pts.to(dev), q.to(dev)).device.type == "cuda"
    torch.testing.assert_close(out["q_hat"].cpu(), model(pts, q, a)["q_hat"], atol=1e-3, rtol=1e-3)
    s1 = m.sample(pts.to(dev), 16, generator=torch.Generator().manual_seed(0))  # CPU generator
    s2 = m.sample(pts.to(dev), 16, generator=torch.Generator(device=dev).manual_seed(0))
    assert s1.device.type == s2.device.type == "cuda" and s1.shape == s2.shape == (16, 28)
    assert m.expand(pts.to(dev), q.to(dev), a.to(dev), 4, assoc_jitter=4).device.type == "cuda"
    # training step on the device
    m.train()
    out = m(pts.to(dev), q.to(dev), a.to(dev))
    (
        reconstruction_loss(q.to(dev), out["q_hat"], m.normalizer) + kl_divergence(out["mu"], out["logvar"])
    ).backward()
    assert m.fc_mu.weight.grad is not None and m.fc_mu.weight.grad.device.type == "cuda"

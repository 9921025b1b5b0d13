"""The mathematics of the VAE family, checked against closed forms.

A linear-Gaussian model p(z) = N(0, I), p(x|z) = N(Wz + b, σ²I) has the exact marginal
p(x) = N(b, WWᵀ + σ²I) and, when WᵀW is diagonal, a diagonal exact posterior
p(z|x) = N(Σ Wᵀ(x − b)/σ², Σ) with Σ = (I + WᵀW/σ²)⁻¹ — so the bounds can be compared with
the truth, and the encoder can be set to the exact posterior.
"""

import math

import pytest
import torch
from torch.distributions import Cauchy, Independent, MultivariateNormal, Normal, kl_divergence

from aekit.latents import DiagonalNormal, GaussianLatent, sharded_noise
from aekit.likelihoods import FixedGaussianLikelihood
from aekit.models.parts import Decoder
from aekit.models.vae import VAE
from aekit.objectives import KLSchedule, free_bits, kl_per_dimension, kl_term, log_mean_exp
from aekit.priors import StandardNormalPrior


@pytest.fixture(autouse=True)
def _float64():
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(torch.float32)


def test_analytic_kl_matches_monte_carlo():
    torch.manual_seed(0)
    q = DiagonalNormal(torch.randn(3, 4), torch.rand(3, 4) + 0.3)
    p = StandardNormalPrior(4).double()()
    z = q.sample((200_000,))
    mc = (q.log_prob(z) - p.log_prob(z)).mean(0)
    exact = kl_divergence(q, p)
    assert exact.shape == (3,)
    torch.testing.assert_close(exact, mc, atol=0.02, rtol=0.01)
    # per-dimension terms add up to the total
    torch.testing.assert_close(kl_per_dimension(q, p).sum(-1), exact)


def test_monte_carlo_fallback_matches_quadrature_where_torch_has_no_closed_form():
    """KL(N(μ, σ²) ‖ Cauchy(0, γ)) is not registered in torch; compare with numerical integration."""
    torch.manual_seed(1)
    mu, sigma, gamma = torch.tensor([[0.3, -1.2]]), torch.tensor([[0.7, 1.5]]), 1.3
    q = Independent(Normal(mu, sigma), 1)
    p = Independent(Cauchy(torch.zeros(2), torch.full((2,), gamma)), 1)
    with pytest.raises(NotImplementedError):
        kl_divergence(q, p)
    # KL = −H(q) − E_q[log p(z)], the expectation by the trapezoid rule on a fine grid (per dimension).
    grid = torch.linspace(-15, 15, 200_001)[:, None]  # (G, 1)
    qn, pn = Normal(mu[0], sigma[0]), Cauchy(torch.zeros(2), torch.full((2,), gamma))
    cross = torch.trapezoid(qn.log_prob(grid).exp() * pn.log_prob(grid), grid[:, 0], dim=0)
    exact = (-qn.entropy() - cross).sum()
    estimate = kl_term(q, p, q.rsample((400_000,)))
    torch.testing.assert_close(estimate, exact.expand(1), atol=0.01, rtol=0)


class ExactPosteriorEncoder(torch.nn.Module):
    """q(z|x) = the exact posterior of the linear-Gaussian model (optionally perturbed)."""

    def __init__(self, W, b, sigma, loc_shift=0.0, scale_factor=1.0):
        super().__init__()
        J = W.shape[1]
        self.cov = torch.linalg.inv(torch.eye(J) + W.T @ W / sigma ** 2)
        assert torch.allclose(self.cov, torch.diag(torch.diagonal(self.cov)))
        self.W, self.b, self.sigma = W, b, sigma
        self.loc_shift, self.scale_factor = loc_shift, scale_factor

    def forward(self, x, cond=None):
        loc = (x - self.b) @ self.W @ self.cov / self.sigma ** 2 + self.loc_shift
        scale = torch.diagonal(self.cov).sqrt().expand_as(loc) * self.scale_factor
        return DiagonalNormal(loc, scale)


class LinearBody(torch.nn.Module):
    def __init__(self, W, b):
        super().__init__()
        self.W, self.b = W, b

    def forward(self, z, cond=None):
        return z @ self.W.T + self.b


def linear_gaussian(seed=0, D=6, J=2, sigma=0.5, **perturb):
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(D, J, generator=g))
    W = Q * torch.tensor([2.0, 0.8])  # orthogonal columns, so WᵀW is diagonal
    b = torch.randn(D, generator=g)
    model = VAE(ExactPosteriorEncoder(W, b, sigma, **perturb), Decoder(LinearBody(W, b), FixedGaussianLikelihood(sigma)),
                StandardNormalPrior(J).double())
    marginal = MultivariateNormal(b, W @ W.T + sigma ** 2 * torch.eye(D))
    x = marginal.sample((5,))
    return model, marginal, x


def test_elbo_equals_log_px_when_q_is_the_exact_posterior():
    torch.manual_seed(0)
    model, marginal, x = linear_gaussian()
    log_px = marginal.log_prob(x)
    # Every importance weight equals p(x) exactly: the bound is tight for any number of samples.
    log_w = model.log_weights(x, num_samples=7)
    torch.testing.assert_close(log_w, log_px.expand_as(log_w), atol=1e-9, rtol=0)
    rec, kl, _ = model.elbo_terms(x, num_samples=20_000)
    torch.testing.assert_close(-(rec + kl), log_px, atol=0.02, rtol=0)


def test_elbo_is_below_log_px_by_the_posterior_kl():
    torch.manual_seed(0)
    model, marginal, x = linear_gaussian(loc_shift=0.5, scale_factor=1.6)
    log_px = marginal.log_prob(x)
    rec, kl, qz = model.elbo_terms(x, num_samples=50_000)
    elbo = -(rec + kl)
    exact_posterior = DiagonalNormal(qz.loc - 0.5, qz.scale / 1.6)
    gap = kl_divergence(qz, exact_posterior)
    assert (gap > 0.1).all()
    assert (elbo < log_px).all()
    torch.testing.assert_close(elbo, log_px - gap, atol=0.03, rtol=0)


def test_importance_weighted_bound_rises_with_k_towards_log_px():
    torch.manual_seed(0)
    model, marginal, x = linear_gaussian(loc_shift=0.7, scale_factor=2.0)
    log_px = marginal.log_prob(x)
    reps = 2000
    bounds = []
    for k in (1, 4, 16, 64, 256):
        log_w = model.log_weights(x.repeat(reps, 1), num_samples=k)  # (k, reps·B)
        bounds.append(log_mean_exp(log_w, 0).reshape(reps, -1).mean(0))
    bounds = torch.stack(bounds)  # (K, B)
    assert (bounds[1:] >= bounds[:-1] - 1e-3).all(), bounds
    assert ((bounds[-1] - bounds[0]) > 0.1).all()
    assert (bounds <= log_px + 1e-2).all()
    torch.testing.assert_close(bounds[-1], log_px, atol=0.05, rtol=0)


def test_chunked_log_likelihood_estimate_agrees_with_the_exact_marginal():
    torch.manual_seed(0)
    model, marginal, x = linear_gaussian(loc_shift=0.05, scale_factor=1.2)
    # 20000 samples with chunks forced small, so the logsumexp merging across chunks is exercised
    import aekit.models.vae as vae_module
    old, vae_module._LOGLIK_CHUNK_ELEMENTS = vae_module._LOGLIK_CHUNK_ELEMENTS, 5 * 6 * 777
    try:
        estimate = model.log_likelihood(x, num_samples=20_000).double()
    finally:
        vae_module._LOGLIK_CHUNK_ELEMENTS = old
    torch.testing.assert_close(estimate, marginal.log_prob(x), atol=0.01, rtol=0)


def test_reparameterized_gradient_matches_the_analytic_gradient():
    torch.manual_seed(0)
    loc = torch.tensor([0.5, -1.0], requires_grad=True)
    scale = torch.tensor([0.8, 1.3], requires_grad=True)
    z = DiagonalNormal(loc, scale).rsample((200_000,))
    (z ** 2).sum(-1).mean().backward()  # E[Σ z²] = Σ μ² + σ²
    torch.testing.assert_close(loc.grad, 2 * loc.detach(), atol=0.02, rtol=0)
    torch.testing.assert_close(scale.grad, 2 * scale.detach(), atol=0.02, rtol=0)


def test_gradients_flow_from_the_elbo_into_the_encoder():
    torch.manual_seed(0)
    head = GaussianLatent(5, 3).double()
    qz = head(torch.randn(4, 5))
    z = qz.rsample()
    (z ** 2).sum().backward()
    assert head.proj.weight.grad is not None and head.proj.weight.grad.abs().sum() > 0


def test_sharded_noise_gives_each_rank_its_slice_of_the_global_noise():
    loc, scale = torch.zeros(8, 3), torch.ones(8, 3)
    torch.manual_seed(5)
    whole = DiagonalNormal(loc, scale).rsample((2,))
    parts = []
    for rank in range(2):
        torch.manual_seed(5)
        with sharded_noise(rank, 2):
            parts.append(DiagonalNormal(loc[:4], scale[:4]).rsample((2,)))
    torch.testing.assert_close(torch.cat(parts, 1), whole)


def test_free_bits_batch_mean_and_gradient():
    kl = torch.tensor([[0.05, 2.0, 0.3], [0.15, 1.0, 0.5]], requires_grad=True)
    lam = 0.2
    per_example = free_bits(kl, lam)
    expected = torch.clamp(kl.mean(0), min=lam).sum()
    torch.testing.assert_close(per_example.mean(), expected)
    per_example.mean().backward()
    # below λ on average: no gradient; above: the plain KL gradient
    torch.testing.assert_close(kl.grad, torch.tensor([[0.0, 0.5, 0.5], [0.0, 0.5, 0.5]]))


def test_kl_schedules():
    assert KLSchedule("constant", beta=4.0)(10) == 4.0
    lin = KLSchedule("linear", beta=1.0, warmup_steps=100)
    assert lin(0) == 0.0 and lin(50) == 0.5 and lin(100) == 1.0 and lin(1000) == 1.0
    cyc = KLSchedule("cyclical", beta=1.0, cycle_steps=100, ratio=0.5)
    assert cyc(0) == 0.0 and cyc(25) == 0.5 and cyc(50) == 1.0 and cyc(99) == 1.0 and cyc(100) == 0.0

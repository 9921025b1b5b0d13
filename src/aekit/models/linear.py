"""The linear line: linear autoencoder, PCA, probabilistic PCA.

* ``linear-ae``: encoder z = Aᵀx + a, decoder x̂ = Bz + b, squared error, trained by the gradient
  trainer. Baldi & Hornik (1989): every local minimum of the squared error is global and the
  decoder's column space is the span of the top-d eigenvectors of the data covariance (the basis
  itself is free up to an invertible map), with minimal loss ½ Σ_{j>d} λ_j per example (for the
  unit-σ Gaussian likelihood, −log p = ½‖x − x̂‖² + (D/2) log 2π). Training starts from an
  orthonormal, centred map (:func:`initialize_linear_ae`); how close it gets is measured by
  :func:`aekit.linalg.subspace_convergence`.
* ``pca``: the same composition solved in closed form: A = B = U_d (top-d eigenvectors), b = x̄.
* ``ppca``: x = Wz + μ + ε, z ~ N(0, I_q), ε ~ N(0, σ²I) (Tipping & Bishop 1999), fitted by closed-form
  maximum likelihood or EM through the scikit-learn style :class:`aekit.models.ppca.PPCA`; the run
  stores μ, W, σ² and the model answers the common face: the encoder is the exact posterior p(z|x)
  and ``log_likelihood`` the exact marginal N(μ, WWᵀ + σ²I).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.distributions import Independent, LowRankMultivariateNormal, MultivariateNormal

from ..capabilities import LOG_LIKELIHOOD, POSTERIOR, SAMPLE, SUBSPACE
from ..config import DataShape, ModelConfig
from ..likelihoods import FixedGaussianLikelihood
from ..latents import PointLatent
from ..linalg import column_mean, pca_subspace
from ..priors import StandardNormalPrior
from .parts import Decoder, Encoder
from .vae import Autoencoder


class IdentityBody(nn.Module):
    """No hidden layer: the latent head sees x itself."""

    def __init__(self, data_dim: int):
        super().__init__()
        self.out_features = data_dim

    def forward(self, x, cond=None):
        return x


class LinearBody(nn.Module):
    def __init__(self, latent_dim: int, data_dim: int):
        super().__init__()
        self.linear = nn.Linear(latent_dim, data_dim)

    def forward(self, z, cond=None):
        return self.linear(z)


class LinearAutoencoder(Autoencoder):
    """Linear encoder and decoder with a fixed-σ Gaussian likelihood (squared error)."""

    base_capabilities = frozenset({SUBSPACE})

    def decoder_basis(self) -> torch.Tensor:
        """The decoder's columns B (D, d): the subspace a linear autoencoder learns."""
        return self.decoder.body.linear.weight.detach()


def build_linear_ae(cfg: ModelConfig, shape: DataShape) -> LinearAutoencoder:
    encoder = Encoder(IdentityBody(shape.data_dim), PointLatent(shape.data_dim, cfg.latent_dim))
    decoder = Decoder(LinearBody(cfg.latent_dim, shape.data_dim), FixedGaussianLikelihood(cfg.sigma))
    return LinearAutoencoder(encoder, decoder)


def _set_centred_map(model: LinearAutoencoder, basis: torch.Tensor, mean: torch.Tensor) -> None:
    """Encoder z = Qᵀ(x − x̄), decoder x̂ = Q z + x̄ for a (D, d) basis Q with orthonormal columns."""
    model.encoder.head.proj.weight.copy_(basis.T)
    model.encoder.head.proj.bias.copy_(-(basis.T @ mean))
    model.decoder.body.linear.weight.copy_(basis)
    model.decoder.body.linear.bias.copy_(mean)


@torch.no_grad()
def fit_pca(model: LinearAutoencoder, x: torch.Tensor, run_cfg, progress: bool = True) -> LinearAutoencoder:
    """Closed form: encoder z = U_dᵀ(x − x̄), decoder x̂ = U_d z + x̄ (eigendecomposition of the covariance)."""
    mean = column_mean(x)
    basis, _ = pca_subspace(x, model.decoder_basis().shape[1], mean=mean)  # (D, d)
    _set_centred_map(model, basis, mean)
    return model


@torch.no_grad()
def initialize_linear_ae(model: LinearAutoencoder, x: torch.Tensor, run_cfg, progress: bool = True) -> None:
    """Start gradient training from a random orthonormal, balanced and centred map.

    A = B = Q with Q a uniformly random (Haar) D x d matrix with orthonormal columns, drawn with the
    run's ``--seed``; decoder bias b = x̄ (the training mean) and encoder bias a = −Qᵀx̄, so the
    first reconstruction is the orthogonal projection onto a random d-dimensional subspace through
    the mean. Why (measured on digits, d = 8, Adam, cosine schedule; benchmarks/linear_ae.py):

    * centred: with PyTorch's default init the biases start far from the mean, the residual has a
      large mean part, and the linear maps first fit E[x xᵀ] = S + x̄ x̄ᵀ, whose top direction is
      the mean (‖x̄‖² ≈ 10 against λ_1 ≈ 0.7 on digits): that detour costs most of a short run, and
      it bounds a stable step by the mean's curvature (SGD with momentum 0.9 and lr 0.1, batch 32,
      diverges from PyTorch's init and converges from this one);
    * orthonormal and balanced (AᵀB = I, A = B): the map starts as a projection, so what is left is
      the rotation of the subspace (Oja's subspace flow near A = B), whose slowest mode mixes u_d
      with u_{d+1} at a rate ∝ λ_d − λ_{d+1}; the default init spends steps first on the scale and
      balance of A and B.

    At the linear-ae defaults (Adam lr 5e-2, batch 32, cosine, 40 epochs; digits, d = 8, seeds 0-3)
    this start takes the worst max principal angle from 0.20 rad (PyTorch's default init) to 0.039
    rad, and the worst excess of the error over Σ_{j>d} λ_j from 7.5e-4 to 6.9e-5 (relative).
    """
    D, d = model.decoder_basis().shape
    generator = torch.Generator().manual_seed(run_cfg.train.seed)
    gaussian = torch.randn(D, d, generator=generator, dtype=torch.float64)
    Q, R = torch.linalg.qr(gaussian)  # (D, d), (d, d)
    Q = Q * torch.sign(R.diagonal())  # the sign fix that makes Q Haar-distributed (Mezzadri 2007)
    device = model.decoder_basis().device
    _set_centred_map(model, Q.to(device), column_mean(x).to(device))


def _ppca():
    """The module holding PPCA's formulas (imported on first use: it loads scikit-learn, which takes
    about a second, for its estimator)."""
    from . import ppca

    return ppca


class PPCAModel(nn.Module):
    """Probabilistic PCA as a module with the common face (buffers μ (D,), W (D, q), σ²).

    Every distribution comes from :mod:`aekit.models.ppca`, the one place the formulas live: the
    encoder is the exact posterior :func:`~aekit.models.ppca.posterior`, the decoder the observation
    model N(Wz + μ, σ²I), and ``log_likelihood`` the exact marginal N(μ, WWᵀ + σ²I) (NaN entries of x
    are treated as missing by both).
    """

    capabilities = frozenset({SAMPLE, LOG_LIKELIHOOD, POSTERIOR, SUBSPACE})
    likelihood_method = "exact"  # log p(x) in closed form, no importance sampling
    num_classes = None
    selection_metric = "neg_log_likelihood"

    def __init__(self, data_dim: int, latent_dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(data_dim))
        self.register_buffer("W", torch.zeros(data_dim, latent_dim))
        self.register_buffer("noise_variance", torch.ones(()))
        self.prior_module = StandardNormalPrior(latent_dim)

    def prior(self):
        return self.prior_module()

    def marginal(self) -> LowRankMultivariateNormal:
        """p(x) = N(μ, WWᵀ + σ²I), whose log_prob uses the Woodbury identity (no D×D inverse)."""
        return _ppca().marginal(self.mean, self.W, self.noise_variance)

    def encode(self, x, y=None) -> MultivariateNormal:
        """p(z|x) = N(M⁻¹Wᵀ(x − μ), σ²M⁻¹), M = WᵀW + σ²I (Bishop, PRML eq. 12.42)."""
        return _ppca().posterior(x, self.mean, self.W, self.noise_variance)

    def decode(self, z, y=None) -> Independent:
        """p(x|z) = N(Wz + μ, σ²I)."""
        return _ppca().observation_model(z, self.mean, self.W, self.noise_variance)

    def embed(self, x, y=None):
        return self.encode(x).mean

    def reconstruct(self, x, y=None):
        return self.decode(self.embed(x)).mean

    def log_likelihood(self, x, y=None, num_samples: int = 0) -> torch.Tensor:
        """Exact log p(x) per example; ``num_samples`` is ignored (no sampling is needed)."""
        return _ppca().log_marginal(x, self.mean, self.W, self.noise_variance)

    def evaluation_terms(self, x, y=None):
        return {"neg_log_likelihood": -self.log_likelihood(x)}

    @torch.no_grad()
    def sample(self, n: int, y=None) -> torch.Tensor:
        """Means W z + μ of p(x|z) for z ~ p(z) (the noise-free images, as the other models' samples)."""
        return self.decode(self.prior().sample((n,))).mean

    def decoder_basis(self) -> torch.Tensor:
        return self.W.detach()


def build_ppca(cfg: ModelConfig, shape: DataShape) -> PPCAModel:
    return PPCAModel(shape.data_dim, cfg.latent_dim)


@torch.no_grad()
def fit_ppca(model: PPCAModel, x: torch.Tensor, run_cfg, progress: bool = True) -> PPCAModel:
    """Fit μ, W, σ² with :class:`aekit.models.ppca.PPCA` (closed form, or EM from a random W seeded by
    the run's training seed ``--seed``) and copy them into the model's buffers."""
    cfg = run_cfg.model
    estimator = _ppca().PPCA(cfg.latent_dim, method=cfg.method, max_iter=cfg.max_iter, tol=cfg.tol,
                             random_state=run_cfg.train.seed).fit(x)
    model.mean.copy_(torch.as_tensor(estimator.mean_))
    model.W.copy_(torch.as_tensor(estimator.W_))
    model.noise_variance.fill_(float(estimator.noise_variance_))
    model.fit_info = {"n_iter": int(estimator.n_iter_), "converged": bool(estimator.converged_)}
    return model

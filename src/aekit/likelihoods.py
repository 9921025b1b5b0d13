"""Decoder likelihood heads: raw decoder output → p(x|z) as a torch distribution.

Every model's reconstruction term is ``-px.log_prob(x)`` (nats per example, summed over the
D data dimensions by ``Independent``); the choice of likelihood is this object, never an
``if loss == "mse"`` branch in a model. ``params_per_dim`` tells the decoder body how many raw
outputs to produce per data dimension (parameter-major layout: all locs, then all scales).
"""

from __future__ import annotations

import contextlib
import math
import os
import sys

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Bernoulli, Categorical, ContinuousBernoulli, Distribution, Independent, Normal

from .errors import AekitError


# Distributions here are built with validate_args=False: validation costs a reduction and a host sync
# each time, in the hot loop, and the data's range is checked once, up front (check_data_range).


# From this many z per x on, the product-and-softplus form of the Bernoulli log-probability is faster
# than the fused cross-entropy kernel over an expanded x (measured on the CPU: BENCHMARKS.md, "throughput").
_MANY_SAMPLES = 8


class FactorizedBernoulli(Independent):
    """∏_d Bern(x_d; σ(l_d)) over the last dimension: ``Independent(Bernoulli(logits), 1)`` with a faster log_prob.

        log p(x) = Σ_d [x_d l_d − softplus(l_d)]

    the binary cross-entropy's own formula. When many z share one x, as in importance sampling (logits
    (k, B, D), x (B, D)), it is computed as x·l (a product summed over d) and one softplus pass instead
    of an elementwise cross-entropy over an expanded x and a sum (log p(x) with k = 1000 took 0.65 s
    instead of 1.08 s: BENCHMARKS.md, "throughput"); with one z per x, by torch's fused
    cross-entropy kernel. Equal to Bernoulli's log_prob up to float rounding.
    """

    def __init__(self, logits: torch.Tensor):
        super().__init__(Bernoulli(logits=logits, validate_args=False), 1, validate_args=False)

    @property
    def logits(self) -> torch.Tensor:
        return self.base_dist.logits

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        logits = self.logits
        many = logits.dim() == value.dim() + 1 and logits.shape[1:] == value.shape and logits.shape[0] >= _MANY_SAMPLES
        if many:  # (k, B, D) against (B, D)
            value = value.to(logits.dtype)
            if _compiled_tail is not None and not (torch.is_grad_enabled() and logits.requires_grad):
                return _run_compiled(logits, value)
            return _bernoulli_log_prob_many(logits, value)
        # One z per x (training): torch's fused cross-entropy kernel, forward and backward, is fastest.
        logits, value = torch.broadcast_tensors(logits, value.to(logits.dtype))
        return -F.binary_cross_entropy_with_logits(logits, value, reduction="none").sum(-1)

    def expand(self, batch_shape, _instance=None):
        batch_shape = torch.Size(batch_shape)
        return FactorizedBernoulli(self.logits.expand(batch_shape + self.event_shape))


def _bernoulli_log_prob_many(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Σ_d [x_d l_d − softplus(l_d)] for logits (k, B, D) and x (B, D), eagerly."""
    # (l·x).sum, not einsum("kbd,bd->kb"): einsum lays the batch out for a bmm, twice the time here
    return (logits * x).sum(-1) - F.softplus(logits).sum(-1)


# ----------------------------------------------------------------------------- the compiled tail
# Factors (1 + e^{−|l|}) ∈ (1, 2] multiplied before one logarithm is taken: up to 16 of them stay
# ≤ 2^16, far inside float32's range, and the logarithm (the costly half of softplus) runs on D/16 values.
_FACTORS_PER_LOG = 16
_compiled_tail = None  # the compiled function while compiled_likelihood() is active


def bernoulli_log_prob_grouped(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Σ_d [x_d l_d − softplus(l_d)] over the last dimension, for logits (..., D) and x broadcast to them.

    With softplus(l) = relu(l) + log(1 + e^{−|l|}) and relu(l) − x·l = (1 − x)·relu(l) + x·relu(−l) ≥ 0,

        log p(x) = −Σ_d [relu(l_d) − x_d l_d] − Σ_g log Π_{d ∈ g} (1 + e^{−|l_d|}),

    the product over groups g of gcd(D, 16) dimensions (d, d + D/16, d + 2D/16, ... for D = 784), so one
    logarithm serves up to 16 dimensions. Both sums are of non-negative terms (no cancellation); it is as accurate as
    the softplus form, within 1e-6 of the float64 value relative to it (tested). Written for
    torch.compile, which fuses it into one pass over the logits; eagerly, pass after pass over memory,
    it is no faster than the softplus form.
    """
    d = logits.shape[-1]
    per_log = math.gcd(d, _FACTORS_PER_LOG)
    penalty = (logits.clamp_min(0) - x * logits).sum(-1)
    factors = (1 + torch.exp(-logits.abs())).reshape(*logits.shape[:-1], per_log, d // per_log).prod(-2)
    return -(penalty + factors.log().sum(-1))


def cxx_compiler_found() -> bool:
    """Whether a C++ compiler (what torch.compile's CPU backend builds its kernels with) is on the PATH."""
    import shutil

    return any(shutil.which(name) for name in (os.environ.get("CXX", "c++"), "g++", "clang++"))


def likelihood_is_compiled() -> bool:
    """Whether :func:`compiled_likelihood` is active (and compiling has not failed)."""
    return _compiled_tail is not None


def _run_compiled(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    global _compiled_tail
    try:
        return _compiled_tail(logits, x)
    except Exception as e:  # no C++ compiler, an unsupported platform: the eager form, said once
        _compiled_tail = None
        print(f"--compile: torch.compile failed here ({type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}); "
              f"computing log p(x) without it", file=sys.stderr)
        return _bernoulli_log_prob_many(logits, x)


@contextlib.contextmanager
def compiled_likelihood():
    """Within: the Bernoulli log-probability of many z per x without gradient (importance sampling) runs
    as :func:`bernoulli_log_prob_grouped` compiled by ``torch.compile`` (inductor: a C++ compiler is
    needed; the first call compiles, about half a minute, cached afterwards). Where compiling fails, one
    line says so and the eager form is used. Importance sampling with k = 5000 on MNIST: BENCHMARKS.md §1."""
    global _compiled_tail
    previous = _compiled_tail
    _compiled_tail = torch.compile(bernoulli_log_prob_grouped, dynamic=True)
    try:
        yield
    finally:
        _compiled_tail = previous


class BernoulliLikelihood(nn.Module):
    """p(x|z) = ∏_d Bern(x_d; σ(logits_d)); −log p is the binary cross-entropy. Needs x ∈ [0, 1]."""

    params_per_dim = 1
    data_range = (0.0, 1.0)
    discrete = True  # a distribution over binary x: log p(x) is a log-probability (on grey x, neither)

    def forward(self, out: torch.Tensor) -> Distribution:
        # No argument validation: grey-level targets in [0, 1] are the usual practice on MNIST
        # (the pytorch/examples VAE), and log_prob's cross-entropy form is valid for them.
        return FactorizedBernoulli(out)


class FixedGaussianLikelihood(nn.Module):
    """p(x|z) = N(x; μ(z), σ² I) with fixed σ: −log p = ‖x − μ‖² / (2σ²) + (D/2) log(2πσ²)."""

    params_per_dim = 1
    data_range = None

    def __init__(self, sigma: float = 1.0):
        super().__init__()
        if not sigma > 0:
            raise AekitError(f"sigma must be > 0, got {sigma}")
        self.sigma = float(sigma)

    def forward(self, out: torch.Tensor) -> Distribution:
        return Independent(Normal(out, torch.full_like(out, self.sigma), validate_args=False), 1, validate_args=False)


class LearnedGaussianLikelihood(nn.Module):
    """p(x|z) = N(x; μ(z), diag σ(z)²), σ = softplus(raw) + min_scale.

    A learned variance can shrink without bound on pixels that never vary (MNIST borders), making
    log p → ∞; the floor ``min_scale`` caps the density at 1/(min_scale·√2π) per dimension.
    """

    params_per_dim = 2
    data_range = None
    min_scale = 1e-3

    def forward(self, out: torch.Tensor) -> Distribution:
        loc, raw_scale = out.chunk(2, dim=-1)  # each (..., D)
        return Independent(Normal(loc, F.softplus(raw_scale) + self.min_scale, validate_args=False), 1,
                           validate_args=False)


class ContinuousBernoulliLikelihood(nn.Module):
    """p(x|z) = ∏_d CB(x_d; λ_d), the normalized continuous Bernoulli (Loaiza-Ganem & Cunningham 2019)."""

    params_per_dim = 1
    data_range = (0.0, 1.0)

    def forward(self, out: torch.Tensor) -> Distribution:
        return Independent(ContinuousBernoulli(logits=out, validate_args=False), 1, validate_args=False)


class CategoricalLikelihood(nn.Module):
    """p(x) = ∏_d Cat(x_d; softmax(logits_d)) for integer data x_d ∈ {0, …, K−1} (code maps).

    ``params_per_dim`` = K logits per dimension, parameter-major like every head: out (..., K·D).
    """

    data_range = None  # integers 0..K−1, checked by the code data set that makes them

    def __init__(self, num_values: int | None = None):
        super().__init__()
        if num_values is None:
            raise AekitError("the categorical likelihood is for integer data such as code maps (the prior's); "
                             "use bernoulli or gaussian for images and vectors")
        self.num_values = self.params_per_dim = int(num_values)

    def forward(self, out: torch.Tensor) -> Distribution:
        logits = out.unflatten(-1, (self.num_values, -1)).transpose(-1, -2)  # (..., D, K)
        return _IntegerIndependent(Categorical(logits=logits, validate_args=False), 1, validate_args=False)


class _IntegerIndependent(Independent):
    """Independent categoricals that accept their integer values stored as floats (the data rows)."""

    def log_prob(self, value):
        return super().log_prob(value.round().long())


class PixelCNNLikelihood(nn.Module):
    """p(x|z) = ∏_i Bern(x_i; σ(PixelCNN(x_<i, h(z))_i)): an autoregressive decoder (PixelVAE-style).

    The decoder body gives ``params_per_dim`` feature maps per data channel, h(z) of shape (P·C, *S),
    and every gated layer of a :class:`~aekit.pixelcnn.GatedPixelCNN` reads them through a 1-wide
    convolution (Gulrajani et al. 2017; van den Oord et al. 2016, eq. 5). ``log_prob`` is one masked
    pass (teacher forcing); sampling is ancestral with cached activations (see :mod:`aekit.pixelcnn`).
    Images use the 2-D gated PixelCNN; sequences, clips and vectors the 1-D causal one in raster order.
    Needs binary data (binarize grey images, e.g. ``--binarize dynamic``).
    """

    data_range = (0.0, 1.0)
    params_per_dim = 4  # conditioning feature maps per data channel

    def __init__(self, image_shape=None, data_dim: int | None = None, channels: int = 64, layers: int = 12):
        super().__init__()
        from .pixelcnn import AutoregressiveModel  # pixelcnn imports this module's errors only

        if image_shape is None:
            if data_dim is None:
                raise AekitError("the pixelcnn likelihood needs the data's shape")
            image_shape = (1, data_dim)  # vectors: one channel, a sequence of D values
        self.image_shape = tuple(int(v) for v in image_shape)
        c, *spatial = self.image_shape
        self.model = AutoregressiveModel(spatial, channels=c, hidden_channels=channels, layers=layers,
                                         cond_channels=self.params_per_dim * c)

    def forward(self, out: torch.Tensor) -> Distribution:
        from .pixelcnn import AutoregressiveDistribution

        lead = out.shape[:-1]
        cond = out.reshape(-1, self.params_per_dim * self.image_shape[0], *self.image_shape[1:])  # (N, P·C, *S)
        return AutoregressiveDistribution(self.model, cond, None, lead, math.prod(self.image_shape))


LIKELIHOODS = {
    "bernoulli": BernoulliLikelihood,
    "gaussian": FixedGaussianLikelihood,
    "gaussian-learned": LearnedGaussianLikelihood,
    "continuous-bernoulli": ContinuousBernoulliLikelihood,
    "pixelcnn": PixelCNNLikelihood,
    "categorical": CategoricalLikelihood,
}
LIKELIHOOD_HELP = {
    "bernoulli": "Bernoulli from logits (binary cross-entropy); data in [0, 1]",
    "gaussian": "Gaussian with fixed sigma (--sigma; squared error)",
    "gaussian-learned": "Gaussian with a learned per-dimension sigma (floored at 1e-3)",
    "continuous-bernoulli": "continuous Bernoulli, normalized for data in [0, 1]",
    "pixelcnn": "autoregressive Bernoulli pixels from a gated PixelCNN fed with decoder features "
                "(PixelVAE-style; --pixelcnn-layers, --pixelcnn-channels; binary data)",
    "categorical": "one of K values per dimension (integer data: the prior over VQ-VAE code maps)",
}


def build_likelihood(name: str, sigma: float = 1.0, *, image_shape=None, data_dim: int | None = None,
                     num_values: int | None = None, pixelcnn_channels: int = 64, pixelcnn_layers: int = 12) -> nn.Module:
    from .errors import unknown_choice

    if name not in LIKELIHOODS:
        raise unknown_choice("likelihood", name, LIKELIHOODS)
    if name == "gaussian":
        return LIKELIHOODS[name](sigma)
    if name == "pixelcnn":
        return PixelCNNLikelihood(image_shape, data_dim, pixelcnn_channels, pixelcnn_layers)
    if name == "categorical":
        return CategoricalLikelihood(num_values)
    return LIKELIHOODS[name]()


def likelihood_for(cfg, shape) -> nn.Module:
    """The likelihood head a ModelConfig asks for, on data of DataShape ``shape``."""
    return build_likelihood(cfg.likelihood, cfg.sigma, image_shape=shape.image_shape, data_dim=shape.data_dim,
                            pixelcnn_channels=cfg.pixelcnn_channels, pixelcnn_layers=cfg.pixelcnn_layers)


def check_data_range(name: str, x: torch.Tensor, what: str = "the data") -> None:
    """A likelihood with support [0, 1] refuses data outside it (one clear line)."""
    lo_hi = LIKELIHOODS[name].data_range
    if lo_hi is None:
        return
    lo, hi = float(x.min()), float(x.max())
    if lo < lo_hi[0] or hi > lo_hi[1]:
        raise AekitError(
            f"the {name} likelihood needs values in [0, 1], but {what} spans [{lo:.3g}, {hi:.3g}]; "
            f"rescale the data to [0, 1] (or, for a model that takes --likelihood, use gaussian)"
        )


LOG_2 = math.log(2.0)

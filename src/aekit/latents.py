"""Latent layers: the head that turns encoder features into a code.

``PointLatent`` gives a deterministic code z = f(x) (the plain autoencoder).
``GaussianLatent`` gives q(z|x) = N(loc(x), diag(scale(x)²)) as a torch distribution whose
``rsample`` is the reparameterization z = loc + scale ⊙ ε, ε ~ N(0, I) (Kingma & Welling 2014, §2.4).
``BernoulliLatent`` gives q(z|x) = ∏_j Bern(z_j; σ(a_j(x))) over K binary units (a sigmoid belief layer).
``CategoricalLatent`` gives N independent categorical variables of K classes, one-hot, flattened to a
code of N·K entries (Jang et al. 2017, §4: "20 × 10").

Discrete codes have no reparameterization; their distributions (:class:`FactorizedBernoulli`,
:class:`GroupedOneHot`) offer what the gradient estimators of :mod:`aekit.estimators` need instead:
``relaxed(τ)``, the Concrete / Gumbel-softmax relaxation built from torch's ``RelaxedBernoulli`` /
``RelaxedOneHotCategorical`` (Maddison et al. 2017; Jang et al. 2017), ``discretize`` (the discrete
sample behind a relaxed one: Gumbel-max), and ``states()``, every value of z for exact enumeration.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import (Bernoulli, Distribution, Independent, Normal, OneHotCategorical, RelaxedBernoulli,
                                 RelaxedOneHotCategorical, constraints)

# Reparameterization noise under DistributedDataParallel. Each process sees B/W examples of a
# global batch of B. If every process drew its own ε, a two-process run would see different noise
# than a one-process run with the same seed. Instead every process draws ε for the whole global
# batch from the same RNG stream (all ranks share the seed) and keeps its own contiguous slice —
# the slice the loader gave it — so training is identical whatever the number of processes.
_noise_shard = (0, 1)  # (rank, world_size)


@contextmanager
def sharded_noise(rank: int, world_size: int):
    """Within this context, :func:`standard_normal` returns this rank's slice of global-batch noise."""
    global _noise_shard
    previous, _noise_shard = _noise_shard, (rank, world_size)
    try:
        yield
    finally:
        _noise_shard = previous


def standard_normal(shape: torch.Size, like: torch.Tensor, batch_dim: int) -> torch.Tensor:
    """ε ~ N(0, I) of ``shape``; under :func:`sharded_noise` the rank's slice along ``batch_dim``."""
    rank, world = _noise_shard
    if world == 1:
        return torch.randn(shape, dtype=like.dtype, device=like.device)
    batch_dim = batch_dim % len(shape)
    local = shape[batch_dim]
    global_shape = list(shape)
    global_shape[batch_dim] = local * world
    eps = torch.randn(global_shape, dtype=like.dtype, device=like.device)
    return eps.narrow(batch_dim, rank * local, local)


class DiagonalNormal(Independent):
    """N(loc, diag(scale²)) over the last dimension, with a rank-invariant ``rsample``.

    Behaves exactly like ``Independent(Normal(loc, scale), 1)`` (``kl_divergence`` dispatches to
    the registered closed form through the parent class); only the source of ε differs.
    """

    def __init__(self, loc: torch.Tensor, scale: torch.Tensor, validate_args: bool = False):
        # No argument validation by default: it costs a reduction and a host sync per construction,
        # in the hot loop; the latent heads guarantee scale > 0 by construction (softplus + floor).
        super().__init__(Normal(loc, scale, validate_args=validate_args), 1, validate_args=validate_args)

    @property
    def loc(self) -> torch.Tensor:
        return self.base_dist.loc

    @property
    def scale(self) -> torch.Tensor:
        return self.base_dist.scale

    def rsample(self, sample_shape=torch.Size()) -> torch.Tensor:
        shape = self._extended_shape(sample_shape)  # (*sample_shape, B, J)
        eps = standard_normal(shape, self.loc, batch_dim=-2 if len(self.batch_shape) else 0)
        return self.loc + self.scale * eps

    def expand(self, batch_shape, _instance=None):
        batch_shape = torch.Size(batch_shape)
        shape = batch_shape + self.event_shape
        return DiagonalNormal(self.loc.expand(shape), self.scale.expand(shape))


class PointLatent(nn.Module):
    """Features → z (B, J): a deterministic code."""

    stochastic = False

    def __init__(self, in_features: int, latent_dim: int):
        super().__init__()
        self.proj = nn.Linear(in_features, latent_dim)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.proj(h)


class GaussianLatent(nn.Module):
    """Features → q(z|x) = N(loc, diag(scale²)), scale = softplus(·) + min_scale.

    softplus keeps the scale positive without the overflow of exp(log σ) early in training; the
    small floor keeps log q(z|x) finite when a posterior collapses onto a point.
    """

    stochastic = True
    min_scale = 1e-4

    def __init__(self, in_features: int, latent_dim: int):
        super().__init__()
        self.proj = nn.Linear(in_features, 2 * latent_dim)

    def forward(self, h: torch.Tensor) -> Distribution:
        loc, raw_scale = self.proj(h).chunk(2, dim=-1)  # each (B, J)
        return DiagonalNormal(loc, F.softplus(raw_scale) + self.min_scale)


# ----------------------------------------------------------------------------- discrete codes
# Enumerating every latent state (exact log p(x), exact gradients in tests) is allowed up to 2^20 states.
MAX_ENUMERATED_STATES = 1 << 20


def binary_states(num_units: int, like: torch.Tensor | None = None) -> torch.Tensor:
    """All 2^K binary vectors of length K, (2^K, K), in counting order (unit 0 the least significant bit)."""
    codes = torch.arange(1 << num_units, device=None if like is None else like.device)
    bits = (codes[:, None] >> torch.arange(num_units, device=codes.device)) & 1  # (2^K, K)
    return bits.to(torch.get_default_dtype() if like is None else like.dtype)


def _check_enumerable(num_states: int, what: str) -> None:
    from .errors import AekitError

    if num_states > MAX_ENUMERATED_STATES:
        raise AekitError(f"exact enumeration needs at most 2^20 latent states (20 binary units), but {what} has "
                         f"{num_states:.3g}; estimate log p(x) by importance sampling instead (log_likelihood)")


class FactorizedBernoulli(Independent):
    """z ∈ {0, 1}^K with p(z) = ∏_j Bern(z_j; σ(logits_j)), the units independent (last dimension).

    ``kl_divergence`` between two of them is the registered closed form (sum of Bernoulli KLs).
    ``relaxed(τ)`` is the binary Concrete distribution with the same logits, torch's RelaxedBernoulli:
    z̃ = σ((logits + log u − log(1 − u)) / τ), u ~ U(0, 1) (Maddison et al. 2017, eq. 21); and
    ``discretize(z̃) = 1[z̃ > ½] = 1[logits + L > 0]`` is an exact Bern(σ(logits)) sample (L logistic).
    """

    def __init__(self, logits: torch.Tensor, validate_args: bool = False):
        # No argument validation (a host sync per construction); relaxed values are scored with the
        # cross-entropy form of log_prob, which the straight-through and relaxed estimators rely on.
        super().__init__(Bernoulli(logits=logits, validate_args=False), 1, validate_args=False)

    @property
    def logits(self) -> torch.Tensor:
        return self.base_dist.logits

    @property
    def num_states(self) -> int:
        return 1 << self.event_shape[0]

    def relaxed(self, temperature: float) -> Distribution:
        return Independent(RelaxedBernoulli(temperature, logits=self.logits, validate_args=False), 1,
                           validate_args=False)

    @staticmethod
    def discretize(soft: torch.Tensor) -> torch.Tensor:
        return (soft > 0.5).to(soft.dtype)

    def states(self) -> torch.Tensor:
        """Every value of z, (2^K, K); at most 2^20 (one-line error beyond)."""
        _check_enumerable(self.num_states, f"a code of {self.event_shape[0]} binary units")
        return binary_states(self.event_shape[0], self.logits)

    def expand(self, batch_shape, _instance=None):
        return FactorizedBernoulli(self.logits.expand(torch.Size(batch_shape) + self.event_shape))


class GroupedOneHot(Independent):
    """N independent categorical variables of K classes, each one-hot, the code flattened to N·K entries.

    ``logits`` (..., N, K). The base distribution is OneHotCategorical with batch (..., N), event K,
    reinterpreted once, so ``kl_divergence`` between two of these is torch's registered closed form
    summed over groups, and per-group KLs (free bits, active units) come from ``base_dist``. Values
    are (..., N·K) so that the decoder and every consumer of codes sees a vector, like the other latents.
    """

    arg_constraints = {}
    support = constraints.independent(constraints.boolean, 1)
    has_rsample = False

    def __init__(self, logits: torch.Tensor, validate_args: bool = False):
        self.base_dist = OneHotCategorical(logits=logits, validate_args=False)
        self.reinterpreted_batch_ndims = 1
        self.groups, self.classes = logits.shape[-2:]
        Distribution.__init__(self, logits.shape[:-2], torch.Size([self.groups * self.classes]), validate_args=False)

    def _grouped(self, z: torch.Tensor) -> torch.Tensor:
        return z.unflatten(-1, (self.groups, self.classes))  # (..., N, K)

    @property
    def logits(self) -> torch.Tensor:
        return self.base_dist.logits  # (..., N, K), normalized

    @property
    def num_states(self) -> int:
        return self.classes ** self.groups

    @property
    def mean(self) -> torch.Tensor:
        return self.base_dist.probs.flatten(-2)

    @property
    def mode(self) -> torch.Tensor:
        return self.base_dist.mode.flatten(-2)

    @property
    def variance(self) -> torch.Tensor:
        return self.base_dist.variance.flatten(-2)

    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        return self.base_dist.sample(sample_shape).flatten(-2)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        # Σ_groups Σ_k z_k log π_k: exact on one-hot values, the cross-entropy form on relaxed ones.
        return (self._grouped(value) * self.logits).sum((-1, -2))

    def entropy(self) -> torch.Tensor:
        return self.base_dist.entropy().sum(-1)

    def relaxed(self, temperature: float) -> Distribution:
        return _FlatGroups(RelaxedOneHotCategorical(temperature, logits=self.logits, validate_args=False))

    def discretize(self, soft: torch.Tensor) -> torch.Tensor:
        grouped = self._grouped(soft)
        return F.one_hot(grouped.argmax(-1), self.classes).to(soft.dtype).flatten(-2)

    def states(self) -> torch.Tensor:
        """Every value of z, (K^N, N·K); at most 2^20 (one-line error beyond)."""
        _check_enumerable(self.num_states, f"a code of {self.groups} groups of {self.classes} classes")
        index = torch.arange(self.num_states, device=self.logits.device)
        digits = torch.stack([(index // self.classes ** g) % self.classes for g in range(self.groups)], -1)  # (S, N)
        return F.one_hot(digits, self.classes).to(self.logits.dtype).flatten(-2)

    def expand(self, batch_shape, _instance=None):
        return GroupedOneHot(self.logits.expand(torch.Size(batch_shape) + self.logits.shape[-2:]))


class _FlatGroups:
    """A relaxed one-hot distribution over (..., N, K) whose samples are flattened to (..., N·K)."""

    def __init__(self, relaxed: RelaxedOneHotCategorical):
        self.relaxed = relaxed

    def rsample(self, sample_shape=torch.Size()) -> torch.Tensor:
        return self.relaxed.rsample(sample_shape).flatten(-2)


class BernoulliLatent(nn.Module):
    """Features → q(z|x) = ∏_j Bern(z_j; σ(W h + b)_j) over K = latent_dim binary units."""

    stochastic = True

    def __init__(self, in_features: int, latent_dim: int):
        super().__init__()
        self.proj = nn.Linear(in_features, latent_dim)

    def forward(self, h: torch.Tensor) -> Distribution:
        return FactorizedBernoulli(self.proj(h))


class CategoricalLatent(nn.Module):
    """Features → q(z|x) = ∏_{n=1}^N Cat(z_n; softmax(W_n h + b_n)), N groups of K = latent_dim classes."""

    stochastic = True

    def __init__(self, in_features: int, latent_dim: int, groups: int = 1):
        super().__init__()
        self.groups, self.classes = groups, latent_dim
        self.proj = nn.Linear(in_features, groups * latent_dim)

    def forward(self, h: torch.Tensor) -> Distribution:
        return GroupedOneHot(self.proj(h).unflatten(-1, (self.groups, self.classes)))  # logits (B, N, K)


LATENTS = {"point": PointLatent, "gaussian": GaussianLatent, "bernoulli": BernoulliLatent,
           "categorical": CategoricalLatent}
# The kinds of q(z|x) a VAE can be given (--latent), and which of them are discrete.
VAE_LATENTS = ("gaussian", "bernoulli", "categorical")
DISCRETE_LATENTS = ("bernoulli", "categorical")


def build_latent(name: str, in_features: int, cfg) -> nn.Module:
    """The latent head ``name`` on ``in_features`` encoder features, sized by the model config."""
    if name == "categorical":  # the only head with a second size: the number of groups
        return CategoricalLatent(in_features, cfg.latent_dim, cfg.groups)
    return LATENTS[name](in_features, cfg.latent_dim)


def code_size(cfg) -> int:
    """Length of the code vector the decoder reads: N·K for a categorical latent, else latent_dim."""
    return cfg.latent_dim * cfg.groups if getattr(cfg, "latent", "gaussian") == "categorical" else cfg.latent_dim

"""Latent layers: the head that turns encoder features into a code.

``PointLatent`` gives a deterministic code z = f(x) (the plain autoencoder).
``GaussianLatent`` gives q(z|x) = N(loc(x), diag(scale(x)²)) as a torch distribution whose
``rsample`` is the reparameterization z = loc + scale ⊙ ε, ε ~ N(0, I) (Kingma & Welling 2014, §2.4).
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Distribution, Independent, Normal

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


LATENTS = {"point": PointLatent, "gaussian": GaussianLatent}

"""Priors p(z), as modules returning torch distributions (buffers move with ``.to(device)``).

* ``normal``  the latent's standard prior: N(0, I) for a Gaussian latent; for a discrete latent the
  same as ``uniform`` (the default setting, so that ``--latent bernoulli`` needs no ``--prior``).
* ``uniform`` Bernoulli(½) on each binary unit, or the uniform categorical on each group (discrete latents).
* ``learned`` logits as parameters (discrete latents): p(z) = ∏_j Bern(σ(b_j)) or ∏_n Cat(softmax(b_n)),
  fitted with the rest of the model by the ELBO (the top-layer biases of a sigmoid belief net).
"""

from __future__ import annotations

import torch
from torch import nn

from .errors import AekitError, unknown_choice
from .latents import DISCRETE_LATENTS, DiagonalNormal, FactorizedBernoulli, GroupedOneHot


class StandardNormalPrior(nn.Module):
    """p(z) = N(0, I) over a J-dimensional latent."""

    def __init__(self, latent_dim: int):
        super().__init__()
        self.register_buffer("loc", torch.zeros(latent_dim), persistent=False)
        self.register_buffer("scale", torch.ones(latent_dim), persistent=False)

    def forward(self) -> DiagonalNormal:
        return DiagonalNormal(self.loc, self.scale)


def _discrete(latent: str, logits: torch.Tensor):
    return FactorizedBernoulli(logits) if latent == "bernoulli" else GroupedOneHot(logits)


def _logits_shape(latent: str, latent_dim: int, groups: int) -> tuple[int, ...]:
    return (latent_dim,) if latent == "bernoulli" else (groups, latent_dim)


class UniformDiscretePrior(nn.Module):
    """p(z) = ∏_j Bern(z_j; ½) (Bernoulli latent) or ∏_n Cat(z_n; 1/K) (categorical latent)."""

    def __init__(self, latent: str, latent_dim: int, groups: int = 1):
        super().__init__()
        self.latent = latent
        self.register_buffer("logits", torch.zeros(_logits_shape(latent, latent_dim, groups)), persistent=False)

    def forward(self):
        return _discrete(self.latent, self.logits)


class LearnedDiscretePrior(nn.Module):
    """p(z) with learned logits b: ∏_j Bern(z_j; σ(b_j)) or ∏_n Cat(z_n; softmax(b_n)); b = 0 at the start."""

    def __init__(self, latent: str, latent_dim: int, groups: int = 1):
        super().__init__()
        self.latent = latent
        self.logits = nn.Parameter(torch.zeros(_logits_shape(latent, latent_dim, groups)))

    def forward(self):
        return _discrete(self.latent, self.logits)


def _standard(latent: str, latent_dim: int, groups: int = 1) -> nn.Module:
    if latent in DISCRETE_LATENTS:
        return UniformDiscretePrior(latent, latent_dim, groups)
    return StandardNormalPrior(latent_dim)


def _uniform(latent: str, latent_dim: int, groups: int = 1) -> nn.Module:
    if latent not in DISCRETE_LATENTS:
        raise AekitError("--prior uniform is for discrete latents (--latent bernoulli | categorical); "
                         "a Gaussian latent takes --prior normal")
    return UniformDiscretePrior(latent, latent_dim, groups)


def _learned(latent: str, latent_dim: int, groups: int = 1) -> nn.Module:
    if latent not in DISCRETE_LATENTS:
        raise AekitError("--prior learned (learned logits) is for discrete latents (--latent bernoulli | "
                         "categorical); a Gaussian latent takes --prior normal")
    return LearnedDiscretePrior(latent, latent_dim, groups)


# name → builder(latent, latent_dim, groups)
PRIORS = {"normal": _standard, "uniform": _uniform, "learned": _learned}
PRIOR_HELP = {
    "normal": "the latent's standard prior: N(0, I); Bernoulli(1/2) or uniform categorical for discrete latents",
    "uniform": "Bernoulli(1/2) per binary unit / uniform over the classes of each group (discrete latents)",
    "learned": "learned logits: factorized Bernoulli or categorical with trained parameters (discrete latents)",
}


def build_prior(name: str, latent: str = "gaussian", latent_dim: int = 1, groups: int = 1) -> nn.Module:
    if name not in PRIORS:
        raise unknown_choice("prior", name, PRIORS)
    return PRIORS[name](latent, latent_dim, groups)

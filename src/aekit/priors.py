"""Priors p(z), as modules returning torch distributions (buffers move with ``.to(device)``)."""

from __future__ import annotations

import torch
from torch import nn

from .latents import DiagonalNormal


class StandardNormalPrior(nn.Module):
    """p(z) = N(0, I) over a J-dimensional latent."""

    def __init__(self, latent_dim: int):
        super().__init__()
        self.register_buffer("loc", torch.zeros(latent_dim), persistent=False)
        self.register_buffer("scale", torch.ones(latent_dim), persistent=False)

    def forward(self) -> DiagonalNormal:
        return DiagonalNormal(self.loc, self.scale)


PRIORS = {"normal": StandardNormalPrior}
PRIOR_HELP = {"normal": "standard normal N(0, I)"}

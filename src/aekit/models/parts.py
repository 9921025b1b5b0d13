"""Encoder and decoder: a body composed with a head.

``Encoder`` = body (x → features) + latent head (features → z or q(z|x)).
``Decoder`` = body (z → raw parameters) + likelihood head (raw parameters → p(x|z)).
``build_encoder`` / ``build_decoder`` make the pair every neural model uses from a ``ModelConfig``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..config import DataShape, ModelConfig
from ..errors import AekitError, unknown_choice
from ..latents import LATENTS, build_latent, code_size
from ..likelihoods import likelihood_for
from ..nets import BODIES, ConvDecoderBody, ConvEncoderBody, MLPDecoderBody, MLPEncoderBody, conv_spatial_dims


@dataclass
class LossOutput:
    """A model's objective on a batch: ``total`` (B,) to minimize, and named terms (B,) to report."""

    total: torch.Tensor
    terms: dict[str, torch.Tensor]


class Encoder(nn.Module):
    def __init__(self, body: nn.Module, head: nn.Module):
        super().__init__()
        self.body, self.head = body, head

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None):
        return self.head(self.body(x, cond))


class Decoder(nn.Module):
    def __init__(self, body: nn.Module, likelihood: nn.Module):
        super().__init__()
        self.body, self.likelihood = body, likelihood

    def forward(self, z: torch.Tensor, cond: torch.Tensor | None = None):
        return self.likelihood(self.body(z, cond))


def build_encoder(cfg: ModelConfig, shape: DataShape, latent: str, cond_dim: int = 0) -> Encoder:
    if cfg.body not in BODIES:
        raise unknown_choice("body", cfg.body, BODIES)
    if cfg.body != "mlp":  # conv, conv1d, conv2d, conv3d: the number of spatial dimensions is checked on the data
        if not cfg.hidden_dims:
            raise AekitError("the conv body needs --hidden-dims with at least one width (its dense layer)")
        body = ConvEncoderBody(shape.image_shape, hidden=cfg.hidden_dims[-1], act=cfg.activation, cond_dim=cond_dim,
                               spatial_dims=conv_spatial_dims(cfg.body, shape.image_shape))
    else:
        body = MLPEncoderBody(shape.data_dim, cfg.hidden_dims, cfg.activation, cond_dim=cond_dim)
    if latent not in LATENTS:
        raise unknown_choice("latent", latent, LATENTS)
    return Encoder(body, build_latent(latent, body.out_features, cfg))


def build_decoder(cfg: ModelConfig, shape: DataShape, cond_dim: int = 0) -> Decoder:
    likelihood = likelihood_for(cfg, shape)
    p = likelihood.params_per_dim
    width = code_size(cfg)  # J, or N·K for a categorical code
    if cfg.body != "mlp":
        body = ConvDecoderBody(width, shape.image_shape, p, hidden=cfg.hidden_dims[-1],
                               act=cfg.activation, cond_dim=cond_dim,
                               spatial_dims=conv_spatial_dims(cfg.body, shape.image_shape))
    else:
        body = MLPDecoderBody(width, tuple(reversed(cfg.hidden_dims)), p * shape.data_dim,
                              cfg.activation, cond_dim=cond_dim)
    return Decoder(body, likelihood)

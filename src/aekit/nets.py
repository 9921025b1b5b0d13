"""Encoder and decoder bodies: the networks between the data and the latent/likelihood heads.

A body maps its input to a feature vector (encoder) or to the decoder's raw output parameters
(decoder). What those features *mean* — a point code, the loc/scale of q(z|x), the logits of
p(x|z) — is decided by the latent layer and the likelihood head, not here. Conditioning
(a one-hot label for the conditional VAE) enters every body through ``cond``.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from .errors import AekitError, unknown_choice

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "leaky-relu": nn.LeakyReLU,
    "softplus": nn.Softplus,
    "identity": nn.Identity,
}


def activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise unknown_choice("activation", name, ACTIVATIONS)
    return ACTIVATIONS[name]()


def mlp(in_dim: int, hidden_dims: Sequence[int], out_dim: int, act: str) -> nn.Sequential:
    """in_dim → hidden_dims (each followed by ``act``) → out_dim (linear output)."""
    layers: list[nn.Module] = []
    width = in_dim
    for h in hidden_dims:
        layers += [nn.Linear(width, h), activation(act)]
        width = h
    layers.append(nn.Linear(width, out_dim))
    return nn.Sequential(*layers)


class MLPEncoderBody(nn.Module):
    """x (B, D) [‖ cond (B, K)] → features (B, hidden_dims[-1]).

    The label is concatenated to the input, as in the conditional VAE of Sohn et al. (2015).
    """

    def __init__(self, data_dim: int, hidden_dims: Sequence[int], act: str, cond_dim: int = 0):
        super().__init__()
        if not hidden_dims:
            raise AekitError("hidden_dims is empty; give at least one layer size, e.g. --hidden-dims 400")
        self.net = nn.Sequential(*mlp(data_dim + cond_dim, hidden_dims[:-1], hidden_dims[-1], act), activation(act))
        self.out_features = hidden_dims[-1]

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        if cond is not None:
            x = torch.cat([x, cond], dim=-1)
        return self.net(x)


class MLPDecoderBody(nn.Module):
    """z (..., J) [‖ cond] → raw output parameters (..., D·P), P parameters per data dimension."""

    def __init__(self, latent_dim: int, hidden_dims: Sequence[int], out_dim: int, act: str, cond_dim: int = 0):
        super().__init__()
        self.net = mlp(latent_dim + cond_dim, hidden_dims, out_dim, act)

    def forward(self, z: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        if cond is not None:
            z = torch.cat([z, cond.expand(*z.shape[:-1], cond.shape[-1])], dim=-1)
        return self.net(z)


def _check_conv_shape(image_shape) -> tuple[int, int, int]:
    if image_shape is None:
        raise AekitError("the conv body needs image data (e.g. digits, mnist); use --body mlp for vector data")
    c, h, w = image_shape
    if h % 4 or w % 4:
        raise AekitError(f"the conv body needs image height and width divisible by 4, got {h}x{w}; use --body mlp")
    return c, h, w


class ConvEncoderBody(nn.Module):
    """Image (B, C·H·W) → two stride-2 convolutions → features (B, hidden).

    Spatial size falls H → H/2 → H/4; the label (if any) joins after the convolutions.
    """

    def __init__(self, image_shape, channels: Sequence[int] = (32, 64), hidden: int = 256,
                 act: str = "relu", cond_dim: int = 0):
        super().__init__()
        c, h, w = _check_conv_shape(image_shape)
        self.image_shape = (c, h, w)
        c1, c2 = channels
        self.conv = nn.Sequential(
            nn.Conv2d(c, c1, 4, stride=2, padding=1), activation(act),
            nn.Conv2d(c1, c2, 4, stride=2, padding=1), activation(act),
            nn.Flatten(),
        )
        self.fc = nn.Sequential(nn.Linear(c2 * (h // 4) * (w // 4) + cond_dim, hidden), activation(act))
        self.out_features = hidden

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        h = self.conv(x.reshape(-1, *self.image_shape))  # (B, C2·H/4·W/4)
        if cond is not None:
            h = torch.cat([h, cond], dim=-1)
        return self.fc(h)


class ConvDecoderBody(nn.Module):
    """z (..., J) [‖ cond] → linear → (C2, H/4, W/4) → two stride-2 transposed convs → (..., P·C·H·W)."""

    def __init__(self, latent_dim: int, image_shape, params_per_dim: int, channels: Sequence[int] = (32, 64),
                 hidden: int = 256, act: str = "relu", cond_dim: int = 0):
        super().__init__()
        c, h, w = _check_conv_shape(image_shape)
        c1, c2 = channels
        self.grid = (c2, h // 4, w // 4)
        self.params_per_dim = params_per_dim
        self.fc = nn.Sequential(
            nn.Linear(latent_dim + cond_dim, hidden), activation(act),
            nn.Linear(hidden, math.prod(self.grid)), activation(act),
        )
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(c2, c1, 4, stride=2, padding=1), activation(act),
            nn.ConvTranspose2d(c1, c * params_per_dim, 4, stride=2, padding=1),
        )

    def forward(self, z: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        if cond is not None:
            z = torch.cat([z, cond.expand(*z.shape[:-1], cond.shape[-1])], dim=-1)
        lead = z.shape[:-1]
        h = self.fc(z.reshape(-1, z.shape[-1])).reshape(-1, *self.grid)  # (N, C2, H/4, W/4)
        out = self.deconv(h)  # (N, P·C, H, W)
        p = self.params_per_dim
        # Parameter-major layout (N, P, C·H·W) so the likelihood can split loc from scale.
        out = out.reshape(out.shape[0], -1, p, out.shape[-2], out.shape[-1]).transpose(1, 2)
        return out.reshape(*lead, -1)


BODIES = ("mlp", "conv")

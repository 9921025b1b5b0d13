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


# Convolutions by number of spatial dimensions: sequences (1), images (2), clips or volumes (3).
_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_CONV_T = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
# Body name → its number of spatial dimensions; "conv" takes it from the data's shape.
CONV_BODIES: dict[str, int | None] = {"conv": None, "conv1d": 1, "conv2d": 2, "conv3d": 3}
_LAYOUT = {1: "sequences (C, L)", 2: "images (C, H, W)", 3: "clips or volumes (C, T, H, W)"}


def conv_spatial_dims(body: str, image_shape) -> int:
    """The number of spatial dimensions of conv body ``body`` on data of ``image_shape`` (checked).

    ``conv`` follows the data: (C, L) → 1, (C, H, W) → 2, (C, T, H, W) → 3. ``conv1d`` / ``conv2d`` /
    ``conv3d`` name it, and a mismatch with the data is refused (a 3-D body on images, say).
    """
    if image_shape is None:
        raise AekitError(f"the {body} body needs sequences, images or clips (data with a shape); "
                         f"use --body mlp for vector data")
    dims = len(image_shape) - 1
    if dims not in _CONV:
        raise AekitError(f"conv bodies take (C, L), (C, H, W) or (C, T, H, W) data, got shape {tuple(image_shape)}")
    wanted = CONV_BODIES.get(body)
    if wanted is not None and wanted != dims:
        raise AekitError(f"--body {body} is a {wanted}-D body but the data are {_LAYOUT[dims]} "
                         f"{tuple(image_shape)}; use --body conv{dims}d (or --body conv, which follows the data)")
    return dims


def _check_conv_shape(image_shape, factor: int = 4, body: str = "conv", spatial_dims: int | None = None):
    """(C, *spatial) after checking every spatial side is divisible by ``factor``."""
    conv_spatial_dims(body if spatial_dims is None else f"conv{spatial_dims}d", image_shape)
    c, *sides = (int(s) for s in image_shape)
    if any(side % factor for side in sides):
        raise AekitError(f"the conv body needs every spatial side divisible by {factor}, got "
                         f"{'x'.join(map(str, sides))}; use --body mlp")
    return c, tuple(sides)


class ConvEncoderBody(nn.Module):
    """Signal (B, C·∏S) → two stride-2 convolutions → features (B, hidden).

    Each spatial side S_i falls S_i → S_i/2 → S_i/4; the label (if any) joins after the convolutions.
    1-D, 2-D and 3-D data differ only in ``spatial_dims`` (taken from ``image_shape`` by default).
    """

    def __init__(self, image_shape, channels: Sequence[int] = (32, 64), hidden: int = 256,
                 act: str = "relu", cond_dim: int = 0, spatial_dims: int | None = None):
        super().__init__()
        c, sides = _check_conv_shape(image_shape, 4, spatial_dims=spatial_dims)
        conv = _CONV[len(sides)]
        self.image_shape = (c, *sides)
        c1, c2 = channels
        self.conv = nn.Sequential(
            conv(c, c1, 4, stride=2, padding=1), activation(act),
            conv(c1, c2, 4, stride=2, padding=1), activation(act),
            nn.Flatten(),
        )
        self.fc = nn.Sequential(nn.Linear(c2 * math.prod(s // 4 for s in sides) + cond_dim, hidden), activation(act))
        self.out_features = hidden

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        h = self.conv(x.reshape(-1, *self.image_shape))  # (B, C2·∏(S/4))
        if cond is not None:
            h = torch.cat([h, cond], dim=-1)
        return self.fc(h)


def _parameter_major(out: torch.Tensor, params_per_dim: int, lead) -> torch.Tensor:
    """(N, P·C, *S) network output → (*lead, P·C·∏S) laid out parameter-major (all locs, then all scales)."""
    out = out.reshape(out.shape[0], -1, params_per_dim, *out.shape[2:]).transpose(1, 2)  # (N, P, C, *S)
    return out.reshape(*lead, -1)


class ConvDecoderBody(nn.Module):
    """z (..., J) [‖ cond] → linear → (C2, S/4) → two stride-2 transposed convs → (..., P·C·∏S)."""

    def __init__(self, latent_dim: int, image_shape, params_per_dim: int, channels: Sequence[int] = (32, 64),
                 hidden: int = 256, act: str = "relu", cond_dim: int = 0, spatial_dims: int | None = None):
        super().__init__()
        c, sides = _check_conv_shape(image_shape, 4, spatial_dims=spatial_dims)
        conv_t = _CONV_T[len(sides)]
        c1, c2 = channels
        self.grid = (c2, *(s // 4 for s in sides))
        self.params_per_dim = params_per_dim
        self.fc = nn.Sequential(
            nn.Linear(latent_dim + cond_dim, hidden), activation(act),
            nn.Linear(hidden, math.prod(self.grid)), activation(act),
        )
        self.deconv = nn.Sequential(
            conv_t(c2, c1, 4, stride=2, padding=1), activation(act),
            conv_t(c1, c * params_per_dim, 4, stride=2, padding=1),
        )

    def forward(self, z: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        if cond is not None:
            z = torch.cat([z, cond.expand(*z.shape[:-1], cond.shape[-1])], dim=-1)
        lead = z.shape[:-1]
        h = self.fc(z.reshape(-1, z.shape[-1])).reshape(-1, *self.grid)  # (N, C2, *S/4)
        return _parameter_major(self.deconv(h), self.params_per_dim, lead)  # (..., P·C·∏S)


# ----------------------------------------------------------------------------- code-map bodies (VQ-VAE)
class ResidualBlock(nn.Module):
    """x + W₂ act(W₁ act(x)), W₁ a 3-wide convolution and W₂ a 1-wide one (van den Oord et al. 2017, §4.1)."""

    def __init__(self, channels: int, spatial_dims: int, act: str):
        super().__init__()
        conv = _CONV[spatial_dims]
        self.net = nn.Sequential(activation(act), conv(channels, channels, 3, padding=1), activation(act),
                                 conv(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


class CodeMapEncoderBody(nn.Module):
    """Signal (B, C·∏S) → a map of code vectors z_e (B, D, *S/2ⁿ) (the VQ-VAE encoder, §4.1).

    n = len(widths) stride-2 convolutions (kernel 4) of widths ``widths``, a 3-wide convolution,
    ``residual_blocks`` residual blocks, and a 1-wide convolution to D channels. MNIST 28×28 with two
    widths gives a 7×7 map. Sequences, images and clips differ only in ``spatial_dims``.
    """

    def __init__(self, image_shape, code_dim: int, widths: Sequence[int] = (32, 64), residual_blocks: int = 2,
                 act: str = "relu", spatial_dims: int | None = None, body: str = "conv"):
        super().__init__()
        if not widths:
            raise AekitError("the vq-vae conv body needs --hidden-dims with one width per stride-2 stage, e.g. 64,128")
        dims = spatial_dims or conv_spatial_dims(body, image_shape)
        c, sides = _check_conv_shape(image_shape, 2 ** len(widths), spatial_dims=dims)
        conv = _CONV[dims]
        self.image_shape = (c, *sides)
        self.code_shape = tuple(s // 2 ** len(widths) for s in sides)
        layers: list[nn.Module] = []
        width = c
        for w in widths:
            layers += [conv(width, w, 4, stride=2, padding=1), activation(act)]
            width = w
        layers += [conv(width, width, 3, padding=1)]
        layers += [ResidualBlock(width, dims, act) for _ in range(residual_blocks)]
        layers += [activation(act), conv(width, code_dim, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(x.reshape(-1, *self.image_shape))  # (B, D, *code_shape)


class CodeMapDecoderBody(nn.Module):
    """Code map z_q (N, D, *S') → raw likelihood parameters (N, P·C·∏S), parameter-major.

    The mirror of :class:`CodeMapEncoderBody`: a 3-wide convolution, residual blocks, then one stride-2
    transposed convolution (kernel 4) per width, in reverse order, the last to P·C channels.
    """

    def __init__(self, image_shape, code_dim: int, params_per_dim: int, widths: Sequence[int] = (32, 64),
                 residual_blocks: int = 2, act: str = "relu", spatial_dims: int | None = None, body: str = "conv"):
        super().__init__()
        dims = spatial_dims or conv_spatial_dims(body, image_shape)
        c, sides = _check_conv_shape(image_shape, 2 ** len(widths), spatial_dims=dims)
        conv, conv_t = _CONV[dims], _CONV_T[dims]
        self.params_per_dim = params_per_dim
        widths = list(widths)
        layers: list[nn.Module] = [conv(code_dim, widths[-1], 3, padding=1)]
        layers += [ResidualBlock(widths[-1], dims, act) for _ in range(residual_blocks)]
        layers += [activation(act)]
        outs = widths[-2::-1] + [c * params_per_dim]  # widths in reverse, then the output channels
        for i, (w_in, w_out) in enumerate(zip(widths[::-1], outs)):
            layers += [conv_t(w_in, w_out, 4, stride=2, padding=1)] + ([activation(act)] if i < len(outs) - 1 else [])
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        return _parameter_major(self.net(z), self.params_per_dim, z.shape[:1])  # (N, P·C·∏S)


class VectorCodeEncoderBody(nn.Module):
    """Vector data (B, D_x) → MLP → M code vectors (B, D, M): a code "map" of M positions without layout."""

    def __init__(self, data_dim: int, hidden_dims: Sequence[int], num_positions: int, code_dim: int, act: str):
        super().__init__()
        self.net = mlp(data_dim, hidden_dims, num_positions * code_dim, act)
        self.code_shape = (num_positions,)
        self.code_dim = code_dim

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(x).reshape(x.shape[0], self.code_dim, -1)  # (B, D, M)


class VectorCodeDecoderBody(nn.Module):
    """M code vectors (N, D, M) → MLP → raw likelihood parameters (N, P·D_x)."""

    def __init__(self, data_dim: int, hidden_dims: Sequence[int], num_positions: int, code_dim: int,
                 params_per_dim: int, act: str):
        super().__init__()
        self.net = mlp(num_positions * code_dim, hidden_dims, params_per_dim * data_dim, act)

    def forward(self, z: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(z.reshape(z.shape[0], -1))


BODIES = ("mlp", *CONV_BODIES)

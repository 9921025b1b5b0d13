"""Regularizers of the deterministic autoencoder: input corruptions (degradations) and penalties on the code.

**Corruptions** q(x̃|x) for the denoising autoencoder (Vincent et al. 2008, §2.3; 2010, §4.2). The
encoder sees x̃, the decoder must reproduce the clean x: the loss is −log p(x | z = f(x̃)) (for a VAE,
−E_q(z|x̃)[log p(x|z)] + β·KL(q(z|x̃) ‖ p(z))). The same operators are the *degradations* that image
restoration learns to undo — denoising, inpainting, super-resolution, colorization — so restoration
is not a second mechanism: a restoration model is an autoencoder trained with one of these
corruptions (``--corruption``, alias ``--degrade``), applied to degraded inputs by
:mod:`aekit.restoration`.

* ``gaussian`` (``noise``)  x̃ = x + σε, ε ~ N(0, I)                              (level σ ≥ 0)
* ``salt-pepper``  exactly round(νD) of the D entries of each example, drawn at random, set to 0 or 1
  by a fair coin ("a fraction ν of the elements of x (chosen at random for each example)", Vincent
  et al. 2010, §4.2)                                                             (level ν ∈ [0, 1])
* ``masking`` (``mask``)  exactly round(νD) entries of each example, drawn at random, set to 0 ("a
  fixed number νd of components are chosen at random, and their value is forced to 0", Vincent et
  al. 2008, §2.3)                                                                 (level ν ∈ [0, 1])
* ``block``  one rectangular hole of round(√ν·H) × round(√ν·W) pixels (every channel) at a uniformly
  random position, set to 0: inpainting; it hides the fraction ν of the image up to that rounding
* ``downsample:F``  every F×F block replaced by its mean (box filter), shown at the original size by
  nearest-neighbour upsampling: the encoder sees the (H/F)×(W/F) image; super-resolution. No noise.
* ``grayscale``  RGB → the luminance Y = 0.299R + 0.587G + 0.114B in all three channels:
  colorization. No noise.

Each corruption also names its *trivial restoration* (:meth:`baseline`, what a user gets without a
model): the degraded input itself; bicubic upsampling of the low-resolution image (downsample); the
grey image with the mean chroma of reference images (grayscale). And :meth:`restore` combines a
model's output with what the degraded input still shows: for grayscale, the model's chroma (Cb, Cr)
with the observed luminance, so that colorization predicts chroma from luminance in YCbCr where the
problem is well posed (see :mod:`aekit.image_metrics`); for the others, the model's output itself.

Every draw comes from the global torch RNG, so the trainer's exact resume covers it. The draws go
through :func:`aekit.latents.standard_normal` (uniforms as Φ(ε), random subsets as the ranks of ε),
which gives each process its slice of the global batch's noise under DistributedDataParallel: a run
corrupts the same entries whatever the number of processes.

**Penalties** Ω(x, z) on the code z = f(x), each returning one value per example (B,); the model
adds weight·Ω to the per-example reconstruction term.

* ``l1``           Ω = ‖z‖₁ = Σ_j |z_j|.
* ``kl`` sparsity  Ω = Σ_j KL(ρ ‖ ρ̂_j), ρ̂_j = (1/B) Σ_b z_bj the batch-mean activation of unit j
  (Ng, "Sparse autoencoder", CS294A notes, §2.3), with KL between Bernoulli distributions. Needs
  codes in (0, 1) (a sigmoid code). This is a property of the batch, not of an example: each example
  carries the batch value, so the batch mean the trainer takes is exactly Σ_j KL(ρ ‖ ρ̂_j); a split's
  mean (validation) is the mean of its batches' values and depends on the batch size.
* ``contractive``  Ω = ‖J_f(x)‖²_F = Σ_ij (∂z_j/∂x_i)² (Rifai et al. 2011). For a single sigmoid layer
  z = σ(Wx + b), J = diag(z ⊙ (1 − z)) W, so Ω = Σ_j (z_j(1 − z_j))² Σ_i W_ji² in closed form
  (:func:`sigmoid_jacobian_norm`); for any other encoder the Jacobian comes from autograd
  (``torch.func.jacrev`` under ``vmap``, :func:`jacobian_frobenius_norm`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Bernoulli, kl_divergence

from .errors import AekitError, unknown_choice
from .latents import standard_normal

# Batch-mean activations are kept this far from 0 and 1 so KL(ρ ‖ ρ̂) stays finite when a unit
# saturates in float32.
_RHO_HAT_FLOOR = 1e-6


def _uniform(x: torch.Tensor, shape=None) -> torch.Tensor:
    """u ~ U(0, 1) shaped like x (or ``shape``, batch first; float64), as Φ(ε) of the shared ε ~ N(0, I).

    Float64 keeps Φ(ε) below 1 for every ε float32 produces, so ``u < 1`` always holds: level 1
    corrupts every entry.
    """
    return torch.special.ndtr(standard_normal(x.shape if shape is None else shape, x, batch_dim=0).double())


def _random_subset(x: torch.Tensor, count: int) -> torch.Tensor:
    """A mask (B, D) with exactly ``count`` True entries per row, a uniformly random subset of each row.

    The subset is the ``count`` smallest of i.i.d. ε ~ N(0, I) per row: every subset of that size is
    equally likely, and the ε are the shared (DDP-sliced) noise.
    """
    hidden = torch.zeros(x.shape, dtype=torch.bool, device=x.device)
    if count > 0:
        eps = standard_normal(x.shape, x, batch_dim=0)
        hidden.scatter_(1, eps.topk(count, dim=1, largest=False).indices, True)
    return hidden


def _images(x: torch.Tensor, image_shape) -> torch.Tensor:
    return x.reshape(x.shape[0], *image_shape)  # (B, D) → (B, C, H, W)


# ----------------------------------------------------------------------------- corruptions
class _Corruption:
    """What every corruption answers besides ``corrupt``: its trivial restoration and the combination rule."""

    takes_level = True      # whether --corruption-level means something for it
    needs_image = False     # whether it needs the data's (C, H, W)

    def baseline(self, x_tilde: torch.Tensor, reference: torch.Tensor | None = None) -> torch.Tensor:
        """The trivial restoration of x̃ (no model): x̃ itself unless a subclass knows better."""
        return x_tilde

    def restore(self, x_tilde: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        """A model's restoration x̂ of x̃, combined with what x̃ still shows: x̂ itself unless a subclass says."""
        return x_hat

    def __str__(self):
        return f"{self.name}({self.level:g})" if self.takes_level else self.name


@dataclass(frozen=True)
class GaussianNoise(_Corruption):
    """Additive isotropic Gaussian noise: x̃ = x + σε, ε ~ N(0, I); ``level`` is σ."""

    level: float
    image_shape: tuple[int, int, int] | None = None
    name = "gaussian"

    def __post_init__(self):
        if not (math.isfinite(self.level) and self.level >= 0):
            raise AekitError(f"--corruption-level must be a finite σ >= 0 for gaussian (the noise std), got {self.level}")

    def corrupt(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.level * standard_normal(x.shape, x, batch_dim=0)



def _check_fraction(level: float, name: str, meaning: str) -> None:
    if not 0 <= level <= 1:
        raise AekitError(f"--corruption-level must be in [0, 1] for {name} ({meaning}), got {level}")


@dataclass(frozen=True)
class SaltAndPepperNoise(_Corruption):
    """Exactly round(νD) entries of each example, a random subset, set to 0 or 1 by a fair coin (ν = ``level``)."""

    level: float
    image_shape: tuple[int, int, int] | None = None
    name = "salt-pepper"

    def __post_init__(self):
        _check_fraction(self.level, "salt-pepper", "the fraction of entries set to 0 or 1")

    def corrupt(self, x: torch.Tensor) -> torch.Tensor:
        hit = _random_subset(x, round(self.level * x.shape[1]))
        salt = standard_normal(x.shape, x, batch_dim=0) > 0  # the coin: P = 1/2 each
        return torch.where(hit, salt.to(x.dtype), x)



@dataclass(frozen=True)
class MaskingNoise(_Corruption):
    """Exactly round(νD) entries of each example, a random subset, set to 0 (Vincent et al. 2008); ν = ``level``."""

    level: float
    image_shape: tuple[int, int, int] | None = None
    name = "masking"

    def __post_init__(self):
        _check_fraction(self.level, "masking", "the fraction of entries set to 0")

    def corrupt(self, x: torch.Tensor) -> torch.Tensor:
        return x.masked_fill(_random_subset(x, round(self.level * x.shape[1])), 0.0)



@dataclass(frozen=True)
class BlockMask(_Corruption):
    """One hole of round(√ν·H) × round(√ν·W) pixels at a uniformly random position, set to 0 in every channel.

    The top-left corner is (⌊u₁(H − h + 1)⌋, ⌊u₂(W − w + 1)⌋) with u₁, u₂ ~ U(0, 1) per example, so
    every position of the hole inside the image is equally likely.
    """

    level: float
    image_shape: tuple[int, int, int] | None = None
    name = "block"
    needs_image = True

    def __post_init__(self):
        _check_fraction(self.level, "block", "the fraction of the image area the hole covers")

    @property
    def hole(self) -> tuple[int, int]:
        """(h, w), the hole's size in pixels."""
        _, height, width = self.image_shape
        side = math.sqrt(self.level)
        return round(side * height), round(side * width)

    def corrupt(self, x: torch.Tensor) -> torch.Tensor:
        _, height, width = self.image_shape
        h, w = self.hole
        u = _uniform(x, (x.shape[0], 2))  # (B, 2)
        top = (u[:, 0] * (height - h + 1)).floor().long().clamp(max=height - h)  # (B,)
        left = (u[:, 1] * (width - w + 1)).floor().long().clamp(max=width - w)
        rows = torch.arange(height, device=x.device)
        cols = torch.arange(width, device=x.device)
        in_rows = (rows >= top[:, None]) & (rows < top[:, None] + h)  # (B, H)
        in_cols = (cols >= left[:, None]) & (cols < left[:, None] + w)  # (B, W)
        hole = (in_rows[:, :, None] & in_cols[:, None, :])[:, None]  # (B, 1, H, W), every channel
        return _images(x, self.image_shape).masked_fill(hole, 0.0).reshape(x.shape)



@dataclass(frozen=True)
class Downsample(_Corruption):
    """Box-filter downsampling by ``factor`` F, shown at the original size (each F×F block holds its mean).

    x̃ = nearest-upsample(avg-pool_F(x)): the low-resolution image (H/F)×(W/F) as the model's input,
    at the data's size, so the same network restores it. The trivial restoration is bicubic
    upsampling of the low-resolution image (PyTorch's bicubic, a = −0.75, half-pixel centres),
    clipped to the range of x̃ (bicubic overshoots at edges).
    """

    factor: int
    image_shape: tuple[int, int, int] | None = None
    level: float = 0.0   # unused: the factor is in the name
    name = "downsample"
    takes_level = False
    needs_image = True

    def __post_init__(self):
        if self.factor < 2:
            raise AekitError(f"downsample needs a factor >= 2, e.g. --corruption downsample:2, got {self.factor}")
        if self.image_shape is not None:
            _, height, width = self.image_shape
            if height % self.factor or width % self.factor:
                divisors = [f for f in range(2, math.gcd(height, width) + 1) if height % f == 0 and width % f == 0]
                raise AekitError(f"downsample:{self.factor} needs a factor that divides the image size "
                                 f"{height}x{width}; use one of: " + (", ".join(f"downsample:{f}" for f in divisors)
                                                                      or "none (no common divisor)"))

    def low_resolution(self, x: torch.Tensor) -> torch.Tensor:
        """avg-pool_F(x): (B, D) → (B, C, H/F, W/F)."""
        return F.avg_pool2d(_images(x, self.image_shape), self.factor)

    def corrupt(self, x: torch.Tensor) -> torch.Tensor:
        low = self.low_resolution(x)  # (B, C, H/F, W/F)
        up = low.repeat_interleave(self.factor, 2).repeat_interleave(self.factor, 3)  # (B, C, H, W), nearest
        return up.reshape(x.shape)

    def baseline(self, x_tilde: torch.Tensor, reference: torch.Tensor | None = None) -> torch.Tensor:
        low = _images(x_tilde, self.image_shape)[:, :, ::self.factor, ::self.factor]  # each block's value
        up = F.interpolate(low, scale_factor=self.factor, mode="bicubic", align_corners=False)
        return up.clamp(float(x_tilde.min()), float(x_tilde.max())).reshape(x_tilde.shape)

    def __str__(self):
        return f"downsample:{self.factor}"


@dataclass(frozen=True)
class Grayscale(_Corruption):
    """RGB → its luminance in every channel: x̃ = (Y, Y, Y), Y = 0.299R + 0.587G + 0.114B (colorization).

    :meth:`restore` keeps the observed Y and takes only the chroma (Cb, Cr) of the model's output;
    :meth:`baseline` is the grey image with the mean chroma of ``reference`` images (neutral 0.5
    without them, i.e. x̃ itself).
    """

    image_shape: tuple[int, int, int] | None = None
    level: float = 0.0   # unused
    name = "grayscale"
    takes_level = False
    needs_image = True

    def __post_init__(self):
        if self.image_shape is not None and self.image_shape[0] != 3:
            raise AekitError(f"grayscale (colorization) needs colour images with 3 channels, but these have "
                             f"{self.image_shape[0]}; use colour data, e.g. --data photos or images:DIR")

    def corrupt(self, x: torch.Tensor) -> torch.Tensor:
        from .image_metrics import luminance

        return luminance(_images(x, self.image_shape)).expand(-1, 3, -1, -1).reshape(x.shape)

    def baseline(self, x_tilde: torch.Tensor, reference: torch.Tensor | None = None) -> torch.Tensor:
        from .image_metrics import rgb_to_ycbcr, ycbcr_to_rgb

        y = _images(x_tilde, self.image_shape)[:, :1]  # (B, 1, H, W)
        chroma = torch.full((2,), 0.5, dtype=x_tilde.dtype, device=x_tilde.device)
        if reference is not None:
            chroma = rgb_to_ycbcr(_images(reference, self.image_shape))[:, 1:].mean((0, 2, 3)).to(x_tilde.dtype)
        ycc = torch.cat([y, chroma[None, :, None, None].expand(len(y), -1, *y.shape[2:])], 1)
        return ycbcr_to_rgb(ycc).clamp(0, 1).reshape(x_tilde.shape)

    def restore(self, x_tilde: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        from .image_metrics import rgb_to_ycbcr, ycbcr_to_rgb

        ycc = rgb_to_ycbcr(_images(x_hat, self.image_shape))
        ycc = torch.cat([_images(x_tilde, self.image_shape)[:, :1], ycc[:, 1:]], 1)  # observed Y, predicted chroma
        return ycbcr_to_rgb(ycc).clamp(0, 1).reshape(x_hat.shape)

    def __str__(self):
        return self.name


Corruption = GaussianNoise | SaltAndPepperNoise | MaskingNoise | BlockMask | Downsample | Grayscale


def _no_argument(cls):
    def build(arg, level, image_shape, name):
        if arg:
            raise AekitError(f"--corruption {name} takes no ':' parameter; give {cls.name} (the level is --corruption-level)")
        return cls(level, image_shape) if cls.takes_level else cls(image_shape)
    return build


def _downsample(arg, level, image_shape, name):
    if not arg:
        raise AekitError("downsample needs its factor, e.g. --corruption downsample:2 (14x14 from 28x28)")
    try:
        factor = int(arg)
    except ValueError:
        raise AekitError(f"downsample's factor must be an integer, e.g. downsample:2, got '{arg}'") from None
    return Downsample(factor, image_shape)


# name → build(argument after ':', level, image shape or None, name as given)
CORRUPTIONS: dict[str, Callable | None] = {
    "none": None,
    "gaussian": _no_argument(GaussianNoise),
    "salt-pepper": _no_argument(SaltAndPepperNoise),
    "masking": _no_argument(MaskingNoise),
    "block": _no_argument(BlockMask),
    "downsample": _downsample,
    "grayscale": _no_argument(Grayscale),
}
CORRUPTION_ALIASES = {"noise": "gaussian", "mask": "masking"}  # the restoration vocabulary (--degrade)
CORRUPTION_CHOICES = ("none, gaussian (or noise), salt-pepper, masking (or mask), block, downsample:F "
                      "(F = 2, 4, ...), grayscale")
_NO_LEVEL = {"downsample", "grayscale"}


def _parse(name: str) -> tuple[str, str]:
    base, _, arg = name.partition(":")
    base = CORRUPTION_ALIASES.get(base, base)
    if base not in CORRUPTIONS:
        raise AekitError(f"unknown corruption '{name}'; choose one of: {CORRUPTION_CHOICES}")
    return base, arg


def build_corruption(name: str, level: float, shape=None) -> Corruption | None:
    """The corruption ``name`` (e.g. "masking", "downsample:2") at ``level``; None for "none".

    ``shape``: the data's :class:`~aekit.config.DataShape`, when known; the corruptions on images
    then check it (a factor that divides the size, colour for grayscale, images at all). Without it
    only the name and the level are checked (a configuration, before any data is read). Bad names,
    levels and shapes raise AekitError.
    """
    base, arg = _parse(name)
    build = CORRUPTIONS[base]
    if build is None:
        if arg:
            raise AekitError(f"--corruption none takes no ':' parameter, got '{name}'")
        return None
    image_shape = None if shape is None else shape.image_shape
    corruption = build(arg, level, image_shape, name)
    if shape is not None and corruption.needs_image and image_shape is None:
        raise AekitError(f"--corruption {name} works on images, but this data is vectors without an image "
                         f"shape; use gaussian, salt-pepper or masking")
    return corruption


def corruption_takes_level(name: str) -> bool:
    """Whether the corruption ``name`` reads --corruption-level (not "none", downsample or grayscale)."""
    base = CORRUPTION_ALIASES.get(name.partition(":")[0], name.partition(":")[0])
    return base != "none" and base not in _NO_LEVEL


@torch.no_grad()
def corrupted_squared_error(model, data, corruption: Corruption, *, seed: int, batch_size: int = 500) -> float:
    """Σ_d (x_d − x̂(x̃)_d)² per example, averaged over ``data``: how well ``model`` restores x from x̃.

    x̃ is drawn with a fixed ``seed`` under ``fork_rng``, so every model is scored on the same
    corrupted inputs and the caller's RNG stream is left untouched. x̂ is the model's output combined
    with x̃ by the corruption's :meth:`restore` rule.
    """
    device = data.x.device
    total = torch.zeros((), dtype=torch.float64, device=device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for start in range(0, len(data), batch_size):
            x = data.x[start:start + batch_size]
            y = None if data.y is None or not getattr(model, "num_classes", None) else data.y[start:start + batch_size]
            x_tilde = corruption.corrupt(x)
            x_hat = corruption.restore(x_tilde, model.reconstruct(x_tilde, y))
            total += ((x - x_hat) ** 2).sum(-1).double().sum()
    return float(total) / len(data)


# ----------------------------------------------------------------------------- penalties
Encode = Callable[[torch.Tensor], torch.Tensor]  # (B, D) → codes (B, J), row by row


def sigmoid_jacobian_norm(z: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """‖J_f(x)‖²_F for one sigmoid layer z = σ(Wx + b): Σ_j (z_j(1 − z_j))² Σ_i W_ji², shape (B,).

    ``z`` (B, J) are the layer's outputs, ``weight`` W (J, D).
    """
    return (z * (1 - z)).pow(2) @ weight.pow(2).sum(1)


def jacobian_frobenius_norm(encode: Encode, x: torch.Tensor) -> torch.Tensor:
    """‖J_f(x)‖²_F = Σ_ij (∂f_j/∂x_i)² per example (B,), by reverse-mode autograd.

    ``jacrev`` takes one vector-Jacobian product per code dimension (J of them; codes are small)
    and ``vmap`` runs them for every example at once. The result is differentiable with respect to
    the encoder's parameters (the penalty's gradient is a second derivative), and it is computed
    even under an outer ``torch.no_grad`` (validation), which function transforms ignore.
    """
    def one(xi: torch.Tensor) -> torch.Tensor:  # (D,) → (J,)
        return encode(xi[None])[0]

    jac = torch.func.vmap(torch.func.jacrev(one))(x)  # (B, J, D)
    return jac.pow(2).flatten(1).sum(1)


@dataclass(frozen=True)
class L1Penalty:
    """Ω = ‖z‖₁ per example; the loss adds λ‖z‖₁ with λ = ``weight``."""

    weight: float
    name = "l1"

    def __call__(self, x: torch.Tensor, z: torch.Tensor, encode: Encode) -> torch.Tensor:
        return z.abs().sum(-1)


@dataclass(frozen=True)
class KLSparsityPenalty:
    """Ω = Σ_j KL(Bern(ρ) ‖ Bern(ρ̂_j)), ρ̂_j the batch-mean activation; every example carries the batch value.

    KL(ρ ‖ ρ̂) = ρ log(ρ/ρ̂) + (1 − ρ) log((1 − ρ)/(1 − ρ̂)). ``target`` is ρ ∈ (0, 1), ``weight`` β.
    Under DistributedDataParallel ρ̂ is the mean over each process's share of the batch.
    """

    weight: float
    target: float
    name = "sparsity_kl"

    def __post_init__(self):
        if not 0 < self.target < 1:
            raise AekitError(f"--sparsity-target must be in (0, 1) (the target mean activation ρ), got {self.target}")

    def __call__(self, x: torch.Tensor, z: torch.Tensor, encode: Encode) -> torch.Tensor:
        rho_hat = z.mean(0).clamp(_RHO_HAT_FLOOR, 1 - _RHO_HAT_FLOOR)  # (J,)
        rho = torch.full_like(rho_hat, self.target)
        kl = kl_divergence(Bernoulli(probs=rho), Bernoulli(probs=rho_hat)).sum()  # scalar: the batch's penalty
        return kl.expand(z.shape[0])  # (B,)


@dataclass(frozen=True, eq=False)
class ContractivePenalty:
    """Ω = ‖J_f(x)‖²_F per example; the loss adds λ‖J_f(x)‖²_F with λ = ``weight``.

    ``sigmoid_layer``: when the whole encoder is z = σ(layer(x)), that layer, and the closed form is
    used; None: autograd through ``encode``. The layer is a reference to the encoder's own module
    (this object is not a module, so the layer's parameters are registered once, by the encoder).
    """

    weight: float
    sigmoid_layer: nn.Linear | None = None
    name = "contractive"

    def __call__(self, x: torch.Tensor, z: torch.Tensor, encode: Encode) -> torch.Tensor:
        if self.sigmoid_layer is not None:
            return sigmoid_jacobian_norm(z, self.sigmoid_layer.weight)
        return jacobian_frobenius_norm(encode, x)


Penalty = L1Penalty | KLSparsityPenalty | ContractivePenalty
# name → (weight, target) → penalty; the target ρ only concerns the KL penalty
SPARSITY_PENALTIES = {"none": None, "l1": lambda weight, target: L1Penalty(weight), "kl": KLSparsityPenalty}
CODE_ACTIVATIONS = {"identity": nn.Identity, "sigmoid": nn.Sigmoid}


def build_penalties(*, sparsity: str = "none", sparsity_weight: float = 1.0, sparsity_target: float = 0.05,
                    contractive_weight: float = 0.0, sigmoid_layer: nn.Linear | None = None) -> tuple[Penalty, ...]:
    """The penalties a configuration asks for (none when ``sparsity`` is "none" and the contractive weight is 0)."""
    if sparsity not in SPARSITY_PENALTIES:
        raise unknown_choice("sparsity", sparsity, SPARSITY_PENALTIES)
    penalties: list[Penalty] = []
    if SPARSITY_PENALTIES[sparsity] is not None:
        penalties.append(SPARSITY_PENALTIES[sparsity](sparsity_weight, sparsity_target))
    if contractive_weight > 0:
        penalties.append(ContractivePenalty(contractive_weight, sigmoid_layer))
    return tuple(penalties)

"""Elementwise transforms and checks on data tensors, and the seeds that make them reproducible."""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from ..errors import AekitError


def derive_seed(*parts: int | str) -> int:
    """A 63-bit seed that is a pure function of ``parts``: the first 8 bytes of BLAKE2b(repr(parts)), >> 1.

    Hashing (rather than e.g. ``seed * 1_000_003 + epoch``) keeps the streams of different uses
    (permutation, noise, splits) apart even when their integer arguments coincide.
    """
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def seeded_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A fresh ``torch.Generator`` on ``device`` seeded with ``seed``."""
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    return generator


def bernoulli_from_uniform(probs: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """x̃ = 1[u < p], written into ``u``: with u ~ U[0, 1), P(x̃ = 1) = p, so x̃ ~ Bernoulli(p).

    Explicit uniforms let noise drawn for a whole global batch be sliced per process and give
    exactly the sample a single process would draw. In place, because a float tensor of the size
    of the data is the one allocation this needs (u must be floating, the dtype of the result).
    """
    return u.lt_(probs)


def binarize(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One sample x̃ ~ Bernoulli(x) per entry (x̃ = 1[u < x], u ~ U[0, 1)), as a float tensor.

    ``x`` must lie in [0, 1] (pixel intensities read as probabilities); ``generator`` (on x's
    device) makes the sample reproducible.
    """
    if not x.is_floating_point():
        x = x.float()
    check_unit_range(x)
    u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return bernoulli_from_uniform(x, u)


def check_unit_range(x: torch.Tensor, what: str = "the data") -> None:
    """Refuse to binarize values outside [0, 1] (they are not probabilities)."""
    if x.numel() == 0:
        return
    lo, hi = float(x.min()), float(x.max())
    if lo < 0.0 or hi > 1.0:
        raise AekitError(
            f"binarization needs values in [0, 1]; {what} spans [{lo:.4g}, {hi:.4g}]: rescale it "
            f"(8-bit pixels: divide by 255) or use --binarize none"
        )


def check_finite(x: torch.Tensor, origin: str) -> None:
    """Refuse NaN and ±inf in x (N, D), saying how many there are and where the first one is."""
    # Fast path: one reduction, no (N, D) temporary. The sum is finite when every entry is (a NaN
    # or inf propagates); only when it is not (or finite values overflow) are entries counted.
    if torch.isfinite(x.sum()):
        return
    bad = ~torch.isfinite(x)
    num_bad = int(bad.sum())
    if num_bad == 0:
        return
    num_nan = int(torch.isnan(x).sum())
    row, col = (int(i) for i in bad.nonzero()[0])
    raise AekitError(
        f"{origin} holds {num_nan} NaN and {num_bad - num_nan} infinite values (first at row {row}, "
        f"column {col} of the flattened data); remove or replace them in {origin}"
    )


def remap_labels(y: np.ndarray, origin: str) -> tuple[torch.Tensor, int]:
    """Labels → (int64 codes 0..K-1 in sorted order of the distinct values, K)."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise AekitError(f"labels from {origin} must be one value per row, got shape {y.shape}")
    if not (np.issubdtype(y.dtype, np.number) or y.dtype == bool):
        raise AekitError(f"labels from {origin} must be numbers, got {y.dtype}; encode classes as integers")
    if np.issubdtype(y.dtype, np.floating) and not np.isfinite(y).all():
        raise AekitError(f"labels from {origin} hold NaN or infinite values; fix them in {origin}")
    classes, codes = np.unique(y, return_inverse=True)
    return torch.from_numpy(codes.reshape(-1).astype(np.int64)), len(classes)


def standardize(train: torch.Tensor, *others: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(x - μ) / σ per feature with μ, σ from ``train`` only (σ = 0 features are only centred)."""
    loc = train.mean(dim=0)
    scale = train.std(dim=0)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    return tuple((x - loc) / scale for x in (train, *others))


# Denominators m tried by `value_levels`, most common first: binary, 8-bit, scikit-learn's 4-bit digits.
_LEVEL_DENOMINATORS = (1, 255, 16, *range(2, 16), *range(17, 65))
_LEVEL_TOLERANCE = 1e-4


def value_levels(x: torch.Tensor) -> int | None:
    """L when every value of ``x`` is one of k/(L−1), k = 0..L−1 (2: binary data, 256: 8-bit pixels
    scaled to [0, 1]), for L up to 256; None for anything else (continuous data, or outside [0, 1]).

    Quantized data is what a continuous density has to be dequantized for before its log-density
    can be turned into bits per dimension (see :mod:`aekit.evaluate`).
    """
    if x.numel() == 0 or float(x.min()) < 0.0 or float(x.max()) > 1.0:
        return None
    flat = x.reshape(-1)
    probe = flat[torch.randint(len(flat), (min(len(flat), 20000),), generator=seeded_generator(0, "cpu")).to(x.device)]
    for m in _LEVEL_DENOMINATORS:
        for values in (probe, flat):  # a cheap probe first, then every value
            scaled = values * m
            if float((scaled - scaled.round()).abs().max()) > _LEVEL_TOLERANCE * m:
                break
        else:
            return m + 1
    return None

"""Image quality metrics (PSNR, SSIM) and the colour space restoration works in.

Images are rows of a batch, (N, C·H·W) with an ``image_shape`` (C, H, W), or (N, C, H, W) tensors,
with values on a scale of ``data_range`` (1 for aekit's [0, 1] pixels). Every metric returns one
value per image, shape (N,), in float64; average them yourself (:func:`mean_finite` skips the
infinite PSNR of exact copies when asked).

* **PSNR** = 10 log₁₀(L² / MSE), MSE = (1/(C·H·W)) Σ (x − y)², L = ``data_range`` (dB; ∞ when x = y).
* **SSIM** (Wang, Bovik, Sheikh & Simoncelli 2004, eq. 13) with their standard settings: an 11×11
  circular-symmetric Gaussian window w with σ = 1.5 (normalized to sum 1), K₁ = 0.01, K₂ = 0.03,
  C₁ = (K₁L)², C₂ = (K₂L)². At every window position

      SSIM(x, y) = (2 μ_x μ_y + C₁)(2 σ_xy + C₂) / ((μ_x² + μ_y² + C₁)(σ_x² + σ_y² + C₂)),

  μ = Σ w·x, σ_x² = Σ w·(x − μ_x)², σ_xy = Σ w·(x − μ_x)(y − μ_y) (the weighted population moments
  of their eq. 14–16); the image's SSIM is the mean over the positions where the window lies wholly
  inside the image ("valid", as their reference MATLAB code), and over channels for colour images.
  This equals ``skimage.metrics.structural_similarity(x, y, gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=L)``. Images smaller than the window have no SSIM.

**Colour**: restoration of colour from grey (colorization) is posed in YCbCr, the full-range
ITU-R BT.601 transform JPEG uses (values in [0, 1], chroma centred on 0.5): the luminance Y is what a
grey image keeps, the chroma (Cb, Cr) is what is lost and must be predicted.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .errors import AekitError

SSIM_WINDOW = 11      # side of the Gaussian window (Wang et al. 2004, §III-C)
SSIM_SIGMA = 1.5      # its standard deviation in pixels
SSIM_K1 = 0.01
SSIM_K2 = 0.03

# Full-range BT.601 (JFIF): rows give Y, Cb, Cr from R, G, B; chroma is offset by 0.5.
_RGB_TO_YCBCR = torch.tensor([[0.299, 0.587, 0.114],
                              [-0.168736, -0.331264, 0.5],
                              [0.5, -0.418688, -0.081312]], dtype=torch.float64)
_YCBCR_OFFSET = torch.tensor([0.0, 0.5, 0.5], dtype=torch.float64)


def as_images(x: torch.Tensor, image_shape=None) -> torch.Tensor:
    """(N, D) rows with ``image_shape`` (C, H, W), or (N, C, H, W) already → (N, C, H, W)."""
    if x.ndim == 4:
        return x
    if x.ndim != 2 or image_shape is None:
        raise AekitError(f"images must be (N, C, H, W), or (N, D) rows with an image shape; got {tuple(x.shape)}")
    return x.reshape(x.shape[0], *image_shape)


def _pair(x: torch.Tensor, y: torch.Tensor, image_shape) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = as_images(x, image_shape).double(), as_images(y, image_shape).double()
    if x.shape != y.shape:
        raise AekitError(f"cannot compare images of shapes {tuple(x.shape)} and {tuple(y.shape)}")
    return x, y


def mse(x: torch.Tensor, y: torch.Tensor, image_shape=None) -> torch.Tensor:
    """Mean squared error per image over its C·H·W values, (N,) float64."""
    x, y = _pair(x, y, image_shape)
    return (x - y).pow(2).flatten(1).mean(1)


def psnr(x: torch.Tensor, y: torch.Tensor, image_shape=None, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio per image, 10 log₁₀(L² / MSE) in dB, (N,) float64 (∞ for identical images)."""
    err = mse(x, y, image_shape)
    return 10.0 * torch.log10(data_range ** 2 / err)  # 1/0 = inf: an exact copy


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    """The (size, size) Gaussian window w(i, j) ∝ exp(−(i² + j²)/(2σ²)), i, j = −r..r, Σ w = 1 (float64)."""
    r = (size - 1) / 2
    g = torch.exp(-((torch.arange(size, dtype=torch.float64) - r) ** 2) / (2 * sigma ** 2))
    g = g / g.sum()
    return g[:, None] * g[None, :]  # separable: the outer product of two 1-D Gaussians


def ssim(x: torch.Tensor, y: torch.Tensor, image_shape=None, data_range: float = 1.0) -> torch.Tensor:
    """Mean SSIM per image (Wang et al. 2004; settings in the module docstring), (N,) float64."""
    x, y = _pair(x, y, image_shape)
    n, c, h, w = x.shape
    if h < SSIM_WINDOW or w < SSIM_WINDOW:
        raise AekitError(f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels (its window); "
                         f"these are {h}x{w}")
    window = gaussian_window().to(x.device)[None, None].expand(c, 1, -1, -1)  # (C, 1, 11, 11), one per channel

    def blur(t):  # Σ w·t at every valid window position, channel by channel: (N, C, H−10, W−10)
        return F.conv2d(t, window, groups=c)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x ** 2    # Σ w(x − μ)² = Σ w x² − μ² since Σ w = 1
    var_y = blur(y * y) - mu_y ** 2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    index = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
    return index.flatten(1).mean(1)


def has_ssim(image_shape) -> bool:
    """Whether images of ``image_shape`` (C, H, W) are large enough for the SSIM window."""
    return image_shape is not None and min(image_shape[1:]) >= SSIM_WINDOW


def mean_finite(values: torch.Tensor) -> float:
    """The mean of the finite values (an exact copy's PSNR is ∞); nan when there are none."""
    finite = values[torch.isfinite(values)]
    return float(finite.mean()) if len(finite) else math.nan


# ----------------------------------------------------------------------------- colour
def rgb_to_ycbcr(images: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) RGB in [0, 1] → YCbCr (full-range BT.601: Y = 0.299R + 0.587G + 0.114B; Cb, Cr around 0.5)."""
    m = _RGB_TO_YCBCR.to(images.device, images.dtype)
    return torch.einsum("kc,nchw->nkhw", m, images) + _YCBCR_OFFSET.to(images.device, images.dtype)[:, None, None]


def ycbcr_to_rgb(images: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`rgb_to_ycbcr` (exact up to rounding): (N, 3, H, W) YCbCr → RGB."""
    m = torch.linalg.inv(_RGB_TO_YCBCR).to(images.device, images.dtype)
    centred = images - _YCBCR_OFFSET.to(images.device, images.dtype)[:, None, None]
    return torch.einsum("ck,nkhw->nchw", m, centred)


def luminance(images: torch.Tensor) -> torch.Tensor:
    """Y of (N, 3, H, W) RGB images, (N, 1, H, W)."""
    return rgb_to_ycbcr(images)[:, :1]

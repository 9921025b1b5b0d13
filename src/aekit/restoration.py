"""Image restoration: a model trained to undo a degradation, applied to degraded images and measured.

A restoration model is any autoencoder or VAE trained with a corruption (``--corruption``, alias
``--degrade``; see :mod:`aekit.regularizers`): its encoder saw x̃ ~ q(x̃|x) and its decoder had to
give back the clean x. Restoring is then

    x̂ = restore_rule(x̃, decoder mean at the code of x̃)

with the corruption's rule (colorization keeps the observed luminance and takes the model's chroma;
the others take the model's output). :func:`evaluate_restoration` degrades clean images with a
fixed seed, restores them, and scores per image, against the clean images, the restoration, the
degraded input itself, and the corruption's trivial baseline (bicubic upsampling for downsample, the
grey image with the mean training chroma for grayscale, the input for the others) in PSNR and SSIM
(:mod:`aekit.image_metrics`). Averages are over the images the degradation changed (a hole that
falls on blank background leaves nothing to restore, and an infinite PSNR).

    model = aekit.load("runs/sr2")                       # trained with --corruption downsample:2
    result = evaluate_restoration(model, test.x, model.corruption, image_shape=test.image_shape)
    result.summary()   # {"psnr": {"restored": ..., "baseline": ..., "degraded": ...}, "ssim": {...}, ...}
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .image_metrics import has_ssim, mean_finite, psnr, ssim

EVAL_SEED = 12345  # the same degraded images for every model and every call


@torch.no_grad()
def restore(model, x_tilde: torch.Tensor, corruption=None, y: torch.Tensor | None = None,
            batch_size: int = 500) -> torch.Tensor:
    """The model's restoration of degraded rows ``x_tilde`` (N, D), combined by ``corruption``'s rule if given."""
    was_training = model.training
    model.eval()
    out = []
    for start in range(0, len(x_tilde), batch_size):
        xt = x_tilde[start:start + batch_size]
        yb = None if y is None else y[start:start + batch_size]
        x_hat = model.reconstruct(xt, yb)
        out.append(x_hat if corruption is None else corruption.restore(xt, x_hat))
    model.train(was_training)
    return torch.cat(out) if out else x_tilde.clone()


@torch.no_grad()
def degrade(x: torch.Tensor, corruption, seed: int = EVAL_SEED) -> torch.Tensor:
    """x̃ ~ q(x̃|x) drawn with a fixed ``seed``, leaving the caller's RNG stream untouched."""
    with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
        torch.manual_seed(seed)
        return corruption.corrupt(x)


@dataclass
class RestorationResult:
    """Degraded, restored, baseline and clean rows (N, D), and per-image PSNR / SSIM of each against clean."""

    corruption: str
    clean: torch.Tensor
    degraded: torch.Tensor
    restored: torch.Tensor
    baseline: torch.Tensor
    psnr: dict[str, torch.Tensor] = field(default_factory=dict)    # "restored" / "baseline" / "degraded" → (N,) dB
    ssim: dict[str, torch.Tensor] | None = None                    # the same, or None for images under 11×11

    @property
    def changed(self) -> torch.Tensor:
        """(N,) bool: the images the degradation changed. The others (a hole over blank background) have nothing
        to restore, and an infinite PSNR for the degraded input; averages leave them out for every candidate."""
        return (self.degraded != self.clean).any(1)

    def summary(self) -> dict:
        """Means over the changed images of PSNR and SSIM for each candidate, and the gains over the baseline."""
        return summarize(self.corruption, self.psnr, self.ssim, self.changed)


def summarize(corruption: str, psnrs: dict, ssims: dict | None, changed: torch.Tensor) -> dict:
    """Averages of per-image scores over the ``changed`` images (see :attr:`RestorationResult.changed`)."""
    out = {"corruption": corruption, "images": len(changed), "images_scored": int(changed.sum()),
           "psnr": {k: mean_finite(v[changed]) for k, v in psnrs.items()}}
    out["psnr_gain_over_baseline"] = out["psnr"]["restored"] - out["psnr"]["baseline"]
    if ssims is not None:
        out["ssim"] = {k: float(v[changed].mean()) for k, v in ssims.items()}
        out["ssim_gain_over_baseline"] = out["ssim"]["restored"] - out["ssim"]["baseline"]
    return out


@torch.no_grad()
def score(clean: torch.Tensor, candidates: dict[str, torch.Tensor], image_shape) -> tuple[dict, dict | None]:
    """Per-image PSNR (and SSIM when the images are large enough) of each candidate against ``clean``."""
    psnrs = {k: psnr(v, clean, image_shape) for k, v in candidates.items()}
    ssims = {k: ssim(v, clean, image_shape) for k, v in candidates.items()} if has_ssim(image_shape) else None
    return psnrs, ssims


@torch.no_grad()
def evaluate_restoration(model, clean: torch.Tensor, corruption, *, image_shape, seed: int = EVAL_SEED,
                         y: torch.Tensor | None = None, reference: torch.Tensor | None = None,
                         batch_size: int = 500) -> RestorationResult:
    """Degrade ``clean`` (N, D) with ``corruption`` (fixed ``seed``), restore with ``model``, and score.

    ``reference``: clean training images, for baselines that use statistics (grayscale's mean chroma).
    """
    degraded = degrade(clean, corruption, seed)
    restored = restore(model, degraded, corruption, y, batch_size)
    baseline = corruption.baseline(degraded, reference)
    psnrs, ssims = score(clean, {"restored": restored, "baseline": baseline, "degraded": degraded}, image_shape)
    return RestorationResult(str(corruption), clean, degraded, restored, baseline, psnrs, ssims)

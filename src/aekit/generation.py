"""Is a model a generator? Scores of decoded samples against real data.

Samples (decoder means of codes drawn from some distribution) are scored by

* a classifier trained on the real training images (an MLP D-256-C, :func:`train_classifier`): the
  mean over samples of its largest class probability, and of the entropy of its class probabilities
  (nats) — a sample that looks like a digit gets a confident prediction;
* the mean Euclidean distance from each sample to its nearest training image (real test images give
  the reference); faint images are near the faintest training digits whatever their shape, so the
  mean pixel value is reported beside it.

Codes can be drawn from N(0, I) (a VAE's prior, which nothing in a plain autoencoder's training
relates to its codes) or from N(μ̂, Σ̂) fitted to the codes of the training images
(:func:`fitted_gaussian`). Used by ``benchmarks/ae_not_a_generator.py`` and ``aekit reproduce
ae-not-a-generator``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import MultivariateNormal


def train_classifier(x: torch.Tensor, y: torch.Tensor, epochs: int, seed: int, hidden: int = 256,
                     batch_size: int = 128, lr: float = 1e-3) -> nn.Module:
    """An MLP D-``hidden``-C trained with Adam on cross-entropy (C = the number of classes in ``y``)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = nn.Sequential(nn.Linear(x.shape[1], hidden), nn.ReLU(), nn.Linear(hidden, int(y.max()) + 1))
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=generator).split(batch_size):
            loss = F.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net.eval()


@torch.no_grad()
def accuracy(classifier: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((classifier(x).argmax(-1) == y).float().mean())


@torch.no_grad()
def embed_all(model, x: torch.Tensor, batch_size: int = 2000) -> torch.Tensor:
    """The model's codes of ``x`` (N, J): an autoencoder's f(x), a VAE's posterior means."""
    return torch.cat([model.embed(x[s:s + batch_size]) for s in range(0, len(x), batch_size)])


@torch.no_grad()
def fitted_gaussian(codes: torch.Tensor) -> MultivariateNormal:
    """N(μ̂, Σ̂) with the codes' mean and (1/N) covariance; a small ridge keeps Σ̂ positive definite."""
    codes = codes.double()
    mean = codes.mean(0)
    centred = codes - mean
    cov = centred.T @ centred / len(codes)
    return MultivariateNormal(mean, cov + 1e-6 * cov.diagonal().mean() * torch.eye(len(mean), dtype=cov.dtype))


@torch.no_grad()
def decode_codes(model, pz, n: int, seed: int) -> torch.Tensor:
    """Decoder means of n codes z ~ ``pz`` drawn with ``seed`` (the global RNG is left as it was): (n, D)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        z = pz.sample((n,)).float()  # (n, J)
    return model.decode(z).mean


@torch.no_grad()
def sample_scores(images: torch.Tensor, classifier: nn.Module, train_x: torch.Tensor, chunk: int = 250) -> dict:
    """The classifier's mean max probability and entropy, the nearest-training-image distance, mean pixel."""
    probs = classifier(images).softmax(-1)  # (n, C)
    entropy = -(probs * probs.clamp_min(1e-12).log()).sum(-1)
    nearest = torch.cat([torch.cdist(images[s:s + chunk], train_x).min(1).values for s in range(0, len(images), chunk)])
    return {"max_prob": float(probs.max(-1).values.mean()), "entropy": float(entropy.mean()),
            "nn_distance": float(nearest.mean()), "mean_pixel": float(images.mean()),
            "classes": torch.bincount(probs.argmax(-1), minlength=probs.shape[-1]).tolist()}


__all__ = ["train_classifier", "accuracy", "embed_all", "fitted_gaussian", "decode_codes", "sample_scores"]

"""The shifter data (Hinton, Dayan, Frey & Neal 1995; Dayan, Hinton, Neal & Zemel 1995).

A row a of 8 bits, each on independently with probability 0.2; a direction, left or right with
probability ½; the row b = a shifted one place in that direction, with wrap-around. The image is 4×8,
rows (a, a, b, b): each row shown twice. The label is the direction (0 left, 1 right).

The distribution is known: P(image) = Σ_direction P(a)·½ over the directions that make it. Both
directions make the same image exactly when a is unchanged by a shift of two places, i.e. a ∈
{00000000, 11111111, 01010101, 10101010}; so there are 2·256 − 4 = 508 distinct images, and

    H(image) = 8·h(0.2) + (1 − P(a has period 2))·log 2 = 4.0032 + 0.5760 = 4.5792 nats,

h the binary entropy. That lets evaluation report the exact KL(p_data ‖ p_model) = −H − Σ_x p(x) log
p_model(x) over the 508 images, and how well a hidden unit knows the direction: I(h_j; direction) and
the accuracy of 1[q(h_j = 1 | x) > ½] (up to a relabelling), whose ceilings are I(x; direction) =
(1 − P(period 2))·log 2 = 0.576 nats and 1 − P(period 2)/2 = 0.915 (the period-2 rows, the blank one
above all, carry no direction).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

from ..errors import AekitError

SHIFTER_WIDTH = 8        # bits per row
SHIFTER_ON = 0.2         # probability that a bit of the first row is on
SHIFTER_SIZE = 12500     # rows of the data set: 20% test, the rest train + val
SHIFTER_SEED = 0         # the data set is fixed data, not a function of the run's seed
SHIFTER_SHAPE = (1, 4, SHIFTER_WIDTH)


def shifter_images(rows: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """Rows a (N, 8) and directions (N,) (1 = right: b_i = a_{i−1}) → images (a, a, b, b) flattened (N, 32)."""
    shifted = torch.where(right[:, None].bool(), rows.roll(1, -1), rows.roll(-1, -1))  # (N, 8)
    return torch.cat([rows, rows, shifted, shifted], -1)


def sample_shifter(n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """n images (n, 32) float32 and their directions (n,) int64."""
    rows = (torch.rand(n, SHIFTER_WIDTH, generator=generator) < SHIFTER_ON).float()
    right = (torch.rand(n, generator=generator) < 0.5).long()
    return shifter_images(rows, right), right


def load_shifter(data_dir: Path | None = None, download: bool = True):
    """The registered source: SHIFTER_SIZE images with a fixed seed, labels = direction."""
    from .sources import SourceData

    x, y = sample_shifter(SHIFTER_SIZE, torch.Generator().manual_seed(SHIFTER_SEED))
    return SourceData(x=x, y=y, image_shape=SHIFTER_SHAPE, num_classes=2, name="shifter", origin="shifter")


@dataclass(frozen=True, eq=False)
class ShifterDistribution:
    """Every distinct image with its probability and P(right | image), float64."""

    images: torch.Tensor   # (508, 32)
    probs: torch.Tensor    # (508,), sums to 1
    p_right: torch.Tensor  # (508,): 0, 1, or ½ for the images both directions make

    @property
    def entropy(self) -> float:
        return float(-(self.probs * self.probs.log()).sum())

    @property
    def direction_information(self) -> float:
        """I(image; direction) = H(direction) − E[H(direction | image)] in nats: the most any code of the
        image can know about the direction."""
        h_y = _binary_entropy((self.probs * self.p_right).sum())
        return float(h_y - (self.probs * _binary_entropy(self.p_right)).sum())

    @property
    def accuracy_ceiling(self) -> float:
        """The best accuracy any function of the image reaches on the direction."""
        return float((self.probs * torch.maximum(self.p_right, 1 - self.p_right)).sum())


@lru_cache(maxsize=1)
def shifter_distribution() -> ShifterDistribution:
    """The exact distribution, by enumerating the 256 rows × 2 directions and merging equal images."""
    from ..latents import binary_states

    rows = binary_states(SHIFTER_WIDTH).double()  # (256, 8)
    p_row = (SHIFTER_ON ** rows.sum(1)) * ((1 - SHIFTER_ON) ** (SHIFTER_WIDTH - rows.sum(1)))
    both = torch.cat([rows, rows])
    right = torch.cat([torch.zeros(256), torch.ones(256)]).double()
    images = shifter_images(both, right)  # (512, 32)
    images, inverse = torch.unique(images, dim=0, return_inverse=True)  # (508, 32)
    probs = torch.zeros(len(images), dtype=torch.float64).index_add_(0, inverse, torch.cat([p_row, p_row]) / 2)
    p_right_mass = torch.zeros_like(probs).index_add_(0, inverse, right * torch.cat([p_row, p_row]) / 2)
    return ShifterDistribution(images, probs, p_right_mass / probs)


def kl_from_data(log_p_model: torch.Tensor) -> float:
    """KL(p_data ‖ p_model) in nats from log p_model of the 508 images (in ``shifter_distribution`` order)."""
    d = shifter_distribution()
    log_p_model = log_p_model.double().cpu()
    if log_p_model.shape != d.probs.shape:
        raise ValueError(f"expected log p_model of the {len(d.probs)} shifter images, got {tuple(log_p_model.shape)}")
    return float((d.probs * (d.probs.log() - log_p_model)).sum())


def _binary_entropy(p: torch.Tensor) -> torch.Tensor:
    p = p.clamp(1e-12, 1 - 1e-12)
    return -(p * p.log() + (1 - p) * (1 - p).log())


def _information(probs: torch.Tensor, p_right: torch.Tensor, unit: torch.Tensor) -> float:
    """I(h; direction) for a binary h with P(h = 1 | image) = unit, h independent of the direction given the image."""
    # I(h; y) = H(y) − Σ_h P(h) H(y | h)
    mass_on = (probs * unit).sum()
    right_on = (probs * unit * p_right).sum()
    right_off = (probs * (1 - unit) * p_right).sum()
    h_y = _binary_entropy((probs * p_right).sum())
    cond = 0.0
    for mass, right in ((mass_on, right_on), (1 - mass_on, right_off)):
        if mass > 1e-15:
            cond = cond + mass * _binary_entropy(right / mass)
    return float(h_y - cond)


def shift_scores(unit_probs: torch.Tensor) -> dict:
    """How well each unit knows the direction, from q(h_j = 1 | image) of the 508 images (508, U).

    Per unit j: ``information`` I(h_j; direction) in nats, h_j ~ q(h_j | image) given the image, and
    ``accuracy`` of predicting the direction by 1[q(h_j = 1 | image) > ½] under the better of the two
    labellings. The best unit's figures, and the ceilings any code can reach, are reported beside.
    """
    d = shifter_distribution()
    unit_probs = unit_probs.double().cpu()
    information, accuracy = [], []
    for j in range(unit_probs.shape[1]):
        m = unit_probs[:, j]
        information.append(_information(d.probs, d.p_right, m))
        on = (m > 0.5).double()
        a = float((d.probs * (on * d.p_right + (1 - on) * (1 - d.p_right))).sum())
        accuracy.append(max(a, 1 - a))
    best = max(range(len(information)), key=lambda j: information[j])
    return {"shift_unit": best, "shift_information": information[best], "shift_accuracy": accuracy[best],
            "shift_accuracy_best_unit": max(accuracy), "information_ceiling": d.direction_information,
            "accuracy_ceiling": d.accuracy_ceiling, "unit_information": information, "unit_accuracy": accuracy}


def layer_information(state_probs: torch.Tensor) -> float:
    """I(h; direction) in nats for a whole layer h, from q(h = s | image) of the 508 images (508, S)."""
    d = shifter_distribution()
    state_probs = state_probs.double().cpu()
    joint_right = (d.probs * d.p_right)[:, None] * state_probs  # P(image, right, s) summed below
    mass = (d.probs[:, None] * state_probs).sum(0)  # P(s)
    right = joint_right.sum(0)  # P(s, right)
    keep = mass > 1e-15
    h_cond = (mass[keep] * _binary_entropy(right[keep] / mass[keep])).sum()
    return float(_binary_entropy((d.probs * d.p_right).sum()) - h_cond)


@torch.no_grad()
def shifter_report(model, num_samples: int = 1000) -> dict:
    """KL(p_data ‖ p_model) (exact when the model enumerates its latent, else importance-sampled with
    ``num_samples``) and the top layer's shift scores (see :func:`shift_scores`)."""
    d = shifter_distribution()
    device = next(model.parameters()).device
    x = d.images.float().to(device)
    report = {"data_entropy": d.entropy, "distinct_images": len(d.images)}
    try:
        log_px = model.exact_log_likelihood(x)
        report["log_px_method"] = "exact"
    except (AekitError, AttributeError):
        log_px = model.log_likelihood(x, None, num_samples=num_samples)
        report["log_px_method"] = f"importance sampling, k={num_samples}"
    report["kl"] = kl_from_data(log_px)
    units = (model.code_probabilities(x, -1, num_samples) if hasattr(model, "code_probabilities")
             else model.embed(x))
    report.update(shift_scores(units))
    if hasattr(model, "code_distribution") and units.shape[1] <= 12:  # the whole top layer, not one unit
        report["top_layer_information"] = layer_information(model.code_distribution(x, -1, num_samples))
    return report

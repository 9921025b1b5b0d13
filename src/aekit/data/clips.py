"""Procedural signals with more or fewer than two spatial dimensions: clips (3-D) and waveforms (1-D).

* ``moving-digits``: clips of T = ``CLIP_FRAMES`` frames of 28×28, one digit of 14×14 moving in a
  straight line at constant speed and bouncing off the borders (a small Moving-MNIST, Srivastava et
  al. 2015). Digits are MNIST's (2×2-averaged to 14×14) when the MNIST files are found in the data
  folder (never downloaded for this), else scikit-learn's 8×8 digits upscaled bilinearly to 14×14.
  Train + val clips use one set of digits and test clips a disjoint one (MNIST's official test
  images, or the last fifth of scikit-learn's). Rows are (1, T, 28, 28) flattened; labels are the
  digit's class. Deterministic: a pure function of ``seed`` and the digit images.
* ``waveforms``: sequences (1, ``WAVE_LENGTH``) of one of four periodic shapes — sine, square,
  triangle, sawtooth (the label) — with random period, phase and amplitude and a little Gaussian
  noise, scaled into [0, 1].

Sensor series windows (another source) fit the same layout: rows (N, C·L) with ``image_shape`` (C, L).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import AekitError

CLIP_FRAMES = 8          # T
CLIP_SIZE = 28           # frame side
DIGIT_SIZE = 14          # side of the moving digit
CLIP_TRAIN = 2000        # clips in the train + val pool
CLIP_TEST = 500          # test clips (from disjoint digits)
CLIP_SEED = 0            # the clips are fixed data, not a function of a run's seed
SPEED = (1.0, 3.0)       # pixels per frame

WAVE_LENGTH = 64
WAVE_TRAIN = 4000
WAVE_TEST = 1000
WAVE_SEED = 0
WAVE_NOISE = 0.02
WAVE_SHAPES = ("sine", "square", "triangle", "sawtooth")


def moving_digits(digits: torch.Tensor, labels: torch.Tensor, n: int, *, frames: int = CLIP_FRAMES,
                  size: int = CLIP_SIZE, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """n clips (n, 1, frames, size, size) in [0, 1] and their labels (n,), from digit images (M, d, d).

    Clip i takes a digit uniformly at random, a start position uniform over the frame, a direction
    uniform on the circle and a speed uniform in ``SPEED``; positions reflect off the borders.
    """
    g = np.random.default_rng(seed)
    m, d = digits.shape[0], digits.shape[-1]
    if d > size:
        raise AekitError(f"digits of side {d} do not fit frames of side {size}")
    room = size - d  # top-left corner positions 0..room
    which = g.integers(0, m, n)
    start = g.uniform(0, room, (n, 2))
    angle = g.uniform(0, 2 * np.pi, n)
    speed = g.uniform(*SPEED, n)
    velocity = np.stack([np.sin(angle), np.cos(angle)], 1) * speed[:, None]  # (n, 2) rows, columns per frame
    t = np.arange(frames)[None, :, None]
    raw = start[:, None, :] + velocity[:, None, :] * t  # (n, T, 2), unfolded
    period = 2 * room
    folded = np.abs(((raw % period) + period) % period)
    pos = np.where(folded > room, period - folded, folded).round().astype(np.int64)  # reflect: (n, T, 2)
    clips = torch.zeros(n, frames, size, size)
    imgs = digits[torch.from_numpy(which)]  # (n, d, d)
    for f in range(frames):
        for i in range(n):
            r, c = pos[i, f]
            clips[i, f, r:r + d, c:c + d] = imgs[i]
    return clips.unsqueeze(1), labels[torch.from_numpy(which)]


def _mnist_digits(data_dir) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """MNIST train and test digits at 14×14, or None when the files are not in the data folder."""
    from .sources import MNIST, load_idx_release

    try:
        data = load_idx_release(MNIST, data_dir, download=False)
    except AekitError:
        return None
    shrink = lambda x: F.avg_pool2d(x.reshape(-1, 1, 28, 28), 2)[:, 0]  # noqa: E731  (N, 14, 14)
    return shrink(data.x), data.y, shrink(data.test_x), data.test_y


def _sklearn_digits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.from_numpy(bunch.data.astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
    big = F.interpolate(x, size=(DIGIT_SIZE, DIGIT_SIZE), mode="bilinear", align_corners=False)[:, 0].clamp(0, 1)
    y = torch.from_numpy(bunch.target.astype(np.int64))
    cut = len(big) * 4 // 5
    return big[:cut], y[:cut], big[cut:], y[cut:]


def load_moving_digits(data_dir: Path | None = None, download: bool = True):
    """The ``moving-digits`` source (see the module docstring)."""
    from .sources import SourceData

    found = _mnist_digits(data_dir)
    origin = "moving-digits (MNIST digits)" if found is not None else "moving-digits (scikit-learn digits)"
    train_digits, train_y, test_digits, test_y = found if found is not None else _sklearn_digits()
    x, y = moving_digits(train_digits, train_y, CLIP_TRAIN, seed=CLIP_SEED)
    tx, ty = moving_digits(test_digits, test_y, CLIP_TEST, seed=CLIP_SEED + 1)
    shape = (1, CLIP_FRAMES, CLIP_SIZE, CLIP_SIZE)
    return SourceData(x=x.reshape(len(x), -1), y=y, image_shape=shape, num_classes=10, name="moving-digits",
                      origin=origin, test_x=tx.reshape(len(tx), -1), test_y=ty)


def waveforms(n: int, *, length: int = WAVE_LENGTH, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """n sequences (n, 1, length) in [0, 1] and their shape labels (n,) (see the module docstring).

    x_t = clip(0.5 + 0.45·a·w((t/P + φ) mod 1) + ε_t, 0, 1), a ~ U[0.4, 1], P ~ U[8, 32] steps,
    φ ~ U[0, 1), ε_t ~ N(0, ``WAVE_NOISE``²), w the unit shape on [0, 1).
    """
    g = np.random.default_rng(seed)
    kind = g.integers(0, len(WAVE_SHAPES), n)
    amplitude = g.uniform(0.4, 1.0, n)[:, None]
    period = g.uniform(8.0, 32.0, n)[:, None]
    phase = g.uniform(0.0, 1.0, n)[:, None]
    u = (np.arange(length)[None, :] / period + phase) % 1.0  # (n, L)
    shapes = np.stack([np.sin(2 * np.pi * u), np.where(u < 0.5, 1.0, -1.0), 1 - 4 * np.abs(u - 0.5),
                       2 * u - 1], 0)  # (4, n, L)
    wave = shapes[kind, np.arange(n)]
    x = np.clip(0.5 + 0.45 * amplitude * wave + g.normal(0.0, WAVE_NOISE, (n, length)), 0.0, 1.0)
    return torch.from_numpy(x.astype(np.float32))[:, None], torch.from_numpy(kind.astype(np.int64))


def load_waveforms(data_dir: Path | None = None, download: bool = True):
    """The ``waveforms`` source (see the module docstring)."""
    from .sources import SourceData

    x, y = waveforms(WAVE_TRAIN, seed=WAVE_SEED)
    tx, ty = waveforms(WAVE_TEST, seed=WAVE_SEED + 1)
    return SourceData(x=x.reshape(len(x), -1), y=y, image_shape=(1, WAVE_LENGTH), num_classes=len(WAVE_SHAPES),
                      name="waveforms", origin="waveforms", test_x=tx.reshape(len(tx), -1), test_y=ty)


def _load_vq_codes(data_dir=None, download: bool = True):
    from ..models.vqvae import load_vq_codes  # models import data: resolved when the source is read

    return load_vq_codes(data_dir, download)


def clip_sources() -> dict:
    """The registrations this module adds to ``DATASETS`` (name → Source)."""
    from .sources import Source

    return {
        "moving-digits": Source(f"clips of {CLIP_FRAMES} frames of 28x28, one digit moving and bouncing, "
                                f"{CLIP_TRAIN} train (incl. val) + {CLIP_TEST} test, labelled; MNIST digits "
                                f"from --data-dir if there, else scikit-learn's; offline", load_moving_digits),
        "waveforms": Source(f"1-D sequences of {WAVE_LENGTH} steps: sine / square / triangle / sawtooth, "
                            f"{WAVE_TRAIN} + {WAVE_TEST} test, labelled; offline", load_waveforms),
        "vq-codes": Source("code maps of a trained vq-vae's own train/val/test data, encoded once "
                           "(--data-dir RUN; aekit train prior --codes-from RUN sets it)", _load_vq_codes),
    }


__all__ = ["moving_digits", "waveforms", "load_moving_digits", "load_waveforms", "clip_sources"]

"""Sensor series as data: a CSV time series → sliding windows, and window scores → time-step scores.

File format (the one of TimeEval / GutenTAG and of ``../shared/data/timeseries``): a header line,
then one row per time step,

    timestamp,value[,more value columns][,is_anomaly]

The ``timestamp`` column (also ``time``, ``date`` or ``index``) is kept as text and not used as a
feature; ``is_anomaly`` (also ``label`` or ``anomaly``) holds 0/1 per step; every other column is a
channel. A series of T steps and C channels is given to a model as windows of W steps taken every
S steps (``--window W --stride S``). Each window is one row of C·W values, channel-major
(``row[c·W + t]``), so an MLP body reads it as a vector and a 1-D convolution body reshapes it to
(C, W). The starts are 0, S, 2S, … and, when (T − W) is not a multiple of S, also T − W, so that
every step is covered by at least one window.

Splits. The first ``train_steps`` steps (the whole series by default) are the training part: its
first (1 − val_fraction) steps give the training windows, its last steps the validation windows
(contiguous, so validation windows never overlap training ones), and the per-channel mean and
standard deviation of the training part normalize every window, also those of new series scored
later. The test split is the windows of the whole series; a window is labelled 1 when any of its
steps is.

Back to time steps. A window score s_i (an anomaly score of window i, covering steps
[a_i, a_i + W)) becomes a per-step score by averaging the windows that cover the step:

    s(t) = mean { s_i : a_i ≤ t < a_i + W }       (or their max)

With stride 1 an isolated anomaly at t raises every window that contains it, and s(u) rises
linearly towards t from both sides (W − |u − t| of the W windows covering u also cover t), so the
per-step score peaks at the anomalous step itself.

UCR rule (Wu & Keogh 2021): a detector succeeds on a series when its highest-scoring step lies
within ±100 steps of the labelled anomaly.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..errors import AekitError, unknown_choice
from ._util import one_line
from .dataset import ArrayDataset
from .sources import _is_number

SERIES_PREFIX = "series:"
TIME_COLUMNS = ("timestamp", "time", "date", "index")
LABEL_COLUMNS = ("is_anomaly", "label", "anomaly")
UCR_MARGIN = 100  # steps either side of the labelled anomaly (Wu & Keogh 2021)
AGGREGATIONS = ("mean", "max")


def is_series_name(name: str) -> bool:
    """Whether a ``--data`` value names a series file (``series:PATH.csv``)."""
    return str(name).startswith(SERIES_PREFIX)


def series_path(name: str) -> Path:
    path = Path(str(name)[len(SERIES_PREFIX):]).expanduser()
    if not path.is_file():
        raise AekitError(f"series file {path} does not exist; give --data series:PATH.csv")
    return path


@dataclass(frozen=True, eq=False)
class Series:
    """A multichannel series: values (T, C), optional 0/1 labels (T,), the timestamps as read."""

    values: np.ndarray              # (T, C) float64
    labels: np.ndarray | None       # (T,) int64 in {0, 1}, or None
    timestamps: list[str]           # (T,) as written in the file
    channels: tuple[str, ...]       # the value columns' names
    origin: str

    def __len__(self) -> int:
        return len(self.values)

    @property
    def num_channels(self) -> int:
        return self.values.shape[1]

    def anomaly_regions(self) -> list[tuple[int, int]]:
        """[(first, last)] steps of each run of consecutive labelled steps."""
        if self.labels is None:
            return []
        padded = np.r_[0, self.labels, 0]
        edges = np.flatnonzero(np.diff(padded))  # starts and ends alternate
        return [(int(a), int(b) - 1) for a, b in zip(edges[::2], edges[1::2])]


def read_series(path: str | Path) -> Series:
    """Read a series CSV (see the module docstring); one clear line for every malformed file."""
    path = Path(path)
    try:
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError) as error:
        raise AekitError(f"cannot read series file {path} ({one_line(error)})") from None
    rows = [r for r in rows if any(cell.strip() for cell in r)]
    if not rows:
        raise AekitError(f"series file {path} is empty")
    header = [c.strip().strip("'\"").lower() for c in rows[0]]
    if all(_is_number(c) for c in header):
        raise AekitError(f"series file {path} needs a header line naming its columns, e.g. timestamp,value,is_anomaly")
    time_col = next((i for i, c in enumerate(header) if c in TIME_COLUMNS), None)
    label_col = next((i for i, c in enumerate(header) if c in LABEL_COLUMNS), None)
    value_cols = [i for i in range(len(header)) if i not in (time_col, label_col)]
    if not value_cols:
        raise AekitError(f"series file {path} has no value column (columns: {', '.join(header)})")
    body = rows[1:]
    if not body:
        raise AekitError(f"series file {path} holds a header but no time steps")
    values = np.empty((len(body), len(value_cols)), dtype=np.float64)
    labels = np.empty(len(body), dtype=np.float64) if label_col is not None else None
    for r, row in enumerate(body):
        if len(row) != len(header):
            raise AekitError(f"series file {path}: line {r + 2} has {len(row)} fields, the header {len(header)}")
        try:
            values[r] = [float(row[i]) for i in value_cols]
            if labels is not None:
                labels[r] = float(row[label_col])
        except ValueError:
            raise AekitError(f"series file {path}: line {r + 2} holds a value that is not a number "
                             f"({','.join(row)})") from None
    if not np.isfinite(values).all():
        r, c = np.argwhere(~np.isfinite(values))[0]
        raise AekitError(f"series file {path}: line {r + 2}, column '{header[value_cols[c]]}' is NaN or infinite; "
                         f"series windows need every value")
    if labels is not None:
        bad = sorted(set(np.unique(labels)) - {0.0, 1.0})
        if bad:
            raise AekitError(f"series file {path}: column '{header[label_col]}' must hold 0 or 1 per step, "
                             f"found {bad[:3]}")
        labels = labels.astype(np.int64)
    timestamps = [row[time_col] for row in body] if time_col is not None else [str(i) for i in range(len(body))]
    return Series(values, labels, timestamps, tuple(header[i] for i in value_cols), str(path))


def write_series(series: Series, path: str | Path) -> None:
    """Write ``series`` in the format :func:`read_series` reads (timestamp, channels, is_anomaly)."""
    path = Path(path)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["timestamp", *series.channels] + (["is_anomaly"] if series.labels is not None else []))
        for t in range(len(series)):
            w.writerow([series.timestamps[t], *(repr(float(v)) for v in series.values[t])]
                       + ([int(series.labels[t])] if series.labels is not None else []))


# ------------------------------------------------------------------------------------- windows
def window_starts(length: int, window: int, stride: int) -> np.ndarray:
    """Starts 0, S, 2S, … ≤ T − W, plus T − W when the last regular window stops short of the end."""
    if window < 1 or stride < 1:
        raise AekitError(f"--window and --stride must be >= 1, got window {window}, stride {stride}")
    if length < window:
        raise AekitError(f"the series has {length} time steps, fewer than one window of {window}; lower --window")
    starts = np.arange(0, length - window + 1, stride)
    if starts[-1] != length - window:
        starts = np.r_[starts, length - window]
    return starts.astype(np.int64)


def make_windows(values: np.ndarray, window: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """values (T, C) → windows (N, C·W) channel-major, and their starts (N,)."""
    starts = window_starts(len(values), window, stride)
    idx = starts[:, None] + np.arange(window)[None, :]  # (N, W)
    windows = values[idx]  # (N, W, C)
    return np.ascontiguousarray(windows.transpose(0, 2, 1).reshape(len(starts), -1)), starts  # (N, C·W)


def window_labels(labels: np.ndarray, starts: np.ndarray, window: int) -> np.ndarray:
    """1 for a window that covers any labelled step, else 0: (N,)."""
    covered = np.r_[0, np.cumsum(labels)]  # prefix sums: labelled steps in [a, b) = covered[b] - covered[a]
    return ((covered[starts + window] - covered[starts]) > 0).astype(np.int64)


def aggregate_window_scores(scores: np.ndarray, starts: np.ndarray, window: int, length: int,
                            how: str = "mean") -> np.ndarray:
    """Window scores (N,) → per-step scores (T,): the mean (or max) over the windows covering each step."""
    scores = np.asarray(scores, dtype=np.float64)
    if how == "mean":
        total = np.zeros(length + 1)
        count = np.zeros(length + 1)
        np.add.at(total, starts, scores)  # difference arrays: +s at a_i, −s at a_i + W
        np.add.at(total, starts + window, -scores)
        np.add.at(count, starts, 1.0)
        np.add.at(count, starts + window, -1.0)
        return np.cumsum(total)[:length] / np.cumsum(count)[:length]
    if how == "max":
        out = np.full(length, -np.inf)
        for offset in range(window):  # W vectorized passes instead of N·W scalar updates
            np.maximum.at(out, starts + offset, scores)
        return out
    raise unknown_choice("aggregation", how, AGGREGATIONS)


def ucr_rule(step_scores: np.ndarray, series: Series, margin: int = UCR_MARGIN) -> dict:
    """The UCR archive's verdict: is the top-scoring step within ±margin of the labelled anomaly?"""
    regions = series.anomaly_regions()
    top = int(np.argmax(step_scores))
    if not regions:
        return {"top_step": top, "ucr_hit": None}
    hit = any(a - margin <= top <= b + margin for a, b in regions)
    first, last = regions[0]
    return {"top_step": top, "ucr_hit": bool(hit), "anomaly_start": first, "anomaly_end": last,
            "ucr_margin": margin}


# ------------------------------------------------------------------------------------- splits
@dataclass(frozen=True)
class Normalization:
    """Per-channel (x − loc) / scale, fitted on the training part only."""

    loc: np.ndarray    # (C,)
    scale: np.ndarray  # (C,)

    @classmethod
    def fit(cls, values: np.ndarray) -> "Normalization":
        loc, scale = values.mean(0), values.std(0)
        return cls(loc, np.where(scale > 0, scale, 1.0))

    def __call__(self, values: np.ndarray) -> np.ndarray:
        return (values - self.loc) / self.scale


def training_part(series: Series, train_steps: int | None) -> int:
    """T_train: the length of the training part."""
    if train_steps is None:
        return len(series)
    if train_steps > len(series):
        raise AekitError(f"--train-steps {train_steps} exceeds the {len(series)} time steps of {series.origin}")
    return train_steps


def series_normalization(series: Series, train_steps: int | None) -> Normalization:
    return Normalization.fit(series.values[:training_part(series, train_steps)])


def series_splits(series: Series, *, window: int, stride: int, train_steps: int | None,
                  val_fraction: float, name: str) -> dict[str, ArrayDataset]:
    """Train / val / test windows of ``series`` (see the module docstring), normalized on the training part."""
    t_train = training_part(series, train_steps)
    num_val = max(1, round(val_fraction * t_train))
    t_fit = t_train - num_val
    for part, steps in (("training", t_fit), ("validation", num_val)):
        if steps < window:
            raise AekitError(f"the {part} part of {series.origin} has {steps} time steps, fewer than one window of "
                             f"{window}; lower --window, or change --val-fraction / --train-steps")
    norm = series_normalization(series, train_steps)
    values = norm(series.values)  # (T, C)
    labels = series.labels if series.labels is not None else np.zeros(len(series), dtype=np.int64)
    parts = {"train": (0, t_fit), "val": (t_fit, t_train), "test": (0, len(series))}
    out = {}
    for split, (a, b) in parts.items():
        x, starts = make_windows(values[a:b], window, stride)
        y = window_labels(labels[a:b], starts, window) if series.labels is not None else None
        # rows are channel-major windows, (C, W): the layout the 1-D conv bodies (--body conv1d) read
        out[split] = ArrayDataset(x=torch.from_numpy(x.astype(np.float32)),
                                  y=None if y is None else torch.from_numpy(y),
                                  image_shape=(values.shape[1], window), num_classes=2 if y is not None else None,
                                  name=name)
    return out


def series_windows(series: Series, norm: Normalization, window: int, stride: int) -> tuple[torch.Tensor, np.ndarray]:
    """Every window of ``series`` normalized with the training statistics: (N, C·W) float32, starts (N,)."""
    x, starts = make_windows(norm(series.values), window, stride)
    return torch.from_numpy(x.astype(np.float32)), starts


# ---------------------------------------------------------------------------- synthetic series
SYNTHETIC_LENGTH = 2000
SYNTHETIC_PERIOD = 40.0       # steps per cycle of the base sine
SYNTHETIC_NOISE = 0.05        # σ of the Gaussian noise on the unit-amplitude base signal
SYNTHETIC_START = 1500        # first anomalous step (the first 1000 steps are the clean training part)
SYNTHETIC_SPAN = 60           # anomalous steps of the kinds that last (all but spike)


def _spike(x: np.ndarray, t: int, span: int, rng) -> int:
    x[t] += 4.0  # four times the base amplitude, one step
    return 1


def _level_shift(x: np.ndarray, t: int, span: int, rng) -> int:
    x[t:t + span] += 1.5
    return span


def _frequency(x: np.ndarray, t: int, span: int, rng) -> int:
    steps = np.arange(t, t + span)
    # three times the frequency, phase-matched at t so the change is in the frequency, not a jump
    x[t:t + span] += np.sin(2 * np.pi * (t + 3 * (steps - t)) / SYNTHETIC_PERIOD) - np.sin(
        2 * np.pi * steps / SYNTHETIC_PERIOD)
    return span


def _flat_line(x: np.ndarray, t: int, span: int, rng) -> int:
    x[t:t + span] = x[t]
    return span


ANOMALY_KINDS: dict[str, Callable] = {"spike": _spike, "level-shift": _level_shift, "frequency": _frequency,
                                      "flat-line": _flat_line}


def synthetic_series(kind: str, *, length: int = SYNTHETIC_LENGTH, start: int = SYNTHETIC_START,
                     span: int = SYNTHETIC_SPAN, channels: int = 1, noise: float = SYNTHETIC_NOISE,
                     seed: int = 0) -> Series:
    """sin(2πt/40) + N(0, noise²) per channel (channel c phase-shifted by c/4 of a cycle), with one anomaly of
    ``kind`` (spike, level-shift, frequency, flat-line) injected into channel 0 from step ``start``."""
    if kind not in ANOMALY_KINDS:
        raise unknown_choice("anomaly kind", kind, ANOMALY_KINDS)
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    values = np.stack([np.sin(2 * np.pi * t / SYNTHETIC_PERIOD + c * np.pi / 2) for c in range(channels)], 1)
    values = values + noise * rng.standard_normal(values.shape)  # (T, C)
    labels = np.zeros(length, dtype=np.int64)
    hit = ANOMALY_KINDS[kind](values[:, 0], start, span, rng)
    labels[start:start + hit] = 1
    names = ("value",) if channels == 1 else tuple(f"value-{c}" for c in range(channels))
    return Series(values, labels, [str(i) for i in t], names, f"synthetic {kind}")


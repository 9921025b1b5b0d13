"""Anomaly scores of every model that defines one, their metrics, and a saved detection threshold.

A score is "higher = more anomalous", in nats per example unless named otherwise:

* ``reconstruction``: −log p(x | z = f(x)), the decoder's likelihood at the model's code of x
  (f(x) the autoencoder's code, the posterior mean of a VAE / PPCA, E[h | v] of an RBM); for a
  fixed-σ Gaussian decoder this is ‖x − x̂‖² / 2σ² plus a constant.
* ``squared-error``: ‖x − x̂‖², x̂ = reconstruct(x) (any model).
* ``neg-elbo``: −ELBO(x) = −E_q[log p(x|z)] + KL(q(z|x) ‖ p(z)) (VAEs), averaged over L draws.
* ``log-likelihood``: −log p(x): importance-sampled with k samples for VAEs / IWAEs, exact for
  PPCA, −F(v) − log Z for an RBM (log Z by AIS on the training data; a constant shift of free-energy).
* ``reconstruction-probability``: −(1/L) Σ_l log p(x | z_l), z_l ~ q(z|x), the negative log
  "reconstruction probability" of An & Cho (2015, Algorithm 4), for models with a posterior q.
* ``free-energy``: F(v) = −log Σ_h exp(−E(v, h)) of an energy-based model (RBM).

A model defines the scores whose capabilities it declares (:mod:`aekit.capabilities`); asking for
another is a one-line error naming the ones it has. New kinds add theirs with :func:`register_score`
(the VQ-VAE: its reconstruction error through ``reconstruction`` / ``squared-error``, and its
prior bound as a new entry needing the capability that says it has a prior over codes).

Metrics (scikit-learn): AUROC, AUPRC (average precision) and the best F1 over thresholds, against
0/1 labels (1 = anomalous). A detection threshold is chosen on the training split's scores — the
(1 − c) quantile for a contamination rate c, or a given quantile q — and saved in the run folder as
``detector.json``, so ``aekit detect RUN --data NEW`` flags the rows (or time steps) scoring above it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .capabilities import ELBO, FREE_ENERGY, LOG_LIKELIHOOD, POSTERIOR, has, kind_of
from .errors import AekitError, unknown_choice

DETECTOR = "detector.json"  # in the run folder, written atomically
SCORE_BATCH = 500


@dataclass(frozen=True)
class ScoreSettings:
    samples: int = 10        # L draws of z (neg-elbo, reconstruction-probability)
    iw_samples: int = 1000   # k importance samples (log-likelihood of a VAE)


@dataclass(frozen=True)
class AnomalyScore:
    """One anomaly score: which capabilities it needs and how it is computed on a batch (B,)."""

    name: str
    help: str
    needs: tuple[str, ...]
    compute: Callable  # (model, x (B, D), y or None, ScoreSettings) -> (B,), higher = more anomalous
    stochastic: bool = False   # draws random numbers (run under a fixed seed)
    exportable: bool = True    # a deterministic function of x that can be traced for export

    def defined_for(self, model) -> bool:
        return all(has(model, c) for c in self.needs)


def _reconstruction(model, x, y, s: ScoreSettings) -> torch.Tensor:
    return -model.decode(model.embed(x, y), y).log_prob(x)


def _squared_error(model, x, y, s: ScoreSettings) -> torch.Tensor:
    return ((x - model.reconstruct(x, y)) ** 2).sum(-1)


def _neg_elbo(model, x, y, s: ScoreSettings) -> torch.Tensor:
    return torch.stack([model.evaluation_terms(x, y)["neg_elbo"] for _ in range(s.samples)]).mean(0)


def _neg_log_likelihood(model, x, y, s: ScoreSettings) -> torch.Tensor:
    return -model.log_likelihood(x, y, num_samples=s.iw_samples)


def _reconstruction_probability(model, x, y, s: ScoreSettings) -> torch.Tensor:
    qz = model.encode(x, y)
    z = qz.sample((s.samples,))  # (L, B, J)
    return -model.decode(z, y).log_prob(x).mean(0)


def _free_energy(model, x, y, s: ScoreSettings) -> torch.Tensor:
    return model.free_energy(x)


SCORES: dict[str, AnomalyScore] = {}


def device_of(model) -> torch.device:
    """Where the model's weights (or buffers) live; the CPU for a model with neither."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def register_score(score: AnomalyScore) -> None:
    """Add an anomaly score (a new kind's own, e.g. a VQ-VAE's prior bound) to ``SCORES``."""
    SCORES[score.name] = score


for _score in (
    AnomalyScore("free-energy", "F(x) of an energy-based model (rbm)", (FREE_ENERGY,), _free_energy),
    AnomalyScore("neg-elbo", "-ELBO, averaged over --samples draws (vae, iwae, miwae)", (ELBO,), _neg_elbo,
                 stochastic=True, exportable=False),
    AnomalyScore("log-likelihood", "-log p(x): importance-sampled with --iw-samples (vae), exact (ppca), AIS (rbm)",
                 (LOG_LIKELIHOOD,), _neg_log_likelihood, stochastic=True, exportable=False),
    AnomalyScore("reconstruction-probability", "-(1/L) sum_l log p(x|z_l), z_l ~ q(z|x) (An & Cho 2015)",
                 (POSTERIOR,), _reconstruction_probability, stochastic=True, exportable=False),
    AnomalyScore("reconstruction", "-log p(x | z = code of x) (every model)", (), _reconstruction),
    AnomalyScore("squared-error", "||x - reconstruct(x)||^2 (every model)", (), _squared_error),
):
    register_score(_score)


def scores_for(model) -> list[str]:
    """The scores ``model`` defines; the first is its default (the order of ``SCORES``)."""
    return [name for name, s in SCORES.items() if s.defined_for(model)]


def get_score(model, name: str | None) -> AnomalyScore:
    """The score ``name`` (default: the model's first), or a one-line error naming the ones it defines."""
    available = scores_for(model)
    if name is None:
        return SCORES[available[0]]
    if name not in SCORES:
        raise unknown_choice("anomaly score", name, SCORES)
    if name not in available:
        raise AekitError(f"{kind_of(model)} defines no {name} score; it defines: {', '.join(available)}")
    return SCORES[name]


@torch.no_grad()
def score_samples(model, x: torch.Tensor, y: torch.Tensor | None = None, *, score: str | None = None,
                  settings: ScoreSettings = ScoreSettings(), batch_size: int = SCORE_BATCH, seed: int = 0,
                  reference: torch.Tensor | None = None, progress: bool = False) -> np.ndarray:
    """Anomaly scores (N,) of the rows of ``x``, float64, higher = more anomalous.

    Random draws (neg-elbo, log-likelihood, reconstruction-probability) come from a generator seeded
    with ``seed``, so the same call gives the same scores. ``reference`` (the training rows) is what
    an RBM's log Z is estimated from for ``log-likelihood``.
    """
    spec = get_score(model, score)
    if x.ndim != 2:
        raise AekitError(f"data to score must be rows (N, D), got shape {tuple(x.shape)}")
    if bool(torch.isnan(x).any()):
        raise AekitError("the data holds NaN (missing entries); scoring needs complete rows: fill them first "
                         "with aekit impute RUN --data FILE")
    model.eval()
    device = device_of(model)
    x = x.to(device)
    y = None if y is None else y.to(device)
    if spec.name == "log-likelihood" and hasattr(model, "prepare_likelihood") and reference is not None:
        model.prepare_likelihood(reference.to(device))  # e.g. an RBM's log Z by AIS from the training data
    out = []
    from tqdm.auto import tqdm

    with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
        torch.manual_seed(seed)
        for start in tqdm(range(0, len(x), batch_size), desc=f"scoring ({spec.name})", disable=not progress,
                          leave=False):
            xb = x[start:start + batch_size]
            yb = None if y is None else y[start:start + batch_size]
            out.append(spec.compute(model, xb, yb, settings).double().cpu())
    return torch.cat(out).numpy() if out else np.zeros(0)


# ------------------------------------------------------------------------------------- metrics
def binary_labels(labels, origin: str = "the labels") -> np.ndarray:
    """0/1 labels as int64 (1 = anomalous); anything else is a one-line error."""
    y = np.asarray(labels)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise AekitError(f"{origin} must be one label per row, got shape {y.shape}")
    if y.dtype == bool:
        return y.astype(np.int64)
    if not np.issubdtype(y.dtype, np.number) or not np.isfinite(y).all():
        raise AekitError(f"{origin} must be 0 (normal) or 1 (anomalous) per row")
    values = set(np.unique(y).tolist())
    if not values <= {0, 1}:
        shown = ", ".join(f"{v:g}" for v in sorted(values)[:6])
        raise AekitError(f"metrics need binary labels, 0 (normal) or 1 (anomalous), but {origin} holds {shown}"
                         f"{', ...' if len(values) > 6 else ''}")
    return y.astype(np.int64)


def detection_metrics(scores: np.ndarray, labels: np.ndarray) -> dict:
    """AUROC, AUPRC (average precision) and the best F1 with its threshold; ``labels`` 0/1, 1 = anomalous.

    With only one class present the metrics are undefined: returned as None with the counts.
    """
    from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

    scores = np.asarray(scores, dtype=np.float64)
    labels = binary_labels(labels)
    if len(scores) != len(labels):
        raise AekitError(f"{len(scores)} scores but {len(labels)} labels; give one label per row")
    out = {"num_anomalous": int(labels.sum()), "num_normal": int(len(labels) - labels.sum())}
    if out["num_anomalous"] == 0 or out["num_normal"] == 0:
        return {**out, "auroc": None, "auprc": None, "best_f1": None, "best_f1_threshold": None}
    precision, recall, thresholds = precision_recall_curve(labels, scores)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-300)
    best = int(np.argmax(f1[:-1])) if len(thresholds) else 0  # the last point (recall 0) has no threshold
    return {**out, "auroc": float(roc_auc_score(labels, scores)),
            "auprc": float(average_precision_score(labels, scores)),
            "best_f1": float(f1[best]), "best_f1_threshold": float(thresholds[best]) if len(thresholds) else None}


# ----------------------------------------------------------------------------------- detector
@dataclass(frozen=True)
class Detector:
    """A threshold on one score, fitted on the training split: flag score > threshold."""

    score: str
    threshold: float
    rule: str                 # "contamination" or "quantile"
    value: float              # c, or q
    samples: int
    iw_samples: int
    seed: int
    train: dict = field(default_factory=dict)  # count, mean, std, min, max of the training scores
    per: str = "row"          # "row", or "time step" for series runs (scores aggregated over windows)
    aggregate: str | None = None

    def flag(self, scores: np.ndarray) -> np.ndarray:
        return np.asarray(scores) > self.threshold


def threshold_rule(contamination: float | None, quantile: float | None) -> tuple[str, float, float]:
    """(rule, value, q): the quantile q of the training scores that becomes the threshold."""
    if contamination is not None and quantile is not None:
        raise AekitError("give either --contamination or --quantile, not both")
    if contamination is not None:
        if not 0 < contamination < 1:
            raise AekitError(f"--contamination must be in (0, 1) (the share of training rows above the threshold), "
                             f"got {contamination}")
        return "contamination", float(contamination), 1.0 - float(contamination)
    if quantile is None:
        raise AekitError("a threshold needs --contamination C or --quantile Q")
    if not 0 < quantile < 1:
        raise AekitError(f"--quantile must be in (0, 1), got {quantile}")
    return "quantile", float(quantile), float(quantile)


def fit_detector(train_scores: np.ndarray, *, score: str, contamination: float | None = None,
                 quantile: float | None = None, settings: ScoreSettings = ScoreSettings(), seed: int = 0,
                 per: str = "row", aggregate: str | None = None) -> Detector:
    """The threshold = the q-quantile of the training scores (q = 1 − contamination, or the quantile given)."""
    rule, value, q = threshold_rule(contamination, quantile)
    s = np.asarray(train_scores, dtype=np.float64)
    if len(s) == 0 or not np.isfinite(s).all():
        raise AekitError("the training scores are empty or not finite; no threshold can be fitted")
    stats = {"count": int(len(s)), "mean": float(s.mean()), "std": float(s.std()), "min": float(s.min()),
             "max": float(s.max())}
    return Detector(score, float(np.quantile(s, q)), rule, value, settings.samples, settings.iw_samples, seed,
                    stats, per, aggregate)


def save_detector(run_dir: str | Path, detector: Detector) -> Path:
    from .runs import write_checked_json

    path = Path(run_dir) / DETECTOR
    write_checked_json(path, asdict(detector))
    return path


def load_detector(run_dir: str | Path) -> Detector:
    path = Path(run_dir) / DETECTOR
    if not path.is_file():
        raise AekitError(f"{run_dir} has no detection threshold yet; fit one with aekit detect {run_dir} "
                         f"--contamination 0.01 (or aekit score {run_dir} --contamination 0.01)")
    from .runs import read_checked_json

    d = read_checked_json(path, f"fit the threshold again with aekit detect {run_dir} --contamination RATE")
    try:
        return Detector(**d)
    except TypeError as e:
        raise AekitError(f"{path} is not a detection threshold ({e}); fit the threshold again") from None


def settings_of(detector: Detector) -> ScoreSettings:
    return ScoreSettings(samples=detector.samples, iw_samples=detector.iw_samples)


def summary(values: dict) -> str:
    """One line of the scalar metrics, for the terminal."""
    parts = []
    for k, v in values.items():
        if isinstance(v, float) and not math.isnan(v):
            parts.append(f"{k}={v:.4f}")
        elif v is not None and not isinstance(v, (list, dict)):
            parts.append(f"{k}={v}")
    return "  ".join(parts)


# ------------------------------------------------------------------------- what a command scores
@dataclass
class ScoreTarget:
    """Rows (or series windows) to score, with the 0/1 labels the metrics use and where they came from."""

    x: torch.Tensor                 # (N, D) rows, or (N, C·W) windows of a series
    labels: np.ndarray | None       # per row, or per time step for a series; None: no anomaly labels
    index: list[str]                # row numbers, or the series' timestamps
    origin: str
    series: object | None = None    # aekit.data.timeseries.Series for a series run
    starts: np.ndarray | None = None  # window starts (series)
    note: str | None = None         # why there are no metrics, when there are none

    @property
    def per(self) -> str:
        return "time step" if self.series is not None else "row"


def is_series_run(cfg) -> bool:
    from .data.timeseries import is_series_name

    return is_series_name(cfg.data.name)


def _series_parts(cfg):
    """(the run's series, its normalization, T_fit, T_train) for a series run."""
    from .data.timeseries import read_series, series_normalization, series_path, training_part

    series = read_series(series_path(cfg.data.name))
    t_train = training_part(series, cfg.data.train_steps)
    t_fit = t_train - max(1, round(cfg.data.val_fraction * t_train))
    return series, series_normalization(series, cfg.data.train_steps), t_fit, t_train


def _series_slice(series, a: int, b: int):
    from .data.timeseries import Series

    return Series(series.values[a:b], None if series.labels is None else series.labels[a:b],
                  series.timestamps[a:b], series.channels, f"{series.origin} steps {a}-{b - 1}")


def _series_target(cfg, data: str | None, split: str) -> ScoreTarget:
    from .data.timeseries import is_series_name, read_series, series_path, series_windows

    own, norm, t_fit, t_train = _series_parts(cfg)
    if data is not None:
        if not is_series_name(data):
            raise AekitError(f"this run was trained on windows of a series; give --data series:FILE.csv, not {data}")
        series = read_series(series_path(data))
        if series.num_channels != own.num_channels:
            raise AekitError(f"{series.origin} has {series.num_channels} value column(s) but the run was trained on "
                             f"{own.num_channels} ({', '.join(own.channels)})")
    else:
        series = {"train": lambda: _series_slice(own, 0, t_fit), "val": lambda: _series_slice(own, t_fit, t_train),
                  "test": lambda: own}[split]()
    x, starts = series_windows(series, norm, cfg.data.window, cfg.data.stride)
    note = None if series.labels is not None else f"{series.origin} has no is_anomaly column"
    return ScoreTarget(x, series.labels, list(series.timestamps), series.origin, series, starts, note)


def _read_rows(path: str, labels: str | None):
    """Rows and raw labels (not remapped) of a user .npy / .npz / .csv file."""
    from .data.sources import _ARRAY_READERS, _read_label_file, is_user_file

    p = Path(path).expanduser()
    if not is_user_file(path):
        raise AekitError(f"--data must be a .npy, .npz or .csv file (or series:FILE.csv for a series run), got {path}")
    if not p.is_file():
        raise AekitError(f"data file {p} does not exist; check the path")
    x, y = _ARRAY_READERS[p.suffix.lower()](p)
    if labels is not None:
        lp = Path(labels).expanduser()
        if not lp.is_file():
            raise AekitError(f"label file {lp} does not exist; check the path")
        y = _read_label_file(lp)
    x = np.asarray(x)
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == bool) or x.ndim < 2:
        raise AekitError(f"{p} must hold numeric rows (N, D) or images (N, H, W) / (N, C, H, W)")
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32).reshape(len(x), -1)), y, str(p)


class RunSplits:
    """The run's splits, read on first use and then kept: one command scoring the test split, fitting a
    threshold on the training split and estimating an RBM's log Z reads the data once."""

    def __init__(self, cfg):
        self.cfg, self._splits = cfg, None

    def __call__(self):
        if self._splits is None:
            from .run_data import prepare_run_data

            self._splits = prepare_run_data(self.cfg)
        return self._splits


def score_target(model, data: str | None = None, *, split: str = "test", labels: str | None = None,
                 splits: RunSplits | None = None) -> ScoreTarget:
    """What ``aekit score`` / ``aekit detect`` score: the run's own split, or a user file, checked against the run."""
    cfg = model.config
    if split not in ("train", "val", "test"):
        raise AekitError(f"unknown split '{split}'; choose one of: train, val, test")
    if is_series_run(cfg):
        if labels is not None:
            raise AekitError("a series brings its labels in its is_anomaly column; drop --labels")
        return _series_target(cfg, data, split)
    if data is not None:
        from .data.timeseries import is_series_name

        if is_series_name(data):
            raise AekitError("this run was not trained on a series (train with --data series:FILE.csv --window W)")
        x, raw, origin = _read_rows(data, labels)
        if x.shape[1] != cfg.shape.data_dim:
            raise AekitError(f"{origin} has rows of {x.shape[1]} values but the run was trained on "
                             f"{cfg.shape.data_dim}; give data of the run's shape")
        if raw is not None and len(raw) != len(x):
            raise AekitError(f"{len(raw)} labels for the {len(x)} rows of {origin}; give one label per row")
        y = None if raw is None else binary_labels(raw, f"the labels of {origin}")
        note = None if y is not None else f"{origin} has no labels (an npz 'y', a csv 'label' column, or --labels)"
        return ScoreTarget(x, y, [str(i) for i in range(len(x))], origin, note=note)
    part = getattr((splits or RunSplits(cfg))(), split)
    y, note = None, None
    if part.y is None:
        note = f"the {split} split has no labels"
    elif cfg.data.normal_class is not None or part.num_classes == 2:
        y = part.y.numpy().astype(np.int64)  # one-class protocol (1 = another class), or binary labels
    else:
        note = (f"the labels of {cfg.data.name} are {part.num_classes} classes, not anomaly labels; train with "
                f"--normal-class C for the one-class protocol")
    return ScoreTarget(part.x, y, [str(i) for i in range(len(part))], f"{cfg.data.name} ({split} split)", note=note)


def target_scores(model, target: ScoreTarget, *, score: str | None = None, settings: ScoreSettings = ScoreSettings(),
                  seed: int = 0, aggregate: str = "mean", progress: bool = False,
                  splits: RunSplits | None = None) -> np.ndarray:
    """Scores of a :class:`ScoreTarget`: per row, or per time step (window scores averaged, or their max)."""
    score = get_score(model, score).name
    reference = None
    if score == "log-likelihood" and hasattr(model, "prepare_likelihood"):
        reference = (splits or RunSplits(model.config))().train.x
    rows = score_samples(model, target.x, score=score, settings=settings, seed=seed, reference=reference,
                         progress=progress)
    if target.series is None:
        return rows
    from .data.timeseries import aggregate_window_scores

    return aggregate_window_scores(rows, target.starts, model.config.data.window, len(target.series), aggregate)


def target_metrics(target: ScoreTarget, scores: np.ndarray) -> dict:
    """Detection metrics against the target's labels (and the UCR rule for a series); {} without labels."""
    if target.labels is None:
        return {}
    metrics = detection_metrics(scores, target.labels)
    if target.series is not None:
        from .data.timeseries import ucr_rule

        metrics.update(ucr_rule(scores, target.series))
    return metrics


def fit_run_detector(model, *, score: str | None = None, contamination: float | None = None,
                     quantile: float | None = None, settings: ScoreSettings = ScoreSettings(), seed: int = 0,
                     aggregate: str = "mean", progress: bool = False, splits: RunSplits | None = None) -> Detector:
    """A :class:`Detector` fitted on the scores of the run's training split (or the training part of its series)."""
    threshold_rule(contamination, quantile)  # refuse bad values before any scoring
    spec = get_score(model, score)
    splits = splits or RunSplits(model.config)
    target = score_target(model, split="train", splits=splits)
    scores = target_scores(model, target, score=spec.name, settings=settings, seed=seed, aggregate=aggregate,
                           progress=progress, splits=splits)
    return fit_detector(scores, score=spec.name, contamination=contamination, quantile=quantile, settings=settings,
                        seed=seed, per=target.per, aggregate=aggregate if target.series is not None else None)


def write_scores_csv(path: str | Path, target: ScoreTarget, scores: np.ndarray, flags: np.ndarray | None = None) -> None:
    """index (or timestamp), score[, label][, anomalous] per row or time step, written atomically."""
    from .runs import atomic_write_text

    key = "timestamp" if target.series is not None else "index"
    label = "is_anomaly" if target.series is not None else "label"
    header = [key, "score"] + ([label] if target.labels is not None else []) + (["anomalous"] if flags is not None else [])
    lines = [",".join(header)]
    for i, s in enumerate(scores):
        row = [target.index[i], repr(float(s))]
        if target.labels is not None:
            row.append(str(int(target.labels[i])))
        if flags is not None:
            row.append(str(int(flags[i])))
        lines.append(",".join(row))
    atomic_write_text(Path(path), "\n".join(lines) + "\n")


# ----------------------------------------------------------------------------- a problem with a known answer
def subspace_anomaly_problem(seed: int, d: int = 8, q: int = 2):
    """Normal rows near a 2-D subspace of R^8 (x = 1.5·Wz + 0.1ε); anomalies pushed off it by 2 along a
    direction orthogonal to span(W) (20 noise standard deviations)."""
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((d, q))
    W /= np.linalg.norm(W, axis=0)

    def normal(n):
        return rng.standard_normal((n, q)) @ W.T * 1.5 + 0.1 * rng.standard_normal((n, d))

    off = np.eye(d) - W @ np.linalg.pinv(W)  # projector onto the orthogonal complement of span(W)
    u = rng.standard_normal((300, d)) @ off.T
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    test = np.r_[normal(300), normal(300) + 2.0 * u]
    return normal(1500).astype(np.float32), test.astype(np.float32), np.r_[np.zeros(300), np.ones(300)]

"""Disentanglement metrics against known factors of variation: the β-VAE metric, the FactorVAE metric, MIG.

Each metric needs a *factor space* — data generated from independent factors, here the procedural
dSprites (:mod:`aekit.data.dsprites`) — and a *representation*: a function from observations (n, D)
to codes (n, J), for a trained model its posterior mean (:func:`representation`). The metrics draw
fresh factor combinations uniformly from the space, render them and encode them, as
disentanglement_lib does (Locatello et al. 2019, "Challenging common assumptions in the unsupervised
learning of disentangled representations"); the defaults are that library's study settings.

* **β-VAE metric** (Higgins et al. 2017, §3). One training point: pick a factor k uniformly; draw B
  pairs of combinations that share factor k's value (all other factors independent); the feature is
  (1/B) Σ_b |r(x₁ᵇ) − r(x₂ᵇ)| (J,), the label k. A linear classifier (scikit-learn's logistic
  regression) is trained on ``num_train`` points; the score is its accuracy on ``num_eval`` new
  points. Settings: B = 64, 10,000 / 5,000 points.
* **FactorVAE metric** (Kim & Mnih 2018, §4). The variance of each code dimension over
  ``num_variance_estimate`` random observations, s_j²; dimensions with s_j < ``prune_threshold`` (0.05)
  are dropped as collapsed. One point: pick k, draw B combinations all sharing factor k's value, and
  vote for (k, argmin_j Var_b[r_j] / s_j²). The classifier maps each dimension to the factor with the
  most training votes; the score is the share of evaluation votes it gets right. Settings: B = 64,
  10,000 / 5,000 points, 10,000 for the variances.
* **MIG** (Chen et al. 2018, §4.1). On ``num_train`` = 10,000 random observations, each code
  dimension is discretized into 20 equal-width bins over its range; I(z_j; v_k) is the discrete
  mutual information with each factor k and H(v_k) the factor's entropy; MIG = (1/K) Σ_k
  (I_(1) − I_(2)) / H(v_k), the gap between the two dimensions most informative about factor k.

Scores are in [0, 1]. A code that is the true factors plus small noise scores near 1 on all three;
a rotation of it mixes the factors and scores lower (``tests/test_disentanglement.py``).
"""

from __future__ import annotations

import warnings
from typing import Callable, Protocol

import numpy as np
import torch

from .errors import AekitError

Representation = Callable[[np.ndarray], np.ndarray]  # observations (n, D) → codes (n, J)

# disentanglement_lib's study settings (unsupervised_study_v1 metric configs)
BETA_VAE = {"batch_size": 64, "num_train": 10000, "num_eval": 5000}
FACTOR_VAE = {"batch_size": 64, "num_train": 10000, "num_eval": 5000, "num_variance_estimate": 10000,
              "prune_threshold": 0.05}
MIG = {"num_train": 10000, "num_bins": 20}
_POINTS_PER_CALL = 64  # training points whose observations are rendered and encoded together


class FactorSpace(Protocol):
    factor_sizes: tuple[int, ...]

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray: ...   # (n, K) indices
    def observe(self, factors: np.ndarray) -> np.ndarray: ...                       # (n, D) float32


class FactorIndices:
    """A factor space whose observations are the factor indices themselves: a stand-in for rendered
    images, for checking the metrics on codes with known structure."""

    def __init__(self, factor_sizes=(3, 6, 10, 8, 8)):
        self.factor_sizes = tuple(factor_sizes)

    def sample_factors(self, n, rng):
        return sample_factors(self, n, rng)

    def observe(self, factors):
        return factors.astype(np.float32)


def sample_factors(space: FactorSpace, n: int, rng: np.random.Generator) -> np.ndarray:
    """n combinations, each factor drawn uniformly from its values: (n, K) indices."""
    return np.stack([rng.integers(0, size, n) for size in space.factor_sizes], 1)


def representation(model, batch_size: int = 1000) -> Representation:
    """The model's code of observations: ``model.embed`` (the posterior mean of a VAE), in batches, as numpy."""
    device = next(model.parameters()).device

    @torch.no_grad()
    def represent(x: np.ndarray) -> np.ndarray:
        was_training = model.training
        model.eval()
        out = [model.embed(torch.from_numpy(np.ascontiguousarray(x[s:s + batch_size])).to(device)).double().cpu()
               for s in range(0, len(x), batch_size)]
        model.train(was_training)
        return torch.cat(out).numpy()
    return represent


def _chunks(total: int, size: int = _POINTS_PER_CALL):
    for start in range(0, total, size):
        yield min(size, total - start)


# ----------------------------------------------------------------------------- β-VAE metric
def _beta_vae_points(space, represent, rng, batch_size: int, num_points: int) -> tuple[np.ndarray, np.ndarray]:
    features, labels = [], []
    for p in _chunks(num_points):
        k = rng.integers(0, len(space.factor_sizes), p)                     # (P,) the factor kept equal
        f1 = sample_factors(space, p * batch_size, rng).reshape(p, batch_size, -1)
        f2 = sample_factors(space, p * batch_size, rng).reshape(p, batch_size, -1)
        f2[np.arange(p), :, k] = f1[np.arange(p), :, k]
        obs = space.observe(np.concatenate([f1, f2]).reshape(2 * p * batch_size, -1))
        r = represent(obs).reshape(2, p, batch_size, -1)                    # (2, P, B, J)
        features.append(np.abs(r[0] - r[1]).mean(1))                        # (P, J)
        labels.append(k)
    return np.concatenate(features), np.concatenate(labels)


def beta_vae_score(space: FactorSpace, represent: Representation, rng: np.random.Generator, *,
                   batch_size: int = 64, num_train: int = 10000, num_eval: int = 5000) -> dict:
    """The β-VAE metric (Higgins et al. 2017): accuracy of a linear classifier of the fixed factor."""
    from sklearn.linear_model import LogisticRegression

    _check_budget(batch_size=batch_size, num_train=num_train, num_eval=num_eval)
    x_train, y_train = _beta_vae_points(space, represent, rng, batch_size, num_train)
    classifier = LogisticRegression(random_state=int(rng.integers(2 ** 31)))
    with warnings.catch_warnings():  # lbfgs may stop at its iteration cap on badly scaled features
        warnings.simplefilter("ignore")
        classifier.fit(x_train, y_train)
    x_eval, y_eval = _beta_vae_points(space, represent, rng, batch_size, num_eval)
    return {"train_accuracy": float(classifier.score(x_train, y_train)),
            "eval_accuracy": float(classifier.score(x_eval, y_eval))}


# ----------------------------------------------------------------------------- FactorVAE metric
def _factor_vae_votes(space, represent, rng, batch_size, num_points, scale, active) -> np.ndarray:
    votes = np.zeros((len(space.factor_sizes), len(scale)), dtype=np.int64)
    active_dims = np.flatnonzero(active)
    for p in _chunks(num_points):
        k = rng.integers(0, len(space.factor_sizes), p)
        f = sample_factors(space, p * batch_size, rng).reshape(p, batch_size, -1)
        f[np.arange(p), :, k] = f[np.arange(p), :1, k]                       # every row takes the first row's value
        r = represent(space.observe(f.reshape(p * batch_size, -1))).reshape(p, batch_size, -1)
        local = r.var(1, ddof=1)                                             # (P, J)
        ratio = local[:, active_dims] / scale[active_dims] ** 2
        np.add.at(votes, (k, active_dims[ratio.argmin(1)]), 1)
    return votes


def factor_vae_score(space: FactorSpace, represent: Representation, rng: np.random.Generator, *,
                     batch_size: int = 64, num_train: int = 10000, num_eval: int = 5000,
                     num_variance_estimate: int = 10000, prune_threshold: float = 0.05) -> dict:
    """The FactorVAE metric (Kim & Mnih 2018): majority-vote accuracy of the least-varying dimension → factor."""
    _check_budget(batch_size=batch_size, num_train=num_train, num_eval=num_eval,
                  num_variance_estimate=num_variance_estimate)
    codes = represent(space.observe(sample_factors(space, num_variance_estimate, rng)))
    scale = codes.std(0, ddof=1)                                             # s_j (J,)
    active = scale >= prune_threshold
    if not active.any():
        return {"train_accuracy": 0.0, "eval_accuracy": 0.0, "num_active_dims": 0}
    train_votes = _factor_vae_votes(space, represent, rng, batch_size, num_train, scale, active)
    classifier = train_votes.argmax(0)                                       # dimension → factor
    columns = np.arange(train_votes.shape[1])
    eval_votes = _factor_vae_votes(space, represent, rng, batch_size, num_eval, scale, active)
    return {"train_accuracy": float(train_votes[classifier, columns].sum() / train_votes.sum()),
            "eval_accuracy": float(eval_votes[classifier, columns].sum() / eval_votes.sum()),
            "num_active_dims": int(active.sum())}


# ----------------------------------------------------------------------------- MIG
def discretize(codes: np.ndarray, num_bins: int = 20) -> np.ndarray:
    """Each column of ``codes`` (n, J) into ``num_bins`` equal-width bins over its range: bin indices 1..num_bins."""
    out = np.zeros(codes.shape, dtype=np.int64)
    for j in range(codes.shape[1]):
        edges = np.histogram(codes[:, j], num_bins)[1][:-1]  # left edges; the maximum falls in the last bin
        out[:, j] = np.digitize(codes[:, j], edges)
    return out


def mutual_information_gap(codes: np.ndarray, factors: np.ndarray, num_bins: int = 20) -> dict:
    """MIG of ``codes`` (n, J) against ``factors`` (n, K) (Chen et al. 2018), with the (J, K) mutual information."""
    from sklearn.metrics import mutual_info_score

    if codes.shape[1] < 2:
        raise AekitError("MIG compares the two most informative code dimensions; it needs a code of 2 or more")
    binned = discretize(codes, num_bins)
    info = np.array([[mutual_info_score(factors[:, k], binned[:, j]) for k in range(factors.shape[1])]
                     for j in range(codes.shape[1])])                       # (J, K), nats
    entropy = np.array([mutual_info_score(factors[:, k], factors[:, k]) for k in range(factors.shape[1])])
    top = np.sort(info, axis=0)[::-1]
    gaps = (top[0] - top[1]) / entropy
    return {"mig": float(gaps.mean()), "mig_per_factor": gaps.tolist(), "mutual_information": info.tolist()}


def mig_score(space: FactorSpace, represent: Representation, rng: np.random.Generator, *,
              num_train: int = 10000, num_bins: int = 20) -> dict:
    """MIG on ``num_train`` random observations of the space."""
    _check_budget(num_train=num_train, num_bins=num_bins)
    factors = sample_factors(space, num_train, rng)
    return mutual_information_gap(represent(space.observe(factors)), factors, num_bins)


def _check_budget(**values) -> None:
    for name, value in values.items():
        if value < (2 if name in ("batch_size", "num_bins", "num_variance_estimate") else 1):
            raise AekitError(f"{name} must be >= {2 if name in ('batch_size', 'num_bins', 'num_variance_estimate') else 1}, got {value}")


# ----------------------------------------------------------------------------- all three, for a model
def evaluate_disentanglement(model_or_representation, space: FactorSpace, *, seed: int = 0, scale: float = 1.0,
                             progress: bool = False) -> dict:
    """The three metrics of a model (or a representation function) on ``space``, disentanglement_lib's settings
    times ``scale`` (the number of points; 1 = the full settings, 0.1 = a tenth)."""
    represent = (model_or_representation if not isinstance(model_or_representation, torch.nn.Module)
                 else representation(model_or_representation))
    if not scale > 0:
        raise AekitError(f"the budget scale must be > 0, got {scale}")

    def scaled(settings):
        return {k: (max(2, round(v * scale)) if k.startswith("num_") and k != "num_bins" else v)
                for k, v in settings.items()}
    settings = {"beta_vae": scaled(BETA_VAE), "factor_vae": scaled(FACTOR_VAE), "mig": scaled(MIG)}
    observations = (2 * settings["beta_vae"]["batch_size"] * (settings["beta_vae"]["num_train"] + settings["beta_vae"]["num_eval"])
                    + settings["factor_vae"]["batch_size"] * (settings["factor_vae"]["num_train"] + settings["factor_vae"]["num_eval"]))
    if hasattr(space, "build_cache") and observations > getattr(space, "direct_render_limit", 50000):
        space.build_cache(progress=progress)  # rendering once beats rendering millions of images one by one
    rng = np.random.default_rng(seed)
    out = {"beta_vae": beta_vae_score(space, represent, rng, **settings["beta_vae"]),
           "factor_vae": factor_vae_score(space, represent, rng, **settings["factor_vae"]),
           "mig": mig_score(space, represent, rng, **settings["mig"]),
           "settings": settings, "seed": seed}
    out["summary"] = {"beta_vae_metric": out["beta_vae"]["eval_accuracy"],
                      "factor_vae_metric": out["factor_vae"]["eval_accuracy"], "mig": out["mig"]["mig"]}
    return out


class SubSpace:
    """A factor space restricted to some values of each factor (``allowed[k]``: indices of factor k); factors
    with a single allowed value are held fixed and left out, as disentanglement_lib leaves out dSprites' colour."""

    def __init__(self, space, allowed: list[np.ndarray]):
        self.space, self.allowed = space, [np.asarray(a) for a in allowed]
        self.varying = [k for k, a in enumerate(self.allowed) if len(a) > 1]
        self.factor_sizes = tuple(len(self.allowed[k]) for k in self.varying)
        names = getattr(space, "factor_names", tuple(f"factor{k}" for k in range(len(allowed))))
        self.factor_names = tuple(names[k] for k in self.varying)

    def build_cache(self, progress=False):
        if hasattr(self.space, "build_cache"):
            self.space.build_cache(progress=progress)

    def full_factors(self, factors: np.ndarray) -> np.ndarray:
        full = np.stack([np.full(len(factors), a[0]) for a in self.allowed], 1)
        for column, k in enumerate(self.varying):
            full[:, k] = self.allowed[k][factors[:, column]]
        return full

    def sample_factors(self, n, rng):
        return sample_factors(self, n, rng)

    def observe(self, factors: np.ndarray) -> np.ndarray:
        return self.space.observe(self.full_factors(factors))


def dsprites_space(data_name: str, data_dir=None) -> SubSpace:
    """The factor space of a run trained on ``dsprites[:SPEC]``: the whole grid, or the SPEC's restriction."""
    from .data.dsprites import DSprites, parse_spec

    prefix, _, spec = data_name.partition(":")
    if prefix != "dsprites":
        raise AekitError(f"the disentanglement metrics need data with known factors of variation (--data dsprites); "
                         f"this run was trained on {data_name}")
    generator = DSprites(root=data_dir)
    _, allowed = parse_spec(spec, generator)
    return SubSpace(generator, allowed)

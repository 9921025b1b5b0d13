"""Incomplete data with a known answer, for imputation experiments (benchmarks/imputation.py, aekit reproduce).

* :func:`breast_cancer_problem` — the MIWAE demo's set-up (Mattei & Frellsen, ``pamattei/miwae``,
  ``MIWAE_demo_breast.ipynb``): scikit-learn's breast-cancer data (569 × 30), standardized with the
  population standard deviation, 50% of the entries removed completely at random with
  ``np.random.seed(1234)`` and ``np.random.choice(n·p, ⌊n·p/2⌋, replace=False)`` exactly as the
  notebook does.
* :func:`linear_gaussian_problem` — rows of a known linear-Gaussian model x = Wz + μ + σε (PPCA) with
  entries missing completely at random; :func:`gaussian_conditional` its exact conditional mean
  E[x_m | x_o] = μ_m + C_mo C_oo⁻¹ (x_o − μ_o), C = WWᵀ + σ²I, computed densely row by row.
* :func:`imputation_mse` — the mean squared error over the missing entries.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


def imputation_mse(filled, truth, missing) -> float:
    """Mean of (filled − truth)² over the entries where ``missing`` is True."""
    return float(np.mean((np.asarray(filled, dtype=np.float64) - np.asarray(truth, dtype=np.float64))[missing] ** 2))


def breast_cancer_problem() -> tuple[np.ndarray, np.ndarray]:
    """(complete standardized data, the same with 50% NaN) as in the MIWAE demo notebook.

    The notebook's global ``np.random.seed(1234)`` call is reproduced with a legacy ``RandomState``
    of that seed, so the same entries are removed without touching numpy's global state.
    """
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer(return_X_y=True)[0]
    xfull = (data - data.mean(0)) / data.std(0)
    n, p = xfull.shape
    rng = np.random.RandomState(1234)
    xmiss = xfull.copy().flatten()
    xmiss[rng.choice(n * p, int(np.floor(n * p * 0.5)), replace=False)] = np.nan
    return xfull, xmiss.reshape(n, p)


class LinearGaussianProblem(NamedTuple):
    x: np.ndarray          # (N, D) complete rows
    observed: np.ndarray   # (N, D) float32, NaN where missing
    missing: np.ndarray    # (N, D) bool
    W: np.ndarray          # (D, Q) the true loadings
    mean: np.ndarray       # (D,)
    noise_variance: float  # σ²


def linear_gaussian_problem(seed: int = 0, n: int = 2000, d: int = 8, q: int = 2, noise_variance: float = 0.1,
                            missing: float = 0.3) -> LinearGaussianProblem:
    """N rows of x = Wz + μ + σε, W and μ standard normal, each entry missing with probability ``missing``
    (every row keeps at least one observed entry)."""
    rng = np.random.default_rng(seed)
    W, mu = rng.standard_normal((d, q)), rng.standard_normal(d)
    x = rng.standard_normal((n, q)) @ W.T + mu + np.sqrt(noise_variance) * rng.standard_normal((n, d))
    miss = rng.random((n, d)) < missing
    miss[miss.all(1), 0] = False
    observed = x.copy()
    observed[miss] = np.nan
    return LinearGaussianProblem(x, observed.astype(np.float32), miss, W, mu, noise_variance)


def gaussian_conditional(W: np.ndarray, mean: np.ndarray, noise_variance: float, x_obs: np.ndarray) -> np.ndarray:
    """x_obs with each NaN replaced by E[x_m | x_o] under N(μ, WWᵀ + σ²I), row by row (dense solves)."""
    C = W @ W.T + noise_variance * np.eye(len(mean))
    out = x_obs.astype(np.float64).copy()
    for i, row in enumerate(x_obs):
        m = np.isnan(row)
        if m.any():
            o = ~m
            out[i, m] = mean[m] + C[np.ix_(m, o)] @ np.linalg.solve(C[np.ix_(o, o)], row[o] - mean[o])
    return out


__all__ = ["imputation_mse", "breast_cancer_problem", "LinearGaussianProblem", "linear_gaussian_problem",
           "gaussian_conditional"]

"""Evaluation of a trained model on one split (all figures in nats per example unless named otherwise).

* ``neg_elbo``, ``reconstruction``, ``kl``: the true ELBO's parts (β = 1, no free bits).
* ``kl_per_dim`` and ``active_units``: a unit j is active when Cov_x(E_q[z_j]) > 0.01
  (Burda et al. 2016, §5.2).
* ``log_px``: importance-sampled log p(x) with k samples (``iw_samples``; 5000 for reported figures),
  and ``bits_per_dim`` = −log p(x) / (D ln 2).
* ``squared_error``: Σ_d (x_d − x̂_d)² per image, x̂ the reconstruction from the posterior mean.
"""

from __future__ import annotations

import math

import torch
from tqdm.auto import tqdm

from .objectives import kl_per_dimension
from .trainer import VALIDATION_SEED, evaluate_terms

ACTIVE_UNIT_THRESHOLD = 0.01


@torch.no_grad()
def evaluate_model(model, data, *, iw_samples: int = 1000, batch_size: int = 500, progress: bool = True) -> dict:
    model.eval()
    results: dict = {"split_size": len(data)}
    results.update(evaluate_terms(model, data))
    n = len(data)
    sq_err = torch.zeros((), dtype=torch.float64, device=data.x.device)
    means, kl_dims = [], []
    for start in range(0, n, batch_size):
        x = data.x[start:start + batch_size]
        y = None if data.y is None else data.y[start:start + batch_size]
        sq_err += ((x - model.reconstruct(x, y)) ** 2).sum(-1).double().sum()
        if model.has_likelihood:
            qz = model.encode(x, y)
            means.append(qz.mean.double())
            kl_dims.append(kl_per_dimension(qz, model.prior()).double().sum(0))
    results["squared_error"] = float(sq_err) / n
    if model.has_likelihood:
        mu = torch.cat(means)  # (N, J)
        results["kl_per_dim"] = [float(v) / n for v in torch.stack(kl_dims).sum(0)]
        variance = mu.var(0, unbiased=True)
        results["active_units"] = int((variance > ACTIVE_UNIT_THRESHOLD).sum())
        results["latent_dim"] = int(mu.shape[1])
        if iw_samples > 0:
            results["iw_samples"] = iw_samples
            total = torch.zeros((), dtype=torch.float64, device=data.x.device)
            # Smaller batches when k is large keep the time to the first progress update short.
            ll_batch = max(1, min(batch_size, 100))
            with torch.random.fork_rng(devices=[data.x.device] if data.x.device.type == "cuda" else []):
                torch.manual_seed(VALIDATION_SEED)
                bar = tqdm(range(0, n, ll_batch), desc=f"log p(x), k={iw_samples}", disable=not progress, leave=False)
                for start in bar:
                    x = data.x[start:start + ll_batch]
                    y = None if data.y is None else data.y[start:start + ll_batch]
                    total += model.log_likelihood(x, y, num_samples=iw_samples).double().sum()
            results["log_px"] = float(total) / n
            results["bits_per_dim"] = -results["log_px"] / (data.x.shape[1] * math.log(2))
    return results


def format_table(results: dict, title: str) -> str:
    """A two-column text table of the scalar figures (lists summarized)."""
    rows = []
    for k, v in results.items():
        if isinstance(v, list):
            v = "[" + ", ".join(f"{u:.2f}" for u in v[:16]) + (", ..." if len(v) > 16 else "") + "]"
        elif isinstance(v, float):
            v = f"{v:.4f}"
        rows.append((k, str(v)))
    width = max(len(k) for k, _ in rows)
    return "\n".join([title] + [f"  {k:<{width}}  {v}" for k, v in rows])

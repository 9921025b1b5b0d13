"""Evaluation of a trained model on one split (all figures in nats per example unless named otherwise).

* ``neg_elbo``, ``reconstruction``, ``kl``: the true ELBO's parts (β = 1, no free bits).
* ``kl_per_dim`` and ``active_units``: a unit j is active when Cov_x(E_q[z_j]) > 0.01
  (Burda et al. 2016, §5.2).
* ``log_px``: importance-sampled log p(x) with k samples (``iw_samples``; 5000 for reported figures),
  and ``bits_per_dim`` = −log p(x) / (D ln 2).
* ``squared_error``: Σ_d (x_d − x̂_d)² per image, x̂ the reconstruction from the posterior mean.
* ``corrupted_squared_error`` (models that corrupt their input, e.g. dae): Σ_d (x_d − x̂(x̃)_d)² per
  image, x̃ the model's corruption of x drawn with a fixed seed.
* Linear models (those with a ``decoder_basis``), against the training split: ``max_principal_angle``
  (radians) between the decoder's column space and the top-d eigenvectors of the data covariance,
  and ``train_squared_error`` beside ``pca_residual`` = Σ_{j>d} λ_j, the least squared error per
  example any rank-d linear reconstruction can reach (Baldi & Hornik 1989; 1/N covariance).
"""

from __future__ import annotations

import math

import torch
from tqdm.auto import tqdm

from .capabilities import LOG_LIKELIHOOD, has
from .objectives import kl_per_dimension
from .trainer import VALIDATION_SEED, evaluate_terms

ACTIVE_UNIT_THRESHOLD = 0.01


@torch.no_grad()
def evaluate_model(model, data, *, iw_samples: int = 1000, batch_size: int = 500, progress: bool = True,
                   reference=None) -> dict:
    """The figures above on ``data``; ``reference`` (the training split) enables the linear-model ones."""
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
        if has(model, LOG_LIKELIHOOD):
            qz = model.encode(x, y)
            means.append(qz.mean.double())
            if isinstance(qz, torch.distributions.Independent) and hasattr(model, "prior"):
                kl_dims.append(kl_per_dimension(qz, model.prior()).double().sum(0))
    results["squared_error"] = float(sq_err) / n
    if getattr(model, "corruption", None) is not None:  # denoising models: the error from corrupted inputs
        from .regularizers import corrupted_squared_error

        results["corruption"] = str(model.corruption)
        results["corrupted_squared_error"] = corrupted_squared_error(model, data, model.corruption,
                                                                     seed=VALIDATION_SEED, batch_size=batch_size)
    if reference is not None and hasattr(model, "decoder_basis"):
        results.update(subspace_figures(model, reference.x, batch_size))
    if kl_dims:  # factorized q(z|x): per-dimension KL
        results["kl_per_dim"] = [float(v) / n for v in torch.stack(kl_dims).sum(0)]
    if means:
        mu = torch.cat(means)  # (N, J)
        results["active_units"] = int((mu.var(0, unbiased=True) > ACTIVE_UNIT_THRESHOLD).sum())
        results["latent_dim"] = int(mu.shape[1])
    if has(model, LOG_LIKELIHOOD):
        if iw_samples > 0 and hasattr(model, "prepare_likelihood"):
            # e.g. an RBM's log Z by annealed importance sampling, from the training data's base rates
            estimate = model.prepare_likelihood((reference if reference is not None else data).x)
            results["log_partition"] = {"estimate": estimate.log_z, "lower": estimate.lower, "upper": estimate.upper}
        if iw_samples > 0:
            exact = getattr(model, "exact_likelihood", False)
            results["log_px_method"] = getattr(model, "likelihood_method", None) or (
                "exact" if exact else f"importance sampling, k={iw_samples}")
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


@torch.no_grad()
def subspace_figures(model, x_train: torch.Tensor, batch_size: int = 1000) -> dict:
    from .linalg import max_principal_angle, pca_subspace

    basis = model.decoder_basis()  # (D, d)
    d = basis.shape[1]
    top, eigenvalues = pca_subspace(x_train, d)
    sq = sum(float(((x_train[s:s + batch_size] - model.reconstruct(x_train[s:s + batch_size])) ** 2).sum())
             for s in range(0, len(x_train), batch_size))
    return {"max_principal_angle": float(max_principal_angle(basis.double().cpu(), top.cpu())),
            "train_squared_error": sq / len(x_train), "pca_residual": float(eigenvalues[d:].sum())}


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

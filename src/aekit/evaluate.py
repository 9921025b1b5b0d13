"""Evaluation of a trained model on one split (all figures in nats per example unless named otherwise).

What a model reports depends on what it can do (:mod:`aekit.capabilities`) and on what its numbers
mean for the data at hand — a figure is reported only under a name that says what it is:

* ``neg_elbo``, ``reconstruction``, ``kl``: the true ELBO's parts (β = 1, no free bits); for
  autoencoders ``reconstruction`` = −log p(x | f(x)).
* ``kl_per_dim`` and ``active_units``: a unit j is active when Cov_x(E_q[z_j]) > 0.01
  (Burda et al. 2016, §5.2).
* Likelihoods, by the kind of likelihood and data:

  - a **discrete** likelihood (Bernoulli pixels) on binary data: ``log_px`` = log p(x), a
    log-probability (importance-sampled with k samples, exact where the model has it), and
    ``bits_per_dim`` = −log p(x) / (D ln 2);
  - a **density** (Gaussian, continuous Bernoulli, PPCA) on data quantized to L levels (8-bit pixels:
    L = 256): ``log_density`` = log p(x) at the data points (a density, not a probability: it can be
    positive and says nothing in bits), and ``log_px_dequantized`` = E_u[log p(x̃)] − D log L with
    x̃ = (k + u)/L, u ~ U[0, 1)^D, k the level of x — by Jensen a lower bound on the log-probability
    of the discretized data (Theis et al. 2016) — and ``bits_per_dim`` = −log_px_dequantized / (D ln 2)
    = −E_u[log p(x̃)] / (D ln 2) + log₂ L, the figure published bits/dim are;
  - a density on continuous data: ``log_density`` only (no bits/dim exist for it);
  - a Bernoulli likelihood on grey-level data: nothing. On [0, 1] the Bernoulli "density" integrates
    to between 1/8 and 1/2, so its value is neither a probability nor a density; ``note`` says how
    to get a real likelihood (``--binarize dynamic``, or ``--likelihood continuous-bernoulli``).

* ``squared_error``: Σ_d (x_d − x̂_d)² per example, x̂ the reconstruction from the posterior mean.
* ``corrupted_squared_error`` (models that corrupt their input, e.g. dae): Σ_d (x_d − x̂(x̃)_d)² per
  example, x̃ the model's corruption of x drawn with a fixed seed.
* VQ-VAEs (discrete codes): ``codes_used``, ``dead_codes`` and ``usage_perplexity`` over the whole split
  (independent of the batch size) beside ``batch_perplexity`` at a stated batch size; a prior over code
  maps: the bound −log p(x) ≤ −log p(x | z_q) − log p_prior(z_q) (``bound_nats``, ``bound_bits_per_dim``)
  beside the same bound under uniformly random codes (see :mod:`aekit.models.vqvae`).
* Linear models (a linear decoder subspace), against the training split: ``max_principal_angle``
  (radians) between the decoder's column space and the top-d eigenvectors of the data covariance,
  ``train_squared_error`` beside ``pca_residual`` = Σ_{j>d} λ_j, the least squared error per example
  any rank-d linear reconstruction can reach (Baldi & Hornik 1989; 1/N covariance), with their gap,
  and the eigengap λ_d − λ_{d+1} that makes the angle well or ill determined (its sampling scale
  ``angle_sampling_error``): see :func:`aekit.linalg.subspace_convergence`.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time

import torch
from tqdm.auto import tqdm

from .capabilities import CODE_PRIOR, CODES, CORRUPTS_INPUT, LOG_LIKELIHOOD, MISSING_DATA, POSTERIOR, SUBSPACE, has
from .data import value_levels
from .errors import AekitError
from .likelihoods import BernoulliLikelihood, compiled_likelihood, cxx_compiler_found, likelihood_is_compiled
from .objectives import kl_per_dimension
from .trainer import VALIDATION_SEED, evaluate_terms

ACTIVE_UNIT_THRESHOLD = 0.01
DEQUANTIZATION_SEED = 4242
GREY_BERNOULLI_NOTE = ("no likelihood: Bernoulli pixels on grey-level data are not a probability model of them; "
                       "train with --binarize dynamic for log p(x) of binarized data, or --likelihood "
                       "continuous-bernoulli for a density of the grey values")


def discrete_likelihood(model) -> bool:
    """Whether the model's p(x) is a distribution over discrete (binary) x, i.e. log p(x) ≤ 0."""
    declared = getattr(model, "discrete_likelihood", None)
    if declared is not None:
        return bool(declared)
    likelihood = getattr(getattr(model, "decoder", None), "likelihood", None)
    return bool(getattr(likelihood, "discrete", False))


def likelihood_kind(model, data_x: torch.Tensor) -> tuple[str, int | None]:
    """("probability" | "dequantized" | "density" | "invalid", levels L) for this model on this data."""
    levels = value_levels(data_x)
    if discrete_likelihood(model):
        return ("probability" if levels == 2 else "invalid"), levels
    return ("dequantized" if levels is not None else "density"), levels


def dequantize(x: torch.Tensor, levels: int, generator: torch.Generator) -> torch.Tensor:
    """x̃ = (k + u) / L with k = round(x (L − 1)) the level of x and u ~ U[0, 1): uniform over x's bin."""
    k = torch.round(x * (levels - 1))
    u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return (k + u) / levels


def _check_settings(iw_samples: int, batch_size: int) -> None:
    if not isinstance(batch_size, int) or batch_size < 1:
        raise AekitError(f"--batch-size must be >= 1, got {batch_size}")
    if not isinstance(iw_samples, int) or iw_samples < 0:
        raise AekitError(f"--iw-samples must be >= 0 (0 skips the likelihood), got {iw_samples}")


def _compile_refusal(model, data, iw_samples: int) -> str | None:
    """Why --compile would change nothing here, or None: it compiles the Bernoulli log-probability of
    importance sampling, so it needs k > 0, a model with log p(x) by sampling, a Bernoulli decoder, binary data."""
    likelihood = getattr(getattr(model, "decoder", None), "likelihood", None)
    config = getattr(model, "config", None)  # a loaded run has its config; a model built in code may not
    kind = config.model.kind if config is not None else type(model).__name__
    name = config.model.likelihood if config is not None else type(likelihood).__name__
    why = None
    if iw_samples == 0:
        why = "--iw-samples is 0, so no log p(x) is computed"
    elif not has(model, LOG_LIKELIHOOD) or not hasattr(model, "log_weights"):
        why = f"a {kind} run has no importance-sampled log p(x)"
    elif has(model, MISSING_DATA):  # scores the observed entries term by term, past the Bernoulli's log_prob
        why = f"a {kind} run scores only the observed entries, one term per entry, which the compiled kernel does not"
    elif likelihood is None:
        why = f"a {kind} run has no decoder likelihood head (its p(x|h) is its own)"
    elif not isinstance(likelihood, BernoulliLikelihood):
        why = f"this run's decoder likelihood is {name}, not bernoulli"
    elif likelihood_kind(model, data.x)[0] != "probability":
        why = "the data are not binary, so there is no Bernoulli log p(x) to compute"
    return why


def _check_compile_applies(model, data, iw_samples: int) -> None:
    why = _compile_refusal(model, data, iw_samples)
    if why:
        raise AekitError(f"--compile speeds up the importance-sampled log p(x) of a Bernoulli decoder; {why}: drop --compile")


# A log p(x) estimated (from its first batch) to take longer than this compiles its likelihood kernel
# for the remaining batches, where that applies and a C++ compiler is found: the fifth of the time it
# saves (BENCHMARKS.md §1) then outweighs the up to half a minute it takes to compile.
AUTO_COMPILE_SECONDS = 180.0


@torch.no_grad()
def evaluate_model(model, data, *, iw_samples: int = 1000, batch_size: int = 500, progress: bool | None = None,
                   reference=None, split: str = "test", compile: bool | None = None) -> dict:
    """The figures above on ``data``; ``reference`` (the training split) enables the linear-model ones.

    ``split`` names ``data`` for a prior over code maps, which is evaluated on its vq-vae's images of it.
    ``compile``: a Bernoulli decoder's importance-sampled log p(x) with its likelihood compiled
    (``compiled_likelihood``) from the start (True; refused where it does not apply), never (False),
    or (None) once the first batch estimates more than :data:`AUTO_COMPILE_SECONDS`, where it applies
    and a C++ compiler is found."""
    _check_settings(iw_samples, batch_size)
    if compile:
        _check_compile_applies(model, data, iw_samples)
    if progress is None:  # bars on a terminal only
        progress = sys.stderr.isatty()
    model.eval()
    n = len(data)
    results: dict = {"split_size": n}
    results.update(evaluate_terms(model, data))
    if has(model, CODE_PRIOR):  # a prior over code maps: its bound on its vq-vae's images, no reconstruction
        from .models.vqvae import evaluate_prior

        results.update(evaluate_prior(model, split, batch_size=batch_size, device=data.x.device))
        return results
    sq_err = torch.zeros((), dtype=torch.float64, device=data.x.device)
    means, kl_dims = [], []
    for start in range(0, n, batch_size):
        x = data.x[start:start + batch_size]
        y = None if data.y is None else data.y[start:start + batch_size]
        sq_err += ((x - model.reconstruct(x, y)) ** 2).sum(-1).double().sum()
        if has(model, POSTERIOR):
            qz = model.encode(x, y)
            means.append(qz.mean.double())
            if isinstance(qz, torch.distributions.Independent) and hasattr(model, "prior"):
                kl_dims.append(kl_per_dimension(qz, model.prior()).double().sum(0))
    results["squared_error"] = float(sq_err) / n
    if has(model, CORRUPTS_INPUT):  # denoising models: the error from corrupted inputs
        from .regularizers import corrupted_squared_error

        results["corruption"] = str(model.corruption)
        results["corrupted_squared_error"] = corrupted_squared_error(model, data, model.corruption,
                                                                     seed=VALIDATION_SEED, batch_size=batch_size)
    if reference is not None and has(model, SUBSPACE):
        results.update(subspace_figures(model, reference.x, batch_size))
    if kl_dims:  # factorized q(z|x): per-dimension KL
        results["kl_per_dim"] = [float(v) / n for v in torch.stack(kl_dims).sum(0)]
    if means:
        mu = torch.cat(means)  # (N, J)
        results["active_units"] = int((mu.var(0, unbiased=True) > ACTIVE_UNIT_THRESHOLD).sum())
        results["latent_dim"] = int(mu.shape[1])
    if has(model, LOG_LIKELIHOOD):
        if compile is None:
            compile = "auto" if _compile_refusal(model, data, iw_samples) is None and cxx_compiler_found() else False
        results.update(likelihood_figures(model, data, iw_samples=iw_samples, progress=progress,
                                          reference=reference, compile=compile))
        results.update(exact_likelihood_figures(model, data, batch_size))
    if has(model, CODES):  # codebook health over the whole split (batch-size independent) and per batch
        from .models.vqvae import codebook_usage

        results.update(codebook_usage(model, data, batch_size=256))
    if has(model, CORRUPTS_INPUT) and data.image_shape is not None and len(data.image_shape) == 3:
        from .restoration import evaluate_restoration

        r = evaluate_restoration(model, data.x, model.corruption, image_shape=data.image_shape, seed=VALIDATION_SEED,
                                 reference=reference.x if reference is not None else None).summary()
        results["restoration_psnr"] = r["psnr"]  # dB: restored, the trivial baseline, the degraded input
        if r.get("ssim") is not None:
            results["restoration_ssim"] = r["ssim"]
    return results


@torch.no_grad()
def exact_likelihood_figures(model, data, batch_size: int) -> dict:
    """``exact_log_px``: log p(x) by enumerating a small discrete latent (≤ 2^20 states), where the model can;
    on shifter data also its exact KL(p_data ‖ p_model) and what its top layer knows of the shift."""
    exact = getattr(model, "exact_log_likelihood", None)
    if exact is None or likelihood_kind(model, data.x)[0] != "probability":
        return {}
    out = {}
    try:
        total = sum(float(exact(data.x[s:s + batch_size], None if data.y is None else data.y[s:s + batch_size])
                          .double().sum()) for s in range(0, len(data), batch_size))
        out["exact_log_px"] = total / len(data)
    except AekitError:
        return {}  # a Gaussian latent, or more than 2^20 states: importance sampling only
    if data.name == "shifter":
        from .data.shifter import shifter_report

        out["shifter"] = {k: v for k, v in shifter_report(model).items() if not k.startswith("unit_")}
    return out


@torch.no_grad()
def likelihood_figures(model, data, *, iw_samples: int = 1000, progress: bool = True, reference=None,
                       compile: bool | str = False) -> dict:
    """The likelihood figures that mean what their names say for this model and data (module docstring).

    ``compile``: True, False or "auto", as for :func:`mean_log_likelihood`."""
    kind, levels = likelihood_kind(model, data.x)
    if kind == "invalid":
        return {"note": GREY_BERNOULLI_NOTE}
    if iw_samples == 0:
        return {}
    out: dict = {}
    if hasattr(model, "prepare_likelihood"):
        # e.g. an RBM's log Z by annealed importance sampling, from the training data's base rates
        estimate = model.prepare_likelihood((reference if reference is not None else data).x)
        out["log_partition"] = {"estimate": estimate.log_z, "lower": estimate.lower, "upper": estimate.upper}
    method = getattr(model, "likelihood_method", None) or f"importance sampling, k={iw_samples}"
    d = data.x.shape[1]
    log_p = mean_log_likelihood(model, data, iw_samples, progress, compile)
    if kind == "probability":
        out.update(log_px=log_p, log_px_method=method, bits_per_dim=-log_p / (d * math.log(2)))
        return out
    out.update(log_density=log_p, log_density_method=method)
    if kind == "dequantized":
        generator = torch.Generator(device=data.x.device).manual_seed(DEQUANTIZATION_SEED)
        from dataclasses import replace

        noisy = replace(data, x=dequantize(data.x, levels, generator))
        log_p_tilde = mean_log_likelihood(model, noisy, iw_samples, progress, compile)
        out["log_px_dequantized"] = log_p_tilde - d * math.log(levels)
        out["bits_per_dim"] = -out["log_px_dequantized"] / (d * math.log(2))
        out["bits_per_dim_method"] = f"uniform dequantization of {levels} levels: -E[log p(x~)]/(D ln 2) + log2 {levels}"
    return out


def mean_log_likelihood(model, data, iw_samples: int, progress: bool, compile: bool | str = False) -> float:
    """Mean of ``model.log_likelihood`` over ``data`` (nats per example), with fixed noise and a time estimate.

    ``compile``: True runs it inside :func:`compiled_likelihood`; "auto" enters it after the first batch
    when the estimate exceeds :data:`AUTO_COMPILE_SECONDS`; False never."""
    n = len(data)
    total = torch.zeros((), dtype=torch.float64, device=data.x.device)
    # Smaller batches when k is large keep the time to the first progress update short.
    ll_batch = max(1, min(500, max(1, 200_000 // max(1, iw_samples))))
    with torch.random.fork_rng(devices=[data.x.device] if data.x.device.type == "cuda" else []), \
            contextlib.ExitStack() as compiled:
        if compile is True:
            compiled.enter_context(compiled_likelihood())
        torch.manual_seed(VALIDATION_SEED)
        bar = tqdm(range(0, n, ll_batch), desc=f"log p(x), k={iw_samples}", disable=not progress, leave=False)
        # The estimate is timed on the first batch, or on the second where the first compiles a kernel.
        timed = 1 if likelihood_is_compiled() else 0
        for i, start in enumerate(bar):
            if i == timed:
                started = time.perf_counter()
            x = data.x[start:start + ll_batch]
            y = None if data.y is None else data.y[start:start + ll_batch]
            total += model.log_likelihood(x, y, num_samples=iw_samples).double().sum()
            if i == timed and n > (timed + 1) * ll_batch:
                estimate = (time.perf_counter() - started) * (n - timed * ll_batch) / len(x)
                switch = compile == "auto" and estimate > AUTO_COMPILE_SECONDS
                if estimate > 20:
                    print(f"log p(x) with k={iw_samples} on {n} examples: about {_duration(estimate)} "
                          f"(from the {'second' if timed else 'first'} batch)"
                          + ("; compiling its likelihood kernel for the rest, about a fifth shorter "
                             "(--no-compile: without)" if switch else ""), file=sys.stderr)
                if switch:
                    compiled.enter_context(compiled_likelihood())
    return float(total) / n


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


@torch.no_grad()
def subspace_figures(model, x_train: torch.Tensor, batch_size: int = 1000) -> dict:
    """Convergence of a linear decoder to the PCA subspace: angle, error gap, eigengap (linalg.subspace_convergence)."""
    from .linalg import subspace_convergence

    sq = sum(float(((x_train[s:s + batch_size] - model.reconstruct(x_train[s:s + batch_size])) ** 2).sum())
             for s in range(0, len(x_train), batch_size))
    return subspace_convergence(model.decoder_basis().double().cpu(), x_train.cpu(), squared_error=sq / len(x_train))


def format_table(results: dict, title: str) -> str:
    """A two-column text table of the scalar figures (lists summarized, notes on their own lines)."""
    rows, notes = [], []
    for k, v in results.items():
        if k == "note":
            notes.append(f"  note: {v}")
            continue
        if isinstance(v, list):
            v = "[" + ", ".join(f"{u:.2f}" for u in v[:16]) + (", ..." if len(v) > 16 else "") + "]"
        elif isinstance(v, float):
            v = f"{v:.4f}"
        rows.append((k, str(v)))
    width = max(len(k) for k, _ in rows)
    return "\n".join([title] + [f"  {k:<{width}}  {v}" for k, v in rows] + notes)

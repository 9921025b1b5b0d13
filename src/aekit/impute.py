"""Missing data: the masked likelihood, and imputation of missing entries by every model that can.

NaN marks a missing entry. With o the observed and m the missing coordinates of a row x:

* :class:`MaskedLikelihood` wraps a factorized decoder likelihood p(x|z) = ∏_d p(x_d|z) so that
  ``log_prob`` is log p(x_o|z) = Σ_{d∈o} log p(x_d|z): missing entries leave the likelihood. It is
  the one change MIWAE (Mattei & Frellsen 2019, :mod:`aekit.models.miwae`) makes to the IWAE bound.

Imputation methods (``METHODS``), each giving a single imputation x̂_m, observed entries unchanged:

* ``exact``: E[x_m | x_o] in closed form. PPCA: μ_m + W_m E[z | x_o], with E[z | x_o] from the
  observed coordinates only (Tipping & Bishop 1999; the E-step of :mod:`aekit.models.ppca`).
* ``importance`` (MIWAE, eq. 14-15 of Mattei & Frellsen 2019): self-normalized importance sampling
  with the encoder as proposal, z_k ~ q(z | x̃), x̃ = x with missing entries set to 0,

      E[x_m | x_o] ≈ Σ_k w_k E[x_m | z_k],   w_k ∝ p(x_o | z_k) p(z_k) / q(z_k | x̃),

  consistent as K → ∞ for any model with a posterior q, a prior and a factorized decoder (a VAE
  trained on complete data, PPCA). Chunks of samples are merged with a running log-sum-exp.
* ``gibbs``: pseudo-Gibbs sampling (Rezende et al. 2014, appendix F): x̂ ← x̃;
  repeat z ~ q(z | x̂), x̂_m ~ p(x_m | z); the imputation is the mean of E[x_m | z_t] after burn-in.
* ``metropolis``: Metropolis-within-Gibbs (Mattei & Frellsen 2018, Algorithm 1), whose chain has
  p(z, x_m | x_o) as its stationary distribution (pseudo-Gibbs only approximately): propose
  z' ~ q(z | x̂), accept with probability
  min{1, p(x̂|z') p(z') q(z_t|x̂) / [p(x̂|z_t) p(z_t) q(z'|x̂)]}, then x̂_m ~ p(x_m | z_{t+1}).
* ``iterate``: any model, autoencoders included: x̂ ← x with missing entries at the observed column
  means, then x̂_m ← reconstruct(x̂)_m, repeated. For PCA this converges to the completion closest
  to the principal subspace, argmin_{x_m} ‖(I − UUᵀ)(x̂ − μ)‖².

``gibbs`` and ``iterate`` feed completed rows to the encoder; a model trained on zero-filled rows
(miwae) was never shown such rows and runs away, so it imputes with ``importance`` or ``metropolis``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch.distributions import Distribution, Independent

from .capabilities import MISSING_DATA, POSTERIOR, SAMPLE, has, kind_of, require
from .errors import AekitError, unknown_choice

# Elements of decoder output per chunk of importance samples: bounds memory whatever K and the batch are.
_CHUNK_ELEMENTS = 1 << 24


def split_missing(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x (B, D) with NaN → (x̃, observed): x̃ with missing entries set to 0, observed (B, D) bool."""
    observed = ~torch.isnan(x)
    return torch.where(observed, x, torch.zeros((), dtype=x.dtype, device=x.device)), observed


class MaskedLikelihood(Distribution):
    """p(x_o | z) from a factorized p(x | z) = Independent(base, 1): log_prob = Σ_d observed_d · log p(x_d | z).

    ``observed`` (B, D) broadcasts against the likelihood's batch shape (e.g. (K, B) for K samples of
    z). Missing entries of the value passed to ``log_prob`` may hold anything, NaN included. ``mean``,
    ``sample`` and ``rsample`` are those of the full p(x | z).
    """

    arg_constraints: dict = {}

    def __init__(self, px: Distribution, observed: torch.Tensor):
        if not (isinstance(px, Independent) and px.reinterpreted_batch_ndims == 1):
            raise AekitError(f"missing entries need a likelihood factorized over dimensions "
                             f"(Independent over the last one), got {type(px).__name__}")
        self.px, self.observed = px, observed
        super().__init__(px.batch_shape, px.event_shape, validate_args=False)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        filled = torch.where(self.observed, value, torch.zeros((), dtype=value.dtype, device=value.device))
        per_dim = self.px.base_dist.log_prob(filled)  # (..., B, D)
        return torch.where(self.observed, per_dim, torch.zeros((), dtype=per_dim.dtype, device=per_dim.device)).sum(-1)

    @property
    def mean(self) -> torch.Tensor:
        return self.px.mean

    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        return self.px.sample(sample_shape)

    def rsample(self, sample_shape=torch.Size()) -> torch.Tensor:
        return self.px.rsample(sample_shape)


# ------------------------------------------------------------------------------------- methods
def _importance(model, x0, observed, *, samples: int, column_means: torch.Tensor, **_) -> torch.Tensor:
    """Σ_k w_k E[x | z_k] over chunks of z_k from the proposal, merged by a running log-sum-exp; (B, D).

    A model trained on zero-filled rows (MISSING_DATA: miwae) proposes from its q(z | x̃) as MIWAE
    does. Any other model's encoder never saw a row with holes, and its q(z | x̄) (x̄: missing entries
    at the column means) treats the filled values as observed: too narrow, in the wrong place, and the
    weights degenerate (measured on PPCA, D = 8, q = 2, σ² = 0.1, 30% missing, K = 2000: 19% of mean
    imputation's squared error to the exact conditional is left, with x̄ or with zeros). It proposes
    from the defensive mixture ½ q(z | x̄) + ½ p(z) (Hesterberg 1995) instead, whose weights are
    bounded by 2 p(x_o | z): still consistent, and 0.5% of that error is left on the same problem.
    """
    zero_filled = has(model, MISSING_DATA)
    qz = model.encode(x0 if zero_filled else torch.where(observed, x0, column_means.expand_as(x0)))
    prior = model.prior()
    chunk = max(1, _CHUNK_ELEMENTS // max(1, x0.numel()))
    top = torch.full(x0.shape[:1], -math.inf, dtype=torch.float64, device=x0.device)  # running max of log w
    norm = torch.zeros_like(top)                                                        # Σ exp(log w − top)
    acc = torch.zeros(x0.shape, dtype=torch.float64, device=x0.device)                  # Σ exp(log w − top) E[x|z]
    done = 0
    while done < samples:
        k = min(chunk, samples - done)
        if zero_filled:
            z = qz.sample((k,))  # (k, B, J)
            log_q = qz.log_prob(z)
        else:
            from_prior = torch.rand(k, x0.shape[0], 1, device=x0.device) < 0.5
            z = torch.where(from_prior, prior.sample((k, x0.shape[0])), qz.sample((k,)))  # (k, B, J)
            log_q = torch.logaddexp(qz.log_prob(z), prior.log_prob(z)) - math.log(2.0)
        px = model.decode(z)
        log_w = (MaskedLikelihood(px, observed).log_prob(x0) + prior.log_prob(z) - log_q).double()  # (k, B)
        new_top = torch.maximum(top, log_w.max(0).values)
        rescale = torch.exp(top - new_top)
        w = torch.exp(log_w - new_top)  # (k, B)
        norm = norm * rescale + w.sum(0)
        acc = acc * rescale[:, None] + (w[..., None] * px.mean.double()).sum(0)
        top = new_top
        done += k
    return (acc / norm[:, None]).to(x0.dtype)


def _complete_likelihood(model, x_hat, z):
    """log p(x̂ | z) with every entry of x̂ filled in."""
    return model.decode(z).log_prob(x_hat)


def _gibbs(model, x0, observed, *, iterations: int, burn_in: int, metropolis: bool = False, **_) -> torch.Tensor:
    x_hat = x0.clone()
    qz = model.encode(x_hat)
    z = qz.sample()  # (B, J)
    prior = model.prior()
    total = torch.zeros_like(x0, dtype=torch.float64)
    kept = 0
    for t in range(iterations):
        qz = model.encode(x_hat)
        proposal = qz.sample()  # (B, J)
        if metropolis:
            log_target = _complete_likelihood(model, x_hat, z) + prior.log_prob(z)  # x̂ changed since last step
            log_target_new = _complete_likelihood(model, x_hat, proposal) + prior.log_prob(proposal)
            log_ratio = log_target_new - log_target + qz.log_prob(z) - qz.log_prob(proposal)  # (B,)
            accept = torch.rand_like(log_ratio).log() < log_ratio
            z = torch.where(accept[:, None], proposal, z)
        else:
            z = proposal
        px = model.decode(z)
        x_hat = torch.where(observed, x0, px.sample())  # x̂_m ~ p(x_m | z)
        if t >= burn_in:
            total += px.mean.double()
            kept += 1
    return (total / max(kept, 1)).to(x0.dtype)


def _metropolis(model, x0, observed, **settings) -> torch.Tensor:
    return _gibbs(model, x0, observed, metropolis=True, **settings)


def _iterate(model, x0, observed, *, iterations: int, column_means: torch.Tensor, **_) -> torch.Tensor:
    x_hat = torch.where(observed, x0, column_means.expand_as(x0))
    for _ in range(iterations):
        x_hat = torch.where(observed, x0, model.reconstruct(x_hat))
    return x_hat


def ppca_conditional_mean(model, x0, observed, **_) -> torch.Tensor:
    """E[x_m | x_o] = μ_m + W_m E[z | x_o] for a PPCA run model (buffers mean, W, noise_variance)."""
    from .models.ppca import e_step_missing

    dtype = torch.float64
    Ez = e_step_missing(x0.to(dtype), observed.to(dtype), model.mean.to(dtype), model.W.to(dtype),
                        float(model.noise_variance))[0]  # (B, q)
    return (Ez @ model.W.to(dtype).T + model.mean.to(dtype)).to(x0.dtype)


def _exact_for(model) -> Callable | None:
    from .models.linear import PPCAModel

    # Models with a closed-form conditional, by class (a model that declares its own would move here).
    exact = {PPCAModel: ppca_conditional_mean}
    return next((f for cls, f in exact.items() if isinstance(model, cls)), None)


@dataclass(frozen=True)
class ImputeMethod:
    help: str
    needs: tuple[str, ...]   # capabilities the model must declare
    run: Callable
    # Feeds completed rows x̂ to the model as they are, with no importance weight or acceptance step to
    # correct the result. A model trained on zero-filled rows (MISSING_DATA, e.g. miwae) never saw such
    # inputs, and the iteration runs away from the data (measured: imputations of 1e10 and more).
    completes_input: bool = False


METHODS: dict[str, ImputeMethod] = {
    "exact": ImputeMethod("closed-form E[x_m | x_o] (ppca)", (), None),
    "importance": ImputeMethod("self-normalized importance sampling with the encoder as proposal (MIWAE, eq. 15)",
                               (POSTERIOR, SAMPLE), _importance),
    "gibbs": ImputeMethod("pseudo-Gibbs sampling, z ~ q(z|x̂), x̂_m ~ p(x_m|z) (Rezende et al. 2014)",
                          (POSTERIOR, SAMPLE), _gibbs, completes_input=True),
    "metropolis": ImputeMethod("Metropolis-within-Gibbs sampling (Mattei & Frellsen 2018)", (POSTERIOR, SAMPLE),
                               _metropolis),
    "iterate": ImputeMethod("iterated reconstruction x̂_m ← reconstruct(x̂)_m, from the column means (any model)", (),
                            _iterate, completes_input=True),
}


def methods_for(model) -> list[str]:
    """The imputation methods ``model`` supports, in order of preference (the first is the default)."""
    out = ["exact"] if _exact_for(model) is not None else []
    zero_filled = has(model, MISSING_DATA)
    out += [name for name, m in METHODS.items() if name != "exact" and m.run is not None
            and all(has(model, c) for c in m.needs) and not (m.completes_input and zero_filled)]
    return out


def check_missing_rows(x: torch.Tensor, what: str = "the data") -> None:
    if x.ndim != 2:
        raise AekitError(f"{what} must be rows (N, D), got shape {tuple(x.shape)}")
    if bool(torch.isinf(x).any()):
        raise AekitError(f"{what} holds infinite values; only NaN may mark a missing entry")
    empty = torch.isnan(x).all(dim=1)
    if bool(empty.any()):
        raise AekitError(f"row {int(empty.nonzero()[0])} of {what} has every entry missing (NaN); "
                         f"drop rows with nothing observed")


@torch.no_grad()
def impute(model, x: torch.Tensor, *, method: str | None = None, samples: int = 1000, iterations: int = 200,
           burn_in: int | None = None, batch_size: int = 256, seed: int = 0) -> torch.Tensor:
    """``x`` (N, D) with NaN entries filled by ``method`` (default: the model's first of :func:`methods_for`).

    ``samples``: K importance samples (importance). ``iterations``: steps of the chains (gibbs,
    metropolis) or of iterated reconstruction (iterate); ``burn_in`` steps (default: half) are dropped
    from the chains' averages. Observed entries are returned unchanged.
    """
    available = methods_for(model)
    method = method or available[0]
    if method not in METHODS:
        raise unknown_choice("imputation method", method, METHODS)
    if method not in available:
        if method == "exact":
            raise AekitError(f"{kind_of(model)} has no closed-form conditional; it imputes with: {', '.join(available)}")
        for capability in METHODS[method].needs:
            require(model, capability, f"--method {method}")
        raise AekitError(f"{kind_of(model)} was trained on zero-filled rows and diverges when --method {method} feeds "
                         f"it completed ones; it imputes with: {', '.join(available)}")
    if getattr(model, "num_classes", None):
        raise AekitError("imputation with a conditional model (cvae) needs labels; train an unconditional model")
    if samples < 1 or iterations < 1:
        raise AekitError(f"--samples and --iterations must be >= 1, got {samples} and {iterations}")
    check_missing_rows(x)
    from .anomaly import device_of

    origin_device, x = x.device, x.to(device_of(model))
    run = _exact_for(model) if method == "exact" else METHODS[method].run
    burn_in = iterations // 2 if burn_in is None else burn_in
    observed_all = ~torch.isnan(x)
    counts = observed_all.sum(0)
    column_means = torch.where(observed_all, x, torch.zeros((), dtype=x.dtype)).sum(0) / counts.clamp_min(1)  # (D,)
    model.eval()
    out = []
    with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
        torch.manual_seed(seed)
        for start in range(0, len(x), batch_size):
            rows = x[start:start + batch_size]
            x0, observed = split_missing(rows)
            if bool(observed.all()):
                out.append(rows)
                continue
            filled = run(model, x0, observed, samples=samples, iterations=iterations, burn_in=burn_in,
                         column_means=column_means)
            out.append(torch.where(observed, rows, filled))
    return torch.cat(out).to(origin_device)

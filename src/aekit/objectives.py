"""Training objectives and their parts, all per example (shape (B,), nats per example).

The trainer reduces once (the batch mean). Formulas:

* ELBO (Kingma & Welling 2014, eq. 3):
  L(x) = E_q[log p(x|z)] − KL(q(z|x) ‖ p(z)),  estimated with L reparameterized samples.
* β-VAE (Higgins et al. 2017): −E_q[log p(x|z)] + β·KL; β may follow a schedule (KL annealing,
  Bowman et al. 2016; cyclical, Fu et al. 2019).
* Free bits (Kingma et al. 2016, eq. 15): Σ_j max(λ, E_batch[KL_j]) — the KL of each latent
  dimension, averaged over the batch, is not pushed below λ nats.
* Importance-weighted bound (Burda et al. 2016, eq. 8):
  L_k(x) = E[log (1/k) Σ_i p(x, z_i)/q(z_i|x)],  z_i ~ q(z|x);  L_1 = ELBO ≤ L_k ≤ L_{k+1} ≤ log p(x).
* Surrogates (:func:`zero_value`): a term t − t.detach() has value 0 and the gradient of t, so a loss
  can carry an estimator's gradient while its value stays the objective (see :mod:`aekit.estimators`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.distributions import Distribution, Independent, kl_divergence

from .errors import AekitError, unknown_choice


def kl_term(q: Distribution, p: Distribution, z: torch.Tensor | None = None) -> torch.Tensor:
    """KL(q ‖ p) per example (B,): closed form where registered, else a Monte Carlo estimate.

    The Monte Carlo fallback (the one place it lives) is E_q[log q(z) − log p(z)] averaged over the
    samples ``z`` (S, B, J) already drawn for the reconstruction term.
    """
    return kl_with_form(q, p, z)[0]


def kl_with_form(q: Distribution, p: Distribution, z: torch.Tensor | None = None) -> tuple[torch.Tensor, bool]:
    """(KL(q ‖ p) per example, whether it is the closed form): see :func:`kl_term`.

    A Monte Carlo KL evaluated at samples that carry no gradient (discrete z) has no pathwise
    gradient; a score-function estimator must then put −(log q − log p) into its learning signal.
    """
    if p.batch_shape != q.batch_shape:  # some registered KLs (Bernoulli) index masks and do not broadcast
        p = p.expand(q.batch_shape)
    try:
        return kl_divergence(q, p), True
    except NotImplementedError:
        if z is None:
            z = q.rsample((1,)) if q.has_rsample else q.sample((1,))
        return (q.log_prob(z) - p.log_prob(z)).mean(0), False


def zero_value(t: torch.Tensor) -> torch.Tensor:
    """t − t.detach(): exactly 0 in value, the gradient of t (the building block of surrogate losses)."""
    return t - t.detach()


def sample_of(q: Distribution, sample_shape=torch.Size()) -> torch.Tensor:
    """A sample of q: reparameterized where q has rsample (Gaussian), a plain draw otherwise (discrete)."""
    return q.rsample(sample_shape) if q.has_rsample else q.sample(sample_shape)


@torch.no_grad()
def importance_sampled_log_likelihood(log_weights, x: torch.Tensor, num_samples: int,
                                      chunk_elements: int = 1 << 24) -> torch.Tensor:
    """log p(x) ≈ log (1/k) Σ_i w_i, k = num_samples, with ``log_weights(k')`` → (k', B) log w drawn in chunks.

    Chunks bound memory (about ``chunk_elements`` decoder outputs at a time) whatever k and the batch
    size; they are merged with logsumexp in float64, so the result equals the one-shot estimate.
    """
    chunk = max(1, chunk_elements // max(1, x.shape[0] * x.shape[-1]))
    running = torch.full((x.shape[0],), -math.inf, device=x.device, dtype=torch.float64)
    done = 0
    while done < num_samples:
        k = min(chunk, num_samples - done)
        log_w = log_weights(k).double()  # (k, B)
        running = torch.logaddexp(running, torch.logsumexp(log_w, 0))
        done += k
    return (running - math.log(num_samples)).float()


def kl_per_dimension(q: Distribution, p: Distribution) -> torch.Tensor:
    """KL of each latent dimension (B, J) for factorized q and p (``Independent`` over the last dim)."""
    if not (isinstance(q, Independent) and isinstance(p, Independent)):
        raise AekitError("per-dimension KL (free bits, active units) needs factorized q(z|x) and p(z)")
    return kl_divergence(q.base_dist, p.base_dist.expand(q.base_dist.batch_shape))


def free_bits(kl_dims: torch.Tensor, lam: float) -> torch.Tensor:
    """Per-example KL whose batch mean is Σ_j max(λ, mean_b KL_bj).

    Dimensions whose batch-average KL is above λ contribute their per-example KL (so the gradient
    is the plain KL gradient); dimensions below λ contribute the constant λ (no gradient), which is
    what stops the optimizer from collapsing them.
    """
    mean_kl = kl_dims.mean(0, keepdim=True)  # (1, J)
    above = mean_kl > lam
    return torch.where(above, kl_dims, torch.full_like(kl_dims, lam)).sum(-1)


def log_mean_exp(log_w: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """log (1/k) Σ_i exp(log_w_i), computed with logsumexp for stability."""
    return torch.logsumexp(log_w, dim) - math.log(log_w.shape[dim])


@dataclass(frozen=True)
class KLSchedule:
    """The weight β_t on the KL term at optimizer step t.

    constant: β_t = β.  linear: β_t = β·min(1, t / warmup_steps) (KL annealing, Bowman et al. 2016).
    cyclical: within each cycle of ``cycle_steps`` steps, β rises linearly over the first
    ``ratio`` of the cycle and stays at β for the rest (Fu et al. 2019, eq. 5).
    """

    kind: str = "constant"
    beta: float = 1.0
    warmup_steps: int = 1000
    cycle_steps: int = 2000
    ratio: float = 0.5

    KINDS = ("constant", "linear", "cyclical")

    def __post_init__(self):
        if self.kind not in self.KINDS:
            raise unknown_choice("KL schedule", self.kind, self.KINDS)
        if self.beta < 0:
            raise AekitError(f"beta must be >= 0, got {self.beta}")
        if self.warmup_steps < 1 or self.cycle_steps < 1:
            raise AekitError("warmup_steps and cycle_steps must be >= 1")
        if not 0 < self.ratio <= 1:
            raise AekitError(f"the cyclical ratio must be in (0, 1], got {self.ratio}")

    def __call__(self, step: int) -> float:
        if self.kind == "constant":
            return self.beta
        if self.kind == "linear":
            return self.beta * min(1.0, step / self.warmup_steps)
        phase = (step % self.cycle_steps) / self.cycle_steps
        return self.beta * min(1.0, phase / self.ratio)

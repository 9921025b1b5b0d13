"""Gradient estimators for a sampled latent: how ∇_φ E_q(z|x)[f(z)] gets through the sample z.

A model hands its estimator q(z|x) and gets a :class:`Draw` back; it evaluates its per-example loss
on that draw and hands the estimator the loss, the learning signal and log q(z|x); it trains on the
*surrogate* the estimator returns. The surrogate's **value** is the loss — the objective on an exact
sample of q, so every reported loss stays the true one — and its **gradient** is the estimator's
(value-zero terms ⟨t⟩ = t − t.detach() carry gradients without changing the value):

* ``reparameterization``  z = g(ε; φ) (Gaussian): the pathwise gradient; the surrogate is the loss.
* ``score-function``      z ~ q(z|x), no gradient through z (REINFORCE, Williams 1992):
                          surrogate = loss − ⟨Â·log q(z|x)⟩ + ⟨(f − b(x))²⟩,  Â = (f − b(x)) / max(1, σ̂_f),
                          f the learning signal, b a baseline, σ̂ NVIL's variance normalization
                          (Mnih & Gregor 2014, §3.3). E[(f − b)∇log q] = E[f ∇log q] for any b that
                          does not depend on z, so baselines change the variance, never the mean.
* ``gumbel-softmax``      z̃ ~ Concrete(logits, τ_t) fed to the decoder (Jang et al. 2017; Maddison et al.
                          2017): a biased, low-variance gradient; the value is measured at the exact
                          discrete sample behind z̃ (Gumbel-max).
* ``straight-through``    z ~ q(z|x) forward, ∂z/∂φ taken as ∂E_q[z]/∂φ backward (Bengio et al. 2013).
* ``gumbel-st``           z = discretize(z̃) forward, the Gumbel-softmax gradient backward (Jang et al. 2017, §2.2).

Baselines (``--baseline``): ``none``; ``constant``, a scalar c trained with the model by
(f − c)²; ``moving-average``, c ← α c + (1 − α) mean_batch(f) after every step; ``learned``, NVIL's
input-dependent c + C(x; ω), C a one-hidden-layer tanh net fitted by (f − c − C(x))²; ``vimco`` (the
iwae objective only), the leave-one-out baselines of Mnih & Rezende (2016, eq. 9). The running
statistics live in buffers and are updated in ``after_step`` from the previous batches only (NVIL folds
the current batch in first), so b never depends on the samples it centres and resume is exact.

Temperature schedule (Jang et al. 2017, §4): τ_t = max(τ_min, τ_0·exp(−r·t')), t' = N·⌊t/N⌋, i.e. τ is
updated every N steps.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.distributions import Distribution

from .errors import AekitError, unknown_choice
from .objectives import log_mean_exp, zero_value

ESTIMATORS = ("auto", "reparameterization", "score-function", "gumbel-softmax", "straight-through", "gumbel-st")
ESTIMATOR_HELP = {
    "auto": "reparameterization for a Gaussian latent, score-function for a discrete one",
    "reparameterization": "pathwise gradient z = g(eps; phi) (Gaussian latents)",
    "score-function": "REINFORCE, unbiased, with --baseline and --variance-normalization (NVIL)",
    "gumbel-softmax": "Concrete relaxation at temperature tau (biased, low variance)",
    "straight-through": "discrete sample forward, gradient of its mean backward (biased)",
    "gumbel-st": "discrete sample forward, Gumbel-softmax gradient backward (biased)",
}
BASELINES = ("none", "constant", "moving-average", "learned", "vimco")
RELAXED = ("gumbel-softmax", "gumbel-st")           # estimators with a temperature
NEED_DISCRETE = ("gumbel-softmax", "straight-through", "gumbel-st")


def resolve_estimator(latent: str, estimator: str) -> str:
    """``auto`` → reparameterization for a Gaussian latent, score-function for a discrete one."""
    if estimator != "auto":
        return estimator
    return "reparameterization" if latent == "gaussian" else "score-function"


def check_estimator_settings(cfg) -> None:
    """One-line refusals of estimator settings that make no sense together (called by ModelConfig)."""
    if cfg.estimator not in ESTIMATORS:
        raise unknown_choice("estimator", cfg.estimator, ESTIMATORS)
    if cfg.baseline not in BASELINES:
        raise unknown_choice("baseline", cfg.baseline, BASELINES)
    est = resolve_estimator(cfg.latent, cfg.estimator)
    discrete = cfg.latent != "gaussian"
    if est in NEED_DISCRETE and not discrete:
        raise AekitError(f"--estimator {est} needs a discrete latent (--latent bernoulli | categorical); "
                         f"a Gaussian latent takes --estimator reparameterization or score-function")
    if est == "reparameterization" and discrete:
        raise AekitError(f"a {cfg.latent} latent has no reparameterization; choose --estimator score-function | "
                         f"gumbel-softmax | straight-through | gumbel-st")
    if cfg.baseline != "none" and est != "score-function":
        raise AekitError(f"--baseline {cfg.baseline} needs --estimator score-function (it centres the score-function "
                         f"learning signal); drop --baseline or change --estimator")
    if cfg.variance_normalization and est != "score-function":
        raise AekitError("--variance-normalization needs --estimator score-function; drop it or change --estimator")
    iwae = cfg.kind == "iwae"
    if est in NEED_DISCRETE and iwae:
        raise AekitError(f"iwae trains a discrete latent with --estimator score-function (VIMCO with --baseline vimco), "
                         f"not {est}")
    if iwae and cfg.variance_normalization:
        raise AekitError("iwae's score-function signal is the k-sample bound, which NVIL's variance normalization "
                         "does not apply to; drop --variance-normalization (or train vae)")
    if iwae and cfg.baseline not in ("none", "vimco"):
        raise AekitError(f"iwae takes --baseline none or vimco (leave-one-out baselines), got {cfg.baseline}")
    if cfg.baseline == "vimco" and not iwae:
        raise AekitError("--baseline vimco is the multi-sample baseline of the iwae objective; train iwae, or choose "
                         "--baseline none | constant | moving-average | learned")
    if cfg.baseline == "vimco" and cfg.iw_samples < 2:
        raise AekitError(f"--baseline vimco needs --iw-samples >= 2 (a leave-one-out baseline), got {cfg.iw_samples}")
    if cfg.temperature <= 0:
        raise AekitError(f"--temperature (tau_0) must be > 0, got {cfg.temperature}")
    if cfg.temperature_min <= 0:
        raise AekitError(f"--temperature-min (tau_min) must be > 0, got {cfg.temperature_min}")
    if cfg.temperature_min > cfg.temperature:
        raise AekitError(f"--temperature-min (tau_min = {cfg.temperature_min}) must be <= --temperature "
                         f"(tau_0 = {cfg.temperature})")
    if cfg.temperature_decay < 0:
        raise AekitError(f"--temperature-decay (r) must be >= 0, got {cfg.temperature_decay}")
    if cfg.temperature_interval < 1:
        raise AekitError(f"--temperature-interval (N steps) must be >= 1, got {cfg.temperature_interval}")
    if not 0 <= cfg.baseline_decay < 1:
        raise AekitError(f"--baseline-decay (alpha of the moving averages) must be in [0, 1), got {cfg.baseline_decay}")
    if cfg.baseline_hidden < 1:
        raise AekitError(f"--baseline-hidden must be >= 1, got {cfg.baseline_hidden}")


# ----------------------------------------------------------------------------- draws and schedules
@dataclass
class Draw:
    """A latent draw: ``z`` carries the estimator's gradient path; ``hard`` is an exact sample of q,
    where the value of the objective is measured; ``relaxed`` when z and hard differ in value."""

    z: torch.Tensor
    hard: torch.Tensor
    relaxed: bool = False


def exact_draw(q: Distribution, sample_shape=torch.Size()) -> Draw:
    """A plain sample of q (no gradient through it): what wake-sleep and evaluation use."""
    z = q.sample(sample_shape)
    return Draw(z, z)


@dataclass(frozen=True)
class TemperatureSchedule:
    """τ_t = max(τ_min, τ_0·exp(−r·N·⌊t/N⌋)) (Jang et al. 2017, §4: τ_0 = 1, τ_min = 0.5, N = 500, r = 1e-5..1e-4)."""

    initial: float = 1.0
    minimum: float = 0.5
    decay: float = 1e-4
    interval: int = 500

    def __call__(self, step: int) -> float:
        t = self.interval * (step // self.interval)
        return max(self.minimum, self.initial * math.exp(-self.decay * t))


# ----------------------------------------------------------------------------- estimators
class Estimator(nn.Module):
    """The interface: ``draw`` a latent, then turn the loss into the ``surrogate`` to differentiate."""

    name = ""
    uses_score = False  # the surrogate needs the learning signal and log q(z|x)

    def draw(self, q: Distribution, sample_shape=torch.Size(), step: int = 0) -> Draw:
        raise NotImplementedError

    def surrogate(self, loss, signal=None, log_q=None, x=None, cond=None) -> tuple[torch.Tensor, dict]:
        return loss, {}

    def report(self, step: int) -> dict[str, float]:
        """Scalars to show beside the loss (the temperature)."""
        return {}

    def after_step(self, step: int) -> None:
        """Fold this step's statistics into the running state (the trainer calls it after each update)."""

    def extra_repr(self) -> str:
        return self.name


class Reparameterization(Estimator):
    name = "reparameterization"

    def draw(self, q, sample_shape=torch.Size(), step=0) -> Draw:
        if not q.has_rsample:
            raise AekitError(f"{type(q).__name__} cannot be reparameterized; use --estimator score-function, "
                             f"gumbel-softmax, straight-through or gumbel-st")
        z = q.rsample(sample_shape)
        return Draw(z, z)


def _discrete(q: Distribution, name: str) -> Distribution:
    if not hasattr(q, "relaxed"):
        raise AekitError(f"--estimator {name} needs a discrete latent (--latent bernoulli | categorical)")
    return q


class StraightThrough(Estimator):
    """z = E_q[z] + (z_hard − E_q[z]).detach(): the value of the sample, the gradient of the mean."""

    name = "straight-through"

    def draw(self, q, sample_shape=torch.Size(), step=0) -> Draw:
        _discrete(q, self.name)
        hard = q.sample(sample_shape)
        mean = q.mean.expand_as(hard)
        return Draw(mean + (hard - mean).detach(), hard)


class GumbelSoftmax(Estimator):
    """Concrete samples at the scheduled temperature; ``hard`` (gumbel-st) forwards their discretization."""

    def __init__(self, schedule: TemperatureSchedule = TemperatureSchedule(), hard: bool = False):
        super().__init__()
        self.schedule, self.hard = schedule, hard
        self.name = "gumbel-st" if hard else "gumbel-softmax"

    def draw(self, q, sample_shape=torch.Size(), step=0) -> Draw:
        soft = _discrete(q, self.name).relaxed(self.schedule(step)).rsample(sample_shape)
        hard = q.discretize(soft)  # the Gumbel-max sample behind the relaxed one: exact under q
        if self.hard:
            return Draw(soft + (hard - soft).detach(), hard)
        return Draw(soft, hard, relaxed=True)

    def report(self, step: int) -> dict[str, float]:
        return {"temperature": self.schedule(step)}


class SignalMoments(nn.Module):
    """Running mean and variance of the learning signal: c ← α c + (1 − α) m_batch (the first batch sets c)."""

    def __init__(self, decay: float = 0.8):
        super().__init__()
        self.decay = decay
        self.register_buffer("mean", torch.zeros(()))
        self.register_buffer("var", torch.zeros(()))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def update(self, batch_mean: torch.Tensor, batch_var: torch.Tensor) -> None:
        a = (self.count > 0).to(self.mean.dtype) * self.decay  # 0 on the first batch; no host sync
        self.mean.mul_(a).add_((1 - a) * batch_mean)
        self.var.mul_(a).add_((1 - a) * batch_var)
        self.count.add_(1)


class LearnedBaselineNet(nn.Module):
    """C(x; ω): one tanh hidden layer, a linear output started at 0 (NVIL used 100 tanh units)."""

    def __init__(self, in_features: int, hidden: int = 100):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_features, hidden), nn.Tanh(), nn.Linear(hidden, 1))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        if cond is not None:
            x = torch.cat([x, cond], -1)
        return self.net(x).squeeze(-1)  # (B,)


class ScoreFunction(Estimator):
    """REINFORCE with one of the baselines above and optional NVIL variance normalization."""

    name = "score-function"
    uses_score = True

    def __init__(self, baseline: str = "none", *, variance_normalization: bool = False, decay: float = 0.8,
                 input_features: int | None = None, hidden: int = 100):
        super().__init__()
        if baseline not in BASELINES:
            raise unknown_choice("baseline", baseline, BASELINES)
        self.baseline = baseline
        self.variance_normalization = variance_normalization
        self.moments = SignalMoments(decay)
        self.constant = nn.Parameter(torch.zeros(())) if baseline == "constant" else None
        if baseline == "learned":
            if input_features is None:
                raise ValueError("the learned baseline needs input_features (the size of x)")
            self.net = LearnedBaselineNet(input_features, hidden)
        else:
            self.net = None
        self._pending: tuple[torch.Tensor, torch.Tensor] | None = None

    def draw(self, q, sample_shape=torch.Size(), step=0) -> Draw:
        z = q.sample(sample_shape)
        return Draw(z, z)

    def centre(self, x=None, cond=None) -> tuple[torch.Tensor, torch.Tensor]:
        """(b(x), C(x)): the baseline — 0, c, the running mean, or running mean + C(x) — with gradients
        to its own parameters, and its input-dependent part C(x) (0 unless learned)."""
        zero = torch.zeros((), device=self.moments.mean.device)
        if self.baseline == "constant":
            return self.constant, zero
        if self.baseline == "moving-average":
            return self.moments.mean, zero
        if self.baseline == "learned":
            c_x = self.net(x, cond)  # (B,)
            return self.moments.mean + c_x, c_x
        return zero, zero

    def surrogate(self, loss, signal=None, log_q=None, x=None, cond=None):
        """loss (B,); signal f and log q (S, B): S samples per example.

        As in NVIL, the running mean c and variance v are those of r = f − C(x) (just f without a
        learned baseline), so that Â = (r − c) / max(1, √v) and C is fitted to f − c.
        """
        signal = signal.detach()
        b, c_x = self.centre(x, cond)  # scalars or (B,)
        advantage = signal - b.detach()  # (S, B)
        if self.variance_normalization:
            advantage = advantage / self.moments.var.sqrt().clamp_min(1.0)
        total = loss - zero_value((advantage * log_q).mean(0))
        terms = {}
        if self.baseline in ("constant", "learned"):
            fit = ((signal - b) ** 2).mean(0)  # (B,): the baseline's regression onto the signal
            total = total + zero_value(fit)
            terms["baseline_mse"] = fit.detach()
        if self.training:
            # Statistics of this batch, folded into the running state by after_step (never here).
            r = signal - c_x.detach()
            self._pending = (r.mean(), r.var() if r.numel() > 1 else torch.zeros_like(r.mean()))
        return total, terms

    def iw_surrogate(self, log_w: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
        """−L_k with the score-function term for k samples (k, B): learning signal L_k for each sample, or
        with ``vimco`` the per-sample L_k − L_k^{(−i)}, where L_k^{(−i)} replaces log w_i by the mean of the others."""
        bound = log_mean_exp(log_w, 0)  # (B,)
        signal = bound.detach().expand_as(log_w)
        if self.baseline == "vimco":
            signal = signal - leave_one_out_bound(log_w.detach())
        return -bound - zero_value((signal * log_q).sum(0))

    @torch.no_grad()
    def after_step(self, step: int) -> None:
        if self._pending is None:
            return
        mean, var = self._pending
        self._pending = None
        if dist.is_available() and dist.is_initialized():  # every process keeps the same running state
            stats = torch.stack([mean, var])
            dist.all_reduce(stats)
            mean, var = stats / dist.get_world_size()
        self.moments.update(mean, var)
        if self.constant is not None:  # start the constant at the signal's level, not at 0
            self.constant.copy_(torch.where(self.moments.count == 1, self.moments.mean, self.constant))


def leave_one_out_bound(log_w: torch.Tensor) -> torch.Tensor:
    """L_k^{(−i)} = log (1/k)(Σ_{j≠i} w_j + exp(mean_{j≠i} log w_j)) for each i: (k, B) (VIMCO, eq. 9)."""
    k = log_w.shape[0]
    others_mean = (log_w.sum(0, keepdim=True) - log_w) / (k - 1)  # (k, B)
    grid = log_w.unsqueeze(0).expand(k, *log_w.shape).clone()  # (k: left out, k, B)
    index = torch.arange(k, device=log_w.device)
    grid[index, index] = others_mean
    return torch.logsumexp(grid, 1) - math.log(k)


def build_estimator(cfg, data_dim: int | None = None) -> Estimator:
    """The estimator a model config asks for (``data_dim`` + label width: the input of a learned baseline)."""
    name = resolve_estimator(cfg.latent, cfg.estimator)
    if name == "reparameterization":
        return Reparameterization()
    if name == "score-function":
        return ScoreFunction(cfg.baseline, variance_normalization=cfg.variance_normalization,
                             decay=cfg.baseline_decay, input_features=data_dim, hidden=cfg.baseline_hidden)
    if name == "straight-through":
        return StraightThrough()
    schedule = TemperatureSchedule(cfg.temperature, cfg.temperature_min, cfg.temperature_decay,
                                   cfg.temperature_interval)
    return GumbelSoftmax(schedule, hard=name == "gumbel-st")


# ----------------------------------------------------------------------------- gradient variance
class GradientMoments(nn.Module):
    """Running averages of g and g² per coordinate of a gradient (decay α, bias-corrected):

        m_t = α m_{t−1} + (1 − α) g_t,  s_t = α s_{t−1} + (1 − α) g_t²,  v = mean_j (ŝ_j − m̂_j²),

    m̂ = m / (1 − α^t). ``log_variance`` is log v; until two gradients have been seen it is log mean_j ŝ_j
    (the second moment), which is finite and an upper bound. Buffers, so resume stays exact.
    """

    decay = 0.99

    def __init__(self, num_coordinates: int):
        super().__init__()
        self.register_buffer("first", torch.zeros(num_coordinates))
        self.register_buffer("second", torch.zeros(num_coordinates))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def update(self, parameters) -> None:
        grads = [p.grad.reshape(-1) if p.grad is not None else torch.zeros(p.numel(), device=p.device)
                 for p in parameters]
        g = torch.cat(grads).to(self.first.dtype)
        self.first.mul_(self.decay).add_(g, alpha=1 - self.decay)
        self.second.mul_(self.decay).addcmul_(g, g, value=1 - self.decay)
        self.count.add_(1)

    @torch.no_grad()
    def log_variance(self) -> float:
        t = int(self.count)
        if t == 0:
            return 0.0
        correction = 1 - self.decay ** t
        second = self.second / correction
        variance = (second - (self.first / correction) ** 2).clamp_min(0) if t >= 2 else second
        return math.log(max(float(variance.mean()), 1e-30))


@contextmanager
def using_estimator(model, estimator: Estimator):
    """Within this context ``model`` differentiates its latent with ``estimator`` (for comparisons on one snapshot)."""
    previous = model.estimator
    model.estimator = estimator.to(next(model.parameters()).device)
    try:
        yield model
    finally:
        model.estimator = previous


def gradient_variance(model, x: torch.Tensor, y: torch.Tensor | None = None, *, draws: int = 100, step: int = 0,
                      parameters=None, seed: int = 0) -> dict:
    """Variance of the stochastic gradient of the model's loss on one fixed minibatch, per coordinate.

    The loss ``model.loss(x, y, step).total.mean()`` is differentiated ``draws`` times, each with fresh
    latent noise, with respect to ``parameters`` (default ``model.gradient_parameters()``, the
    encoder's). Per coordinate j: mean ḡ_j and unbiased variance v_j over the draws; reported:

    * ``variance``: mean_j v_j (the per-coordinate variance averaged over coordinates — not the
      variance of the averaged gradient), and ``log_variance`` = log of it;
    * ``mean_squared``: mean_j ḡ_j², to compare the noise with the signal; ``snr`` = mean_j |ḡ_j| / √v_j;
    * ``mean`` and ``per_coordinate``: the tensors ḡ and v (flattened in parameter order).

    The model is put in eval mode (no running statistic moves) and the global RNG is restored afterwards.
    """
    if draws < 2:
        raise AekitError(f"gradient_variance needs draws >= 2, got {draws}")
    params = list(parameters if parameters is not None else model.gradient_parameters())
    was_training = model.training
    model.eval()
    total = torch.zeros(sum(p.numel() for p in params), dtype=torch.float64, device=x.device)
    total_sq = torch.zeros_like(total)
    with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
        torch.manual_seed(seed)
        for _ in range(draws):
            loss = model.loss(x, y, step).total.mean()
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            g = torch.cat([(gr if gr is not None else torch.zeros_like(p)).reshape(-1)
                           for gr, p in zip(grads, params)]).double()
            total += g
            total_sq += g * g
    model.train(was_training)
    mean = total / draws
    per_coordinate = ((total_sq - draws * mean ** 2) / (draws - 1)).clamp_min(0)
    variance = float(per_coordinate.mean())
    snr = float((mean.abs() / per_coordinate.sqrt().clamp_min(1e-30)).mean())
    return {"variance": variance, "log_variance": math.log(max(variance, 1e-300)),
            "mean_squared": float((mean ** 2).mean()), "snr": snr, "draws": draws,
            "mean": mean, "per_coordinate": per_coordinate}

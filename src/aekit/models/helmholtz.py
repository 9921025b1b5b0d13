"""The Helmholtz machine (Dayan, Hinton, Neal & Zemel 1995; Hinton, Dayan, Frey & Neal 1995).

Generative model, a sigmoid belief net (Neal 1992) of L layers of binary units above the data x = h_0:

    p(h_L) = ∏_j Bern(σ(b_L)_j),   p(h_l | h_{l+1}) = ∏_j Bern(σ(W_l h_{l+1} + b_l)_j),   l = L−1, …, 0.

Recognition model of the same depth, bottom-up: q(h_{l+1} | h_l) = ∏_j Bern(σ(R_l h_l + c_l)_j).
Free energy F(x) = E_q[−log p(x, h)] − H(q(h|x)) = −ELBO(x) ≥ −log p(x) (Dayan et al. 1995, eq. 3).

``algorithm`` says how it is trained; every one of them goes through the one trainer as a per-example
surrogate loss whose value is what is reported and whose gradient is the algorithm's update, with
⟨t⟩ = t − t.detach() (value 0, gradient of t):

* ``wake-sleep`` (Hinton et al. 1995, minibatch). Wake: h ~ q(h|x), the generative parameters θ
  follow ∇_θ log p(x, h). Sleep: (h, x) ~ p, a dream, the recognition parameters φ follow
  ∇_φ log q(h | x). Surrogate: F̂(x) + ⟨−log p(x, h)⟩ + ⟨−log q(h_dream | x_dream)⟩, value F̂ =
  log q(h|x) − log p(x, h), the one-sample free energy (the two phases descend no single objective).
  ``wake_step`` / ``sleep_step`` are the same updates written as the paper's local delta rules.
* ``reweighted-wake-sleep`` (Bornschein & Bengio 2015, K = ``iw_samples``): h_k ~ q(h|x),
  w̃_k ∝ p(x, h_k)/q(h_k|x) normalized over k. θ follows Σ_k w̃_k ∇ log p(x, h_k) = ∇_θ L_K; φ follows
  the wake phase Σ_k w̃_k ∇ log q(h_k|x) plus the sleep phase, with equal weights as in the authors'
  code (equal q-wake and q-sleep learning rates). Value −L_K(x) = −log (1/K) Σ_k w_k.
* ``elbo``: the discrete VAE, −ELBO with a gradient estimator for the sampled h (score function with
  NVIL's baselines on the global signal log p(x, h) − log q(h|x), Gumbel-softmax per layer,
  straight-through; :mod:`aekit.estimators`).

The code of the model (``encode``, ``embed``, ``decode``) is the first hidden layer h_1, the layer
that generates x: q(h_1|x) is exactly a factorized Bernoulli, and p(x|h_1) the decoder.
"""

from __future__ import annotations

import copy
import math
from typing import Sequence

import torch
from torch import nn
from torch.distributions import Distribution

from ..capabilities import ELBO, LOG_LIKELIHOOD, POSTERIOR, SAMPLE
from ..config import ALGORITHMS, DataShape, ModelConfig
from ..errors import AekitError, unknown_choice
from ..estimators import Estimator, GradientMoments, ScoreFunction, build_estimator, exact_draw
from ..latents import MAX_ENUMERATED_STATES, FactorizedBernoulli, binary_states
from ..objectives import importance_sampled_log_likelihood, kl_term, log_mean_exp, zero_value
from .parts import LossOutput


class HelmholtzMachine(nn.Module):
    """A sigmoid belief net p(x, h_1, …, h_L) with a recognition net q(h_1, …, h_L | x); see the module doc."""

    capabilities = frozenset({SAMPLE, LOG_LIKELIHOOD, ELBO, POSTERIOR})
    discrete_likelihood = True  # binary visible units: log p(x) is a log-probability
    selection_metric = "neg_elbo"
    num_classes = None  # unconditional

    def __init__(self, data_dim: int, layer_sizes: Sequence[int], *, algorithm: str = "wake-sleep",
                 iw_samples: int = 5, estimator: Estimator | None = None, track_grad_variance: bool = False):
        super().__init__()
        if not layer_sizes:
            raise AekitError("the Helmholtz machine needs at least one hidden layer: --hidden-dims H1[,H2,...]")
        if algorithm not in ALGORITHMS:
            raise unknown_choice("algorithm", algorithm, ALGORITHMS)
        self.sizes = (data_dim, *layer_sizes)  # (D, H_1, ..., H_L)
        pairs = list(zip(self.sizes[:-1], self.sizes[1:]))
        self.recognition = nn.ModuleList(nn.Linear(below, above) for below, above in pairs)  # R_l: h_l → h_{l+1}
        self.generative = nn.ModuleList(nn.Linear(above, below) for below, above in pairs)   # W_l: h_{l+1} → h_l
        self.top_logits = nn.Parameter(torch.zeros(self.sizes[-1]))                        # b_L
        self.algorithm = algorithm
        self.iw_samples = iw_samples
        if algorithm == "elbo":
            self.estimator = estimator if estimator is not None else ScoreFunction()
        elif estimator is not None:
            raise AekitError(f"--algorithm {algorithm} trains without a gradient estimator; use --algorithm elbo")
        else:
            self.estimator = None
        self.grad_moments = (GradientMoments(sum(p.numel() for p in self.gradient_parameters()))
                             if track_grad_variance else None)

    @property
    def num_layers(self) -> int:
        return len(self.sizes) - 1

    # ------------------------------------------------------------------ the two networks
    def top_prior(self) -> FactorizedBernoulli:
        """p(h_L)."""
        return FactorizedBernoulli(self.top_logits)

    def recognize(self, below: torch.Tensor, layer: int) -> FactorizedBernoulli:
        """q(h_{layer+1} | h_layer), h_0 = x."""
        return FactorizedBernoulli(self.recognition[layer](below))

    def generate(self, above: torch.Tensor, layer: int) -> FactorizedBernoulli:
        """p(h_layer | h_{layer+1}), h_0 = x."""
        return FactorizedBernoulli(self.generative[layer](above))

    def upward(self, x: torch.Tensor, num_samples: int | None = None, draw=exact_draw):
        """h ~ q(h|x) layer by layer: (draws per layer, log q(h|x)) with shape (B,) or (k, B).

        ``draw(q, sample_shape)`` → :class:`Draw` (an estimator's, or an exact sample); the first layer
        draws ``num_samples`` samples per example when given, the layers above follow each of them.
        """
        below, draws, log_q = x, [], 0.0
        for layer in range(self.num_layers):
            q = self.recognize(below, layer)
            d = draw(q, (num_samples,) if (layer == 0 and num_samples is not None) else torch.Size())
            log_q = log_q + q.log_prob(d.z)
            draws.append(d)
            below = d.z
        return draws, log_q

    def log_q(self, x: torch.Tensor, hs: Sequence[torch.Tensor]) -> torch.Tensor:
        """log q(h|x) = Σ_l log q(h_{l+1} | h_l) of given states."""
        return sum(self.recognize(below, layer).log_prob(h)
                   for layer, (below, h) in enumerate(zip([x, *hs[:-1]], hs)))

    def log_joint(self, x: torch.Tensor, hs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(log p(x | h_1), log p(h)) of given states hs = [h_1, …, h_L] (broadcast over leading dims)."""
        log_prior = self.top_prior().log_prob(hs[-1])
        for layer in range(self.num_layers - 1, 0, -1):
            log_prior = log_prior + self.generate(hs[layer], layer).log_prob(hs[layer - 1])
        return self.generate(hs[0], 0).log_prob(x), log_prior

    @torch.no_grad()
    def dream(self, n: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """An ancestral sample (x, [h_1, …, h_L]) of the generative model, x binary: the sleep phase's data."""
        h = self.top_prior().sample((n,))  # (n, H_L)
        hs = [h]
        for layer in range(self.num_layers - 1, 0, -1):
            h = self.generate(h, layer).sample()
            hs.insert(0, h)
        return self.generate(h, 0).sample(), hs

    # ------------------------------------------------------------------ training objectives
    def loss(self, x, y=None, step: int = 0) -> LossOutput:
        return _LOSSES[self.algorithm](self, x, step)

    def forward(self, x, y=None, step: int = 0) -> LossOutput:
        return self.loss(x, y, step)  # DistributedDataParallel synchronizes the gradients of forward

    def _wake_sleep_loss(self, x, step: int) -> LossOutput:
        with torch.no_grad():
            draws, log_q = self.upward(x)  # wake: h ~ q(h|x)
        hs = [d.z for d in draws]
        log_px_h, log_ph = self.log_joint(x, hs)  # gradient to θ only: h is data here
        log_p = log_px_h + log_ph
        x_dream, hs_dream = self.dream(x.shape[0])  # sleep: (h, x) ~ p
        sleep = -self.log_q(x_dream, hs_dream)  # gradient to φ only
        free_energy = (log_q - log_p).detach()
        total = free_energy + zero_value(-log_p) + zero_value(sleep)
        return LossOutput(total, {"free_energy": free_energy, "wake": -log_p.detach(), "sleep": sleep.detach(),
                                  **self._reported(step, free_energy)})

    def _reweighted_loss(self, x, step: int) -> LossOutput:
        with torch.no_grad():
            draws, _ = self.upward(x, self.iw_samples)  # h_k ~ q(h|x): (K, B, H_l)
        hs = [d.z for d in draws]
        log_q = self.log_q(x, hs)  # (K, B), gradient to φ
        log_px_h, log_ph = self.log_joint(x, hs)  # gradient to θ
        log_p = log_px_h + log_ph
        log_w = (log_p - log_q).detach()
        weights = torch.softmax(log_w, 0)  # w̃_k, normalized over the K samples
        wake_p = -(weights * log_p).sum(0)
        wake_q = -(weights * log_q).sum(0)
        x_dream, hs_dream = self.dream(x.shape[0])
        sleep_q = -self.log_q(x_dream, hs_dream)
        bound = log_mean_exp(log_w, 0)  # L_K (B,)
        total = -bound + zero_value(wake_p) + zero_value(wake_q + sleep_q)
        return LossOutput(total, {"iw_bound": bound, "free_energy": -log_w.mean(0), **self._reported(step, bound)})

    def _elbo_loss(self, x, step: int) -> LossOutput:
        estimator = self.estimator
        draws, log_q = self.upward(x, draw=lambda q, shape: estimator.draw(q, shape, step))
        log_px_h, log_ph = self.log_joint(x, [d.z for d in draws])
        log_p = log_px_h + log_ph
        free_energy = log_q - log_p  # −ELBO on this draw, with the estimator's gradient paths
        if any(d.relaxed for d in draws):
            # Relaxed layers feed relaxed values upward; the value is measured on an exact chain.
            with torch.no_grad():
                exact, log_q_exact = self.upward(x)
                rec, prior = self.log_joint(x, [d.z for d in exact])
                value = log_q_exact - rec - prior
            total = value + zero_value(free_energy)
        elif estimator.uses_score:
            # Pathwise: −log p(x, h) for θ; the pathwise φ-gradient of log q has mean zero and is dropped (NVIL).
            total, extra = estimator.surrogate(-log_p + log_q.detach(), signal=-free_energy.detach()[None],
                                               log_q=log_q[None], x=x)
            return LossOutput(total, {"free_energy": free_energy.detach(), **extra, **self._reported(step, total)})
        else:
            total = free_energy
        return LossOutput(total, {"free_energy": total.detach(), **self._reported(step, total)})

    def _reported(self, step: int, like: torch.Tensor) -> dict[str, torch.Tensor]:
        values = dict(self.estimator.report(step)) if self.estimator is not None else {}
        if self.grad_moments is not None:
            values["grad_log_variance"] = self.grad_moments.log_variance()
        return {k: torch.full_like(like, v).detach() for k, v in values.items()}

    def gradient_parameters(self) -> list[nn.Parameter]:
        """The recognition network's parameters (the "encoder" whose gradient variance is compared)."""
        return list(self.recognition.parameters())

    def after_step(self, step: int) -> None:
        if self.estimator is not None:
            self.estimator.after_step(step)
        if self.grad_moments is not None:
            self.grad_moments.update(self.gradient_parameters())

    # ------------------------------------------------------------------ the classical updates
    @torch.no_grad()
    def wake_step(self, x: torch.Tensor, lr: float) -> None:
        """One wake phase as the local delta rule (Hinton et al. 1995): h ~ q(h|x), then for each
        generative layer ΔW_l = ε ⟨(h_l − p_l) h_{l+1}ᵀ⟩, Δb_l = ε ⟨h_l − p_l⟩, p_l = σ(W_l h_{l+1} + b_l),
        and Δb_L = ε ⟨h_L − σ(b_L)⟩; ⟨·⟩ the batch mean. Plain SGD on the wake phase of ``loss``."""
        draws, _ = self.upward(x)
        states = [x, *[d.z for d in draws]]
        for layer, net in enumerate(self.generative):
            error = states[layer] - torch.sigmoid(net(states[layer + 1]))  # (B, H_layer)
            net.weight.add_(lr * error.T @ states[layer + 1] / len(x))
            net.bias.add_(lr * error.mean(0))
        self.top_logits.add_(lr * (states[-1] - torch.sigmoid(self.top_logits)).mean(0))

    @torch.no_grad()
    def sleep_step(self, n: int, lr: float) -> None:
        """One sleep phase: a dream (h, x) ~ p, then for each recognition layer
        ΔR_l = ε ⟨(h_{l+1} − q_{l+1}) h_lᵀ⟩, Δc_l = ε ⟨h_{l+1} − q_{l+1}⟩, q_{l+1} = σ(R_l h_l + c_l)."""
        x, hs = self.dream(n)
        states = [x, *hs]
        for layer, net in enumerate(self.recognition):
            error = states[layer + 1] - torch.sigmoid(net(states[layer]))  # (n, H_{layer+1})
            net.weight.add_(lr * error.T @ states[layer] / n)
            net.bias.add_(lr * error.mean(0))

    # ------------------------------------------------------------------ the model face
    def encode(self, x, y=None) -> Distribution:
        """q(h_1 | x): the first hidden layer's recognition distribution (the whole posterior when L = 1)."""
        return self.recognize(x, 0)

    def embed(self, x, y=None) -> torch.Tensor:
        return self.encode(x).mean

    def decode(self, h, y=None) -> Distribution:
        """p(x | h_1)."""
        return self.generate(h, 0)

    def reconstruct(self, x, y=None) -> torch.Tensor:
        return self.decode(self.encode(x).mode).mean

    @torch.no_grad()
    def sample(self, n: int, y=None) -> torch.Tensor:
        """Ancestral samples through every layer, shown as p(x | h_1)'s mean (n, D)."""
        _, hs = self.dream(n)
        return self.decode(hs[0]).mean

    def evaluation_terms(self, x, y=None) -> dict[str, torch.Tensor]:
        """reconstruction −log p(x|h_1), kl = E_q[log q(h|x) − log p(h)] (closed form for one layer,
        one sample otherwise), neg_elbo = F(x), per example."""
        draws, log_q = self.upward(x)
        log_px_h, log_ph = self.log_joint(x, [d.z for d in draws])
        kl = kl_term(self.encode(x), self.top_prior()) if self.num_layers == 1 else log_q - log_ph
        return {"reconstruction": -log_px_h, "kl": kl, "neg_elbo": kl - log_px_h}

    def log_weights(self, x, y=None, num_samples: int = 1) -> torch.Tensor:
        """log w = log p(x, h) − log q(h|x), h ~ q(h|x): (k, B)."""
        draws, log_q = self.upward(x, num_samples)
        log_px_h, log_ph = self.log_joint(x, [d.z for d in draws])
        return log_px_h + log_ph - log_q

    @torch.no_grad()
    def log_likelihood(self, x, y=None, num_samples: int = 1000) -> torch.Tensor:
        """Importance-sampled log p(x) with q(h|x) as the proposal, k = num_samples: (B,)."""
        return importance_sampled_log_likelihood(lambda k: self.log_weights(x, None, k), x, num_samples)

    @torch.no_grad()
    def exact_log_likelihood(self, x, y=None) -> torch.Tensor:
        """log p(x) by enumeration, (B,): at most 20 hidden units in all (one-line error beyond).

        Top-down: log p(h_l) = logsumexp_{h_{l+1}} [log p(h_l | h_{l+1}) + log p(h_{l+1})] over all states
        of adjacent layers, then log p(x) = logsumexp_{h_1} [log p(x | h_1) + log p(h_1)]; float64.
        """
        total = sum(self.sizes[1:])
        if total > 20 or (1 << total) > MAX_ENUMERATED_STATES:
            raise AekitError(f"exact log p(x) enumerates every hidden state, at most 20 binary units; this machine "
                             f"has {total} ({'+'.join(map(str, self.sizes[1:]))}); use log_likelihood(x, num_samples=k)")
        model = _float64_copy(self)
        x64 = x.double()
        states = binary_states(model.sizes[-1], x64)  # (S_L, H_L)
        log_marginal = model.top_prior().log_prob(states)  # log p(h_L), (S_L,)
        for layer in range(model.num_layers - 1, 0, -1):
            below = binary_states(model.sizes[layer], x64)  # (S_l, H_l)
            conditional = _bernoulli_table(model.generative[layer](states), below)  # (S_{l+1}, S_l)
            log_marginal = torch.logsumexp(log_marginal[:, None] + conditional, 0)
            states = below
        running = torch.full((x.shape[0],), -math.inf, dtype=torch.float64, device=x.device)
        chunk = max(1, (1 << 24) // max(1, x.shape[0] + x.shape[1]))
        for start in range(0, len(states), chunk):
            logits = model.generative[0](states[start:start + chunk])  # (S_c, D)
            log_joint = _bernoulli_table(logits, x64) + log_marginal[start:start + chunk, None]  # (S_c, B)
            running = torch.logaddexp(running, torch.logsumexp(log_joint, 0))
        return running.to(x.dtype)

    @torch.no_grad()
    def code_probabilities(self, x: torch.Tensor, layer: int = -1, num_samples: int = 500) -> torch.Tensor:
        """q(h_layer,j = 1 | x) for the units of a hidden layer (default the top one): (B, H).

        Exact for the first layer; above it E_{h_{l−1} ~ q}[σ(R h_{l−1} + c)] over ``num_samples``
        ancestral recognition samples (Rao-Blackwellized: the last layer's probabilities are averaged).
        """
        layer = layer % self.num_layers
        if layer == 0:
            return self.encode(x).mean
        below = self.upward(x, num_samples)[0][layer - 1].z  # (S, B, H_{layer})
        return self.recognize(below, layer).mean.mean(0)

    @torch.no_grad()
    def code_distribution(self, x: torch.Tensor, layer: int = -1, num_samples: int = 500) -> torch.Tensor:
        """q(h_layer = s | x) for every state s of a hidden layer of at most 12 units: (B, 2^H), states in
        :func:`~aekit.latents.binary_states` order; Rao-Blackwellized over ``num_samples`` samples of the
        layer below (exact for the first layer)."""
        layer = layer % self.num_layers
        width = self.sizes[layer + 1]
        if width > 12:
            raise AekitError(f"the distribution over the states of a layer enumerates them, at most 12 units; "
                             f"layer {layer + 1} has {width}")
        below = x if layer == 0 else self.upward(x, num_samples)[0][layer - 1].z  # (B, D) or (S, B, H)
        q = self.recognize(below, layer)
        states = binary_states(width, x)  # (2^H, H)
        shape = (-1,) + (1,) * len(q.batch_shape) + (width,)
        probs = q.log_prob(states.reshape(shape)).exp()  # (2^H, [S,] B)
        if layer > 0:
            probs = probs.mean(1)
        return probs.T  # (B, 2^H)

    def encoder_filters(self) -> torch.Tensor:
        """Recognition weights of the first layer (H_1, D): row j is unit j's filter on x."""
        return self.recognition[0].weight.detach()

    def generative_filters(self) -> torch.Tensor:
        """Generative weights onto x (H_1, D): row j is what unit j of h_1 draws (Hinton et al. 1995, Fig. 3)."""
        return self.generative[0].weight.detach().T


_LOSSES = {"wake-sleep": HelmholtzMachine._wake_sleep_loss, "reweighted-wake-sleep": HelmholtzMachine._reweighted_loss,
           "elbo": HelmholtzMachine._elbo_loss}


def _bernoulli_table(logits: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """log ∏_j Bern(values_bj; σ(logits_aj)) for every pair: (A, B) = logits·valuesᵀ − Σ_j softplus(logits_aj)."""
    return logits @ values.T - torch.nn.functional.softplus(logits).sum(-1, keepdim=True)


def _float64_copy(model: HelmholtzMachine) -> HelmholtzMachine:
    return copy.deepcopy(model).double()


def build_helmholtz(cfg: ModelConfig, shape: DataShape) -> HelmholtzMachine:
    """The machine of ``--hidden-dims H1,…,HL`` on the data, trained by ``--algorithm``."""
    estimator = build_estimator(cfg, shape.data_dim) if cfg.algorithm == "elbo" else None
    return HelmholtzMachine(shape.data_dim, cfg.hidden_dims, algorithm=cfg.algorithm, iw_samples=cfg.iw_samples,
                            estimator=estimator, track_grad_variance=cfg.track_grad_variance)


def helmholtz_settings(cfg: ModelConfig) -> set[str]:
    """What helmholtz reads: layer sizes and algorithm; K with reweighted wake-sleep; the estimator with elbo."""
    from .vae import estimator_settings

    used = {"hidden_dims", "algorithm", "track_grad_variance"}
    if cfg.algorithm == "reweighted-wake-sleep":
        used.add("iw_samples")
    if cfg.algorithm == "elbo":
        used |= estimator_settings(cfg)
    return used

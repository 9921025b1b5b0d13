"""The autoencoder and the VAE family: ae, vae (β, KL schedules, free bits), cvae, iwae.

All four are one composition — encoder, latent, decoder likelihood, prior, objective — and differ
only in which parts they are given:

* ``ae``   point latent, no prior;   loss  −log p(x | z = f(x)).
* ``vae``  Gaussian q(z|x), N(0, I);  loss  −E_q[log p(x|z)] + β_t·KL(q ‖ p)  (L samples, free bits).
* ``cvae`` the vae with a one-hot label y fed to encoder and decoder: q(z|x,y), p(x|z,y), p(z).
* ``iwae`` the vae trained on −L_k, the k-sample importance-weighted bound (Burda et al. 2016).

The latent of the VAE family is a setting (``--latent gaussian | bernoulli | categorical``), and so
is the gradient estimator for the sampled z (``--estimator``, :mod:`aekit.estimators`): a discrete
VAE is ``vae --latent bernoulli --estimator score-function --baseline learned`` (NVIL), or
``--estimator gumbel-softmax`` (Jang et al. 2017), with the same objective, evaluation and figures.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Distribution

from ..capabilities import CORRUPTS_INPUT, ELBO, LOG_LIKELIHOOD, POSTERIOR, SAMPLE
from ..config import DataShape, ModelConfig
from ..errors import AekitError
from ..estimators import RELAXED, Estimator, GradientMoments, Reparameterization, build_estimator, resolve_estimator
from ..latents import PointLatent
from ..objectives import (KLSchedule, free_bits, importance_sampled_log_likelihood, kl_per_dimension, kl_term,
                          kl_with_form, log_mean_exp, sample_of, zero_value)
from ..priors import build_prior
from ..regularizers import CODE_ACTIVATIONS, Corruption, Penalty, build_corruption, build_penalties
from .parts import Decoder, Encoder, LossOutput, build_decoder, build_encoder

# Elements of decoder output per chunk when estimating log p(x) with many samples: bounds memory
# (2^24 float32 ≈ 64 MB) whatever k and the batch size are.
_LOGLIK_CHUNK_ELEMENTS = 1 << 22


class _Conditioning(nn.Module):
    """Turns labels into the one-hot vector the conditional models feed their networks."""

    def __init__(self, num_classes: int | None):
        super().__init__()
        self.num_classes = num_classes

    def cond(self, y: torch.Tensor | None) -> torch.Tensor | None:
        if self.num_classes is None:
            return None
        if y is None:
            raise AekitError("this conditional model needs labels y (e.g. --label for sampling)")
        return F.one_hot(y.long(), self.num_classes).float()


class Autoencoder(_Conditioning):
    """Deterministic autoencoder: z = f(x), p(x|z) a likelihood head, with optional regularizers.

    f = code activation ∘ encoder (identity or sigmoid). Per-example training loss (B,):

        −log p(x | z = f(x̃)) + Σ_k λ_k Ω_k(x̃, z),     x̃ ~ q(x̃|x) in training mode, x̃ = x otherwise.

    The decoder's target is always the clean x. Without a corruption and penalties this is the plain
    ``ae``: −log p(x | f(x)). ``corruption`` gives the denoising autoencoder (Vincent et al. 2008);
    ``penalties`` the sparse (λ‖z‖₁, or β Σ_j KL(ρ ‖ ρ̂_j)) and contractive (λ‖J_f(x̃)‖²_F, Rifai et al.
    2011) ones, taken at the input the encoder saw (see :mod:`aekit.regularizers`). The terms dict
    holds the reconstruction and each penalty unweighted, under its name.
    """

    base_capabilities: frozenset[str] = frozenset()
    selection_metric = "reconstruction"  # validation figure that picks the best weights

    def __init__(self, encoder: Encoder, decoder: Decoder, num_classes: int | None = None, *,
                 code_activation: nn.Module | None = None, corruption: Corruption | None = None,
                 penalties: tuple[Penalty, ...] = ()):
        super().__init__(num_classes)
        self.encoder, self.decoder = encoder, decoder
        self.code_activation = code_activation if code_activation is not None else nn.Identity()
        self.corruption = corruption  # None: the encoder sees the clean x
        self.penalties = tuple(penalties)

    @property
    def capabilities(self) -> frozenset[str]:
        """The class's own (``base_capabilities``), and ``corrupts_input`` when this model has a corruption."""
        return self.base_capabilities | ({CORRUPTS_INPUT} if self.corruption is not None else frozenset())

    def encode(self, x, y=None) -> torch.Tensor:
        return self.code_activation(self.encoder(x, self.cond(y)))

    def decode(self, z, y=None) -> Distribution:
        return self.decoder(z, self.cond(y))

    def embed(self, x, y=None) -> torch.Tensor:
        return self.encode(x, y)

    def reconstruct(self, x, y=None) -> torch.Tensor:
        return self.decode(self.encode(x, y), y).mean

    def _objective(self, x_in, x, y) -> LossOutput:
        """−log p(x | f(x_in)) + Σ weight·penalty, per example; terms unweighted."""
        z = self.encode(x_in, y)
        rec = -self.decode(z, y).log_prob(x)  # (B,): the target is the clean x
        total, terms = rec, {"reconstruction": rec}
        for penalty in self.penalties:
            value = penalty(x_in, z, self.encode)  # (B,); encode is applied to single rows by autograd penalties
            terms[penalty.name] = value
            total = total + penalty.weight * value
        return LossOutput(total, terms)

    def loss(self, x, y=None, step: int = 0) -> LossOutput:
        corrupt = self.training and self.corruption is not None
        return self._objective(self.corruption.corrupt(x) if corrupt else x, x, y)

    def evaluation_terms(self, x, y=None) -> dict[str, torch.Tensor]:
        """The clean reconstruction −log p(x | f(x)) and the penalties at x, per example (never corrupted)."""
        return self._objective(x, x, y).terms

    def encoder_filters(self) -> torch.Tensor | None:
        """The encoder's first-layer weights (H, D_in) when it begins with a fully connected layer on x
        (an MLP body, or a single layer); None for a conv body. Row h is unit h's filter."""
        for module in self.encoder.modules():
            if next(module.parameters(recurse=False), None) is not None:  # the first layer with weights
                return module.weight.detach() if isinstance(module, nn.Linear) else None
        return None

    def sample(self, n: int, y=None) -> torch.Tensor:
        raise AekitError("a plain autoencoder has no prior p(z) to sample from; train a vae to generate")

    def log_likelihood(self, x, y=None, num_samples: int = 1000) -> torch.Tensor:
        raise AekitError("a plain autoencoder defines no likelihood p(x); train a vae for log-likelihoods")

    def forward(self, x, y=None, step: int = 0) -> LossOutput:
        # DistributedDataParallel synchronizes gradients of what forward computes: the loss.
        return self.loss(x, y, step)


class VAE(Autoencoder):
    """Variational autoencoder: q(z|x) a latent head, p(z) a prior, p(x|z) a likelihood head.

    q(z|x) is Gaussian, factorized Bernoulli or grouped categorical (:mod:`aekit.latents`).

    ``objective="elbo"``: per-example loss −(1/L) Σ_l log p(x|z_l) + β_t·KL(q(z|x) ‖ p(z)), the KL in
    closed form (Monte Carlo where none exists), with free bits λ when λ > 0.
    ``objective="iwae"``: per-example loss −L_k(x) (see ``log_weights``).
    ``estimator``: how the gradient gets through the sampled z (default: reparameterization). The
    loss's value is always the objective on an exact sample of q, so the reported reconstruction and
    KL are honest whatever the estimator; a relaxed estimator (gumbel-softmax) decodes the relaxed
    sample for the gradient and the discrete sample behind it for the value (one more decoder pass).
    ``corruption`` (as for :class:`Autoencoder`): in training the encoder sees x̃ ~ q(x̃|x) and the
    likelihood scores the clean x, −E_q(z|x̃)[log p(x|z)] + β_t·KL(q(z|x̃) ‖ p(z)); evaluation is clean.
    """

    selection_metric = "neg_elbo"

    def __init__(self, encoder: Encoder, decoder: Decoder, prior: nn.Module, *, objective: str = "elbo",
                 kl_schedule: KLSchedule = KLSchedule(), free_bits: float = 0.0, mc_samples: int = 1,
                 iw_samples: int = 5, num_classes: int | None = None, estimator: Estimator | None = None,
                 track_grad_variance: bool = False, corruption: Corruption | None = None):
        super().__init__(encoder, decoder, num_classes, corruption=corruption)
        self.prior_module = prior
        self.objective = objective
        self.kl_schedule = kl_schedule
        self.free_bits = free_bits
        self.mc_samples = mc_samples
        self.iw_samples = iw_samples
        self.estimator = estimator if estimator is not None else Reparameterization()
        self.grad_moments = (GradientMoments(sum(p.numel() for p in self.gradient_parameters()))
                             if track_grad_variance else None)

    base_capabilities = frozenset({SAMPLE, LOG_LIKELIHOOD, ELBO, POSTERIOR})

    def prior(self) -> Distribution:
        return self.prior_module()

    def encode(self, x, y=None) -> Distribution:
        return self.encoder(x, self.cond(y))

    def embed(self, x, y=None) -> torch.Tensor:
        return self.encode(x, y).mean  # posterior means (unit probabilities for discrete codes)

    @staticmethod
    def _code(qz: Distribution) -> torch.Tensor:
        """The code a reconstruction decodes: the posterior mean, or the most probable discrete code."""
        return qz.mode if hasattr(qz, "discretize") else qz.mean

    def reconstruct(self, x, y=None) -> torch.Tensor:
        return self.decode(self._code(self.encode(x, y)), y).mean

    def log_px(self, px: Distribution, x: torch.Tensor) -> torch.Tensor:
        """log p(x|z) of the data, shape px's batch shape. The one place every objective scores x, so a model
        that sees x differently (MIWAE: only the observed entries) changes this, not the objectives."""
        return px.log_prob(x)

    def elbo_terms(self, x, y=None, num_samples: int = 1):
        """Reconstruction −E_q[log p(x|z)] (B,), KL (B,), and q(z|x); the ELBO is −(rec + KL)."""
        qz = self.encode(x, y)
        z = sample_of(qz, (num_samples,))  # (L, B, J)
        rec = -self.log_px(self.decode(z, y), x).mean(0)  # (B,)
        return rec, kl_term(qz, self.prior(), z), qz

    def log_weights(self, x, y=None, num_samples: int = 1, qz: Distribution | None = None) -> torch.Tensor:
        """log w_i = log p(x|z_i) + log p(z_i) − log q(z_i|x), z_i ~ q(z|x): shape (k, B). ``qz``: q(z|x) if known."""
        if qz is None:
            qz = self.encode(x, y)
        z = sample_of(qz, (num_samples,))  # (k, B, J)
        return self.log_px(self.decode(z, y), x) + self.prior().log_prob(z) - qz.log_prob(z)

    def loss(self, x, y=None, step: int = 0) -> LossOutput:
        if self.objective == "iwae":
            return self._iwae_loss(x, y, step)
        corrupt = self.training and self.corruption is not None  # restoration: the encoder sees x̃, x is scored
        qz = self.encode(self.corruption.corrupt(x) if corrupt else x, y)
        draw = self.estimator.draw(qz, (self.mc_samples,), step)  # z (L, B, J)
        log_px = self.log_px(self.decode(draw.z, y), x)  # (L, B)
        rec = -log_px.mean(0)  # (B,)
        terms = {"reconstruction": rec}
        if draw.relaxed:  # the value at the discrete sample, the gradient of the relaxed one
            with torch.no_grad():
                rec_discrete = -self.log_px(self.decode(draw.hard, y), x).mean(0)
            terms = {"reconstruction": rec_discrete + zero_value(rec), "relaxed_reconstruction": rec.detach()}
            rec = terms["reconstruction"]
        pz = self.prior()
        kl, closed_form = kl_with_form(qz, pz, draw.hard)
        kl_penalty = free_bits(kl_per_dimension(qz, pz), self.free_bits) if self.free_bits > 0 else kl
        beta = self.kl_schedule(step)
        total = rec + beta * kl_penalty
        terms["kl"] = kl
        if self.estimator.uses_score:
            log_q = qz.log_prob(draw.hard)  # (L, B)
            signal = log_px  # the KL's gradient is taken in closed form; a Monte Carlo KL joins the signal
            if not closed_form:
                signal = log_px - beta * (log_q - pz.log_prob(draw.hard))
            total, extra = self.estimator.surrogate(total, signal=signal, log_q=log_q, x=x, cond=self.cond(y))
            terms.update(extra)
        terms.update(self._reported(step, rec))
        return LossOutput(total, terms)

    def _iwae_loss(self, x, y, step: int) -> LossOutput:
        qz = self.encode(x, y)
        z = self.estimator.draw(qz, (self.iw_samples,), step).z  # (k, B, J)
        log_w = self.log_px(self.decode(z, y), x) + self.prior().log_prob(z) - qz.log_prob(z)  # (k, B)
        bound = log_mean_exp(log_w, 0)
        total = self.estimator.iw_surrogate(log_w, qz.log_prob(z)) if self.estimator.uses_score else -bound
        terms = {"iw_bound": bound, "elbo": log_w.mean(0)}
        terms.update(self._reported(step, bound))
        return LossOutput(total, terms)

    def _reported(self, step: int, like: torch.Tensor) -> dict[str, torch.Tensor]:
        """The estimator's scalars (temperature) and the gradient's running log-variance, as (B,) terms."""
        values = dict(self.estimator.report(step))
        if self.grad_moments is not None:
            values["grad_log_variance"] = self.grad_moments.log_variance()
        return {k: torch.full_like(like, v).detach() for k, v in values.items()}

    def gradient_parameters(self) -> list[nn.Parameter]:
        """The parameters whose gradient variance the estimators are compared on: the encoder's."""
        return list(self.encoder.parameters())

    def after_step(self, step: int) -> None:
        """After each optimizer step: the estimator's running statistics, the gradient's moments."""
        self.estimator.after_step(step)
        if self.grad_moments is not None:
            self.grad_moments.update(self.gradient_parameters())

    def evaluation_terms(self, x, y=None) -> dict[str, torch.Tensor]:
        """The true ELBO's parts (β = 1, no free bits), per example."""
        rec, kl, _ = self.elbo_terms(x, y, 1)
        return {"reconstruction": rec, "kl": kl, "neg_elbo": rec + kl}

    @torch.no_grad()
    def log_likelihood(self, x, y=None, num_samples: int = 1000) -> torch.Tensor:
        """Importance-sampled log p(x) ≈ log (1/k) Σ_i p(x, z_i)/q(z_i|x) with k = num_samples, (B,).

        The encoder runs once; samples are drawn in chunks that bound memory; chunks are merged with
        logsumexp, so the result equals the one-shot estimate and never overflows.
        """
        qz = self.encode(x, y)
        return importance_sampled_log_likelihood(lambda k: self.log_weights(x, y, k, qz), x, num_samples,
                                                 _LOGLIK_CHUNK_ELEMENTS)

    @torch.no_grad()
    def exact_log_likelihood(self, x, y=None) -> torch.Tensor:
        """log p(x) = log Σ_z p(z) p(x|z) by enumerating every code z of a discrete latent, (B,).

        Up to 2^20 codes (K ≤ 20 binary units, or K^N ≤ 2^20 categorical codes); a one-line error beyond,
        and for a Gaussian latent. Decoder passes in chunks; the sum by logsumexp in float64.
        """
        pz = self.prior()
        if not hasattr(pz, "states"):
            raise AekitError("exact log p(x) enumerates a discrete latent (--latent bernoulli | categorical); "
                             "for a Gaussian latent use log_likelihood(x, num_samples=k)")
        states = pz.states()  # (S, J)
        log_pz = pz.log_prob(states)  # (S,)
        batch, dim = x.shape[0], x.shape[-1]
        chunk = max(1, _LOGLIK_CHUNK_ELEMENTS // max(1, batch * dim))
        running = torch.full((batch,), -math.inf, device=x.device, dtype=torch.float64)
        for start in range(0, len(states), chunk):
            z = states[start:start + chunk, None, :]  # (S_c, 1, J): one decoder pass per code
            if self.num_classes is not None:  # the label enters the decoder: one pass per (code, example)
                z = z.expand(-1, batch, -1)
            log_joint = self.log_px(self.decode(z, y), x) + log_pz[start:start + chunk, None]  # (S_c, B)
            running = torch.logaddexp(running, torch.logsumexp(log_joint.double(), 0))
        return running.to(x.dtype)

    @torch.no_grad()
    def sample(self, n: int, y=None) -> torch.Tensor:
        """x ~ p(x|z), z ~ p(z), shown as the decoder mean (n, D); y (n,) labels for a cvae."""
        z = self.prior().sample((n,))  # (n, J)
        return self.decode(z, y).mean


def build_ae(cfg: ModelConfig, shape: DataShape) -> Autoencoder:
    """ae, dae, sparse-ae, cae: one Autoencoder with the regularizers the config asks for.

    An MLP with no hidden layers (``hidden_dims=()``) is a single-layer encoder z = f(Wx + b); with a
    sigmoid code that is the contractive autoencoder of Rifai et al., whose penalty has a closed form.
    """
    single_layer = cfg.body == "mlp" and not cfg.hidden_dims
    if single_layer:
        from .linear import IdentityBody  # imported here: linear.py imports this module

        encoder = Encoder(IdentityBody(shape.data_dim), PointLatent(shape.data_dim, cfg.latent_dim))
    else:
        encoder = build_encoder(cfg, shape, "point")
    sigmoid_layer = encoder.head.proj if single_layer and cfg.code_activation == "sigmoid" else None
    penalties = build_penalties(sparsity=cfg.sparsity, sparsity_weight=cfg.sparsity_weight,
                                sparsity_target=cfg.sparsity_target, contractive_weight=cfg.contractive_weight,
                                sigmoid_layer=sigmoid_layer)
    return Autoencoder(encoder, build_decoder(cfg, shape), code_activation=CODE_ACTIVATIONS[cfg.code_activation](),
                       corruption=build_corruption(cfg.corruption, cfg.corruption_level, shape), penalties=penalties)


def build_vae(cfg: ModelConfig, shape: DataShape, *, objective="elbo", conditional=False) -> VAE:
    num_classes = shape.num_classes if conditional else None
    if conditional and not num_classes:
        raise AekitError("cvae needs labels, but this data set has none; pass --labels FILE or choose labelled data")
    cond_dim = num_classes or 0
    schedule = KLSchedule(cfg.kl_schedule, cfg.beta, cfg.warmup_steps, cfg.cycle_steps)
    return VAE(
        build_encoder(cfg, shape, cfg.latent, cond_dim), build_decoder(cfg, shape, cond_dim),
        build_prior(cfg.prior, cfg.latent, cfg.latent_dim, cfg.groups), objective=objective, kl_schedule=schedule,
        free_bits=cfg.free_bits, mc_samples=cfg.mc_samples, iw_samples=cfg.iw_samples, num_classes=num_classes,
        estimator=build_estimator(cfg, shape.data_dim + cond_dim), track_grad_variance=cfg.track_grad_variance,
        corruption=build_corruption(cfg.corruption, cfg.corruption_level, shape),
    )


# ----------------------------------------------------------------------------- settings the vae family reads
def estimator_settings(cfg: ModelConfig) -> set[str]:
    """The estimator's settings, each only where it acts: baselines with the score function, the
    temperature schedule with the Gumbel estimators."""
    estimator = resolve_estimator(cfg.latent, cfg.estimator)
    used = {"estimator", "track_grad_variance"}
    if estimator == "score-function":
        used |= {"baseline", "variance_normalization"}
        if cfg.baseline in ("moving-average", "learned") or cfg.variance_normalization:
            used.add("baseline_decay")
        if cfg.baseline == "learned":
            used.add("baseline_hidden")
    if estimator in RELAXED:
        used |= {"temperature", "temperature_min", "temperature_decay", "temperature_interval"}
    return used


def latent_settings(cfg: ModelConfig) -> set[str]:
    """The latent and its estimator: ``--groups`` only with a categorical latent."""
    return {"latent"} | ({"groups"} if cfg.latent == "categorical" else set()) | estimator_settings(cfg)

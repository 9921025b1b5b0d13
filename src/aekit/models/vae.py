"""The autoencoder and the VAE family: ae, vae (β, KL schedules, free bits), cvae, iwae.

All four are one composition — encoder, latent, decoder likelihood, prior, objective — and differ
only in which parts they are given:

* ``ae``   point latent, no prior;   loss  −log p(x | z = f(x)).
* ``vae``  Gaussian q(z|x), N(0, I);  loss  −E_q[log p(x|z)] + β_t·KL(q ‖ p)  (L samples, free bits).
* ``cvae`` the vae with a one-hot label y fed to encoder and decoder: q(z|x,y), p(x|z,y), p(z).
* ``iwae`` the vae trained on −L_k, the k-sample importance-weighted bound (Burda et al. 2016).
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
from ..latents import PointLatent
from ..objectives import KLSchedule, free_bits, kl_per_dimension, kl_term, log_mean_exp
from ..priors import PRIORS
from ..regularizers import CODE_ACTIVATIONS, Corruption, Penalty, build_corruption, build_penalties
from .parts import Decoder, Encoder, LossOutput, build_decoder, build_encoder

# Elements of decoder output per chunk when estimating log p(x) with many samples: bounds memory
# (2^24 float32 ≈ 64 MB) whatever k and the batch size are.
_LOGLIK_CHUNK_ELEMENTS = 1 << 24


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
        return frozenset({CORRUPTS_INPUT}) if self.corruption is not None else frozenset()

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
    """Variational autoencoder: q(z|x) Gaussian, p(z) a prior, p(x|z) a likelihood head.

    ``objective="elbo"``: per-example loss −(1/L) Σ_l log p(x|z_l) + β_t·KL(q(z|x) ‖ p(z)), the KL in
    closed form (Monte Carlo where none exists), with free bits λ when λ > 0.
    ``objective="iwae"``: per-example loss −L_k(x) (see ``log_weights``).
    ``corruption`` (as for :class:`Autoencoder`): in training the encoder sees x̃ ~ q(x̃|x) and the
    likelihood scores the clean x, −E_q(z|x̃)[log p(x|z)] + β_t·KL(q(z|x̃) ‖ p(z)); evaluation is clean.
    """

    selection_metric = "neg_elbo"

    def __init__(self, encoder: Encoder, decoder: Decoder, prior: nn.Module, *, objective: str = "elbo",
                 kl_schedule: KLSchedule = KLSchedule(), free_bits: float = 0.0, mc_samples: int = 1,
                 iw_samples: int = 5, num_classes: int | None = None, corruption: Corruption | None = None):
        super().__init__(encoder, decoder, num_classes, corruption=corruption)
        self.prior_module = prior
        self.objective = objective
        self.kl_schedule = kl_schedule
        self.free_bits = free_bits
        self.mc_samples = mc_samples
        self.iw_samples = iw_samples

    @property
    def capabilities(self) -> frozenset[str]:
        return frozenset({SAMPLE, LOG_LIKELIHOOD, ELBO, POSTERIOR}) | super().capabilities

    def prior(self) -> Distribution:
        return self.prior_module()

    def encode(self, x, y=None) -> Distribution:
        return self.encoder(x, self.cond(y))

    def embed(self, x, y=None) -> torch.Tensor:
        return self.encode(x, y).mean  # posterior means

    def reconstruct(self, x, y=None) -> torch.Tensor:
        return self.decode(self.encode(x, y).mean, y).mean

    def elbo_terms(self, x, y=None, num_samples: int = 1, x_in=None):
        """Reconstruction −E_q[log p(x|z)] (B,), KL (B,), and q(z|x); the ELBO is −(rec + KL).

        ``x_in``: what the encoder sees when it is not x (a corrupted x̃); the likelihood scores x.
        """
        qz = self.encode(x if x_in is None else x_in, y)
        z = qz.rsample((num_samples,))  # (L, B, J)
        rec = -self.decode(z, y).log_prob(x).mean(0)  # (B,)
        return rec, kl_term(qz, self.prior(), z), qz

    def log_weights(self, x, y=None, num_samples: int = 1) -> torch.Tensor:
        """log w_i = log p(x|z_i) + log p(z_i) − log q(z_i|x), z_i ~ q(z|x): shape (k, B)."""
        qz = self.encode(x, y)
        z = qz.rsample((num_samples,))  # (k, B, J)
        return self.decode(z, y).log_prob(x) + self.prior().log_prob(z) - qz.log_prob(z)

    def loss(self, x, y=None, step: int = 0) -> LossOutput:
        if self.objective == "iwae":
            log_w = self.log_weights(x, y, self.iw_samples)  # (k, B)
            bound = log_mean_exp(log_w, 0)
            return LossOutput(-bound, {"iw_bound": bound, "elbo": log_w.mean(0)})
        corrupt = self.training and self.corruption is not None
        rec, kl, qz = self.elbo_terms(x, y, self.mc_samples, self.corruption.corrupt(x) if corrupt else None)
        kl_penalty = free_bits(kl_per_dimension(qz, self.prior()), self.free_bits) if self.free_bits > 0 else kl
        beta = self.kl_schedule(step)
        return LossOutput(rec + beta * kl_penalty, {"reconstruction": rec, "kl": kl})

    def evaluation_terms(self, x, y=None) -> dict[str, torch.Tensor]:
        """The true ELBO's parts (β = 1, no free bits), per example."""
        rec, kl, _ = self.elbo_terms(x, y, 1)
        return {"reconstruction": rec, "kl": kl, "neg_elbo": rec + kl}

    @torch.no_grad()
    def log_likelihood(self, x, y=None, num_samples: int = 1000) -> torch.Tensor:
        """Importance-sampled log p(x) ≈ log (1/k) Σ_i p(x, z_i)/q(z_i|x) with k = num_samples, (B,).

        Samples are drawn in chunks that bound memory; chunks are merged with logsumexp, so the result
        equals the one-shot estimate and never overflows.
        """
        chunk = max(1, _LOGLIK_CHUNK_ELEMENTS // max(1, x.shape[0] * x.shape[-1]))
        running = torch.full((x.shape[0],), -math.inf, device=x.device, dtype=torch.float64)
        done = 0
        while done < num_samples:
            k = min(chunk, num_samples - done)
            log_w = self.log_weights(x, y, k).double()  # (k, B)
            running = torch.logaddexp(running, torch.logsumexp(log_w, 0))
            done += k
        return (running - math.log(num_samples)).float()

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
        build_encoder(cfg, shape, "gaussian", cond_dim), build_decoder(cfg, shape, cond_dim),
        PRIORS[cfg.prior](cfg.latent_dim), objective=objective, kl_schedule=schedule,
        free_bits=cfg.free_bits, mc_samples=cfg.mc_samples, iw_samples=cfg.iw_samples, num_classes=num_classes,
        corruption=build_corruption(cfg.corruption, cfg.corruption_level, shape),
    )

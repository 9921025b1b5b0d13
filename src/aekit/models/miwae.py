"""MIWAE: the importance-weighted autoencoder trained on data with missing entries (Mattei & Frellsen 2019).

The model is the VAE's composition (encoder q(z|x), prior p(z), factorized decoder p(x|z)); only
what the data offers changes. For a row x with observed coordinates o, the encoder reads x̃, x with
its missing entries set to 0, and the bound is the IWAE bound on the observed likelihood (their
eq. 4):

    L_K(x_o) = E[ log (1/K) Σ_k p(x_o | z_k) p(z_k) / q(z_k | x̃) ],   z_k ~ q(z | x̃),
    log p(x_o | z) = Σ_{d∈o} log p(x_d | z)                               (missing entries masked out)

L_K ≤ log p(x_o) and tightens with K (Burda et al. 2016), so maximizing it is maximum likelihood
on the observed entries, without imputing them first. Imputation then uses the trained model
(``aekit impute``, :func:`aekit.impute.impute`, self-normalized importance sampling by default).
With nothing missing MIWAE is exactly the ``iwae`` kind.
"""

from __future__ import annotations

import torch

from ..capabilities import MISSING_DATA
from ..config import DataShape, ModelConfig
from ..impute import MaskedLikelihood, split_missing
from ..objectives import log_mean_exp
from .vae import VAE, build_vae


class MIWAE(VAE):
    """A VAE whose encoder reads zero-filled rows and whose likelihood leaves missing entries out.

    Only the two places the data enters change (``encode`` and ``log_px``); the ELBO, the IWAE bound it
    trains on and the importance-sampled likelihood are the VAE's own."""

    base_capabilities = VAE.base_capabilities | {MISSING_DATA}
    selection_metric = "neg_iw_bound"

    def encode(self, x, y=None):
        """q(z | x̃), x̃ = x with NaN entries set to 0."""
        return super().encode(split_missing(x)[0], y)

    def log_px(self, px, x):
        """log p(x_o | z) = Σ_{d∈o} log p(x_d | z): the missing entries leave the likelihood."""
        x0, observed = split_missing(x)
        return MaskedLikelihood(px, observed).log_prob(x0)

    def evaluation_terms(self, x, y=None) -> dict[str, torch.Tensor]:
        """The observed-entry ELBO's parts and −L_K with the training K (what selects the best weights)."""
        terms = super().evaluation_terms(x, y)
        terms["neg_iw_bound"] = -log_mean_exp(self.log_weights(x, y, self.iw_samples), 0)
        return terms


def build_miwae(cfg: ModelConfig, shape: DataShape) -> MIWAE:
    vae = build_vae(cfg, shape, objective="iwae")
    return MIWAE(vae.encoder, vae.decoder, vae.prior_module, objective="iwae", iw_samples=cfg.iw_samples)

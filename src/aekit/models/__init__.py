"""One short file per family of models; each composes the shared parts.

``build_model(model_cfg, shape)`` looks the kind up in a registry (no if-chains on names).
"""

from __future__ import annotations

from ..config import DataShape, ModelConfig
from ..errors import unknown_choice
from ..priors import PRIORS
from .vae import MODEL_BUILDERS, MODEL_HELP, VAE, Autoencoder  # noqa: F401


def build_model(cfg: ModelConfig, shape: DataShape):
    if cfg.kind not in MODEL_BUILDERS:
        raise unknown_choice("model", cfg.kind, MODEL_BUILDERS)
    if cfg.prior not in PRIORS:
        raise unknown_choice("prior", cfg.prior, PRIORS)
    return MODEL_BUILDERS[cfg.kind](cfg, shape)

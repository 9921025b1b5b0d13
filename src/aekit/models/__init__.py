"""One short file per family of models; each composes the shared parts.

``build_model(model_cfg, shape)`` looks the kind up in a registry (no if-chains on names).
Models solved by a procedure other than gradient descent (closed form, EM, contrastive divergence)
also register that procedure in ``FIT_PROCEDURES``: ``fit(model, x_train, run_cfg, progress)`` fills in
the freshly built ``model`` and returns it.
Models whose gradient training starts from an initialization procedure (layer-wise RBM
pretraining) register it in ``INITIALIZERS``: ``init(model, x_train, run_cfg, progress)``.
``KIND_DEFAULTS`` holds the settings a kind needs unless the user says otherwise, by config section;
``TRAIN_DEFAULTS`` the training settings (an RBM's CD learning rate is not Adam's).
"""

from __future__ import annotations

from ..config import DataShape, ModelConfig
from ..errors import AekitError, unknown_choice
from ..priors import PRIORS
from .linear import build_linear_ae, build_ppca, fit_pca, fit_ppca
from .vae import MODEL_BUILDERS as _VAE_BUILDERS
from .vae import MODEL_HELP as _VAE_HELP
from .vae import VAE, Autoencoder  # noqa: F401


# rbm.py imports scikit-learn (for its estimator face), which takes seconds: import it only when used.
def _build_rbm(cfg, shape):
    from .rbm import build_rbm
    return build_rbm(cfg, shape)


def _fit_rbm(model, x, run_cfg, progress=True):
    from .rbm import fit_rbm
    return fit_rbm(model, x, run_cfg, progress)


def _build_deep_ae(cfg, shape):
    from .deep_ae import build_deep_ae
    return build_deep_ae(cfg, shape)


def _pretrain_deep_ae(model, x, run_cfg, progress=True):
    from .deep_ae import pretrain_deep_ae
    return pretrain_deep_ae(model, x, run_cfg, progress)


MODEL_BUILDERS = {
    **_VAE_BUILDERS,
    "linear-ae": build_linear_ae,
    "pca": build_linear_ae,
    "ppca": build_ppca,
    "dae": _VAE_BUILDERS["ae"],
    "sparse-ae": _VAE_BUILDERS["ae"],
    "cae": _VAE_BUILDERS["ae"],
    "rbm": _build_rbm,
    "deep-ae": _build_deep_ae,
}
MODEL_HELP = {
    **_VAE_HELP,
    "linear-ae": "linear autoencoder, squared error, gradient-trained (learns the PCA subspace)",
    "pca": "the linear autoencoder solved in closed form (top-d eigenvectors)",
    "ppca": "probabilistic PCA, closed-form maximum likelihood or EM (--method em)",
    "dae": "denoising ae: corrupted input, clean target (--corruption masking | salt-pepper | gaussian)",
    "sparse-ae": "sparse ae: sigmoid code, KL(rho || mean activation) penalty (--sparsity kl | l1)",
    "cae": "contractive ae: penalty on the encoder Jacobian's Frobenius norm (--contractive-weight)",
    "rbm": "restricted Boltzmann machine, CD-k / PCD (--cd-steps, --persistent); --likelihood = visible units",
    "deep-ae": "deep autoencoder (Hinton & Salakhutdinov 2006), --pretrain rbm for layer-wise RBM pretraining",
}
FIT_PROCEDURES = {"pca": fit_pca, "ppca": fit_ppca, "rbm": _fit_rbm}
INITIALIZERS = {"deep-ae": _pretrain_deep_ae}
KIND_DEFAULTS = {
    "linear-ae": {"likelihood": "gaussian"},
    "pca": {"likelihood": "gaussian"},
    "ppca": {"likelihood": "gaussian"},
    "dae": {"corruption": "masking", "corruption_level": 0.25},
    "sparse-ae": {"code_activation": "sigmoid", "sparsity": "kl", "sparsity_target": 0.05},
    "cae": {"code_activation": "sigmoid", "contractive_weight": 0.1},
    "rbm": {"latent_dim": 500},
    "deep-ae": {"hidden_dims": (1000, 500, 250), "latent_dim": 30, "likelihood": "bernoulli"},
}
TRAIN_DEFAULTS = {
    # Hinton's practical guide (2010): CD learning rate 0.1 on batch means, mini-batches of 100
    "rbm": {"lr": 0.1, "batch_size": 100, "epochs": 10},
}
FIXED_LIKELIHOOD = {"linear-ae", "pca", "ppca"}  # their likelihood is part of the model's definition
# The autoencoder regularizers act on a deterministic code; elsewhere they would be silently ignored.
AE_KINDS = {"ae", "dae", "sparse-ae", "cae"}
AE_REGULARIZER_SETTINGS = {"corruption": "none", "code_activation": "identity", "sparsity": "none",
                           "contractive_weight": 0.0}


def build_model(cfg: ModelConfig, shape: DataShape):
    if cfg.kind not in MODEL_BUILDERS:
        raise unknown_choice("model", cfg.kind, MODEL_BUILDERS)
    if cfg.prior not in PRIORS:
        raise unknown_choice("prior", cfg.prior, PRIORS)
    if cfg.kind in FIXED_LIKELIHOOD and cfg.likelihood != "gaussian":
        raise AekitError(f"{cfg.kind} is defined with a Gaussian likelihood (squared error); drop --likelihood")
    if cfg.kind in FIXED_LIKELIHOOD and not 1 <= cfg.latent_dim < shape.data_dim:  # the linear models
        raise AekitError(f"latent_dim must be below the data dimension for {cfg.kind}: "
                         f"1 <= latent_dim < {shape.data_dim}, got {cfg.latent_dim}")
    if cfg.kind not in AE_KINDS:
        used = [k for k, off in AE_REGULARIZER_SETTINGS.items() if getattr(cfg, k) != off]
        if used:
            raise AekitError(f"the settings {', '.join(used)} apply to the autoencoders (ae, dae, sparse-ae, cae), not to "
                             f"{cfg.kind}; drop them or train an ae")
    return MODEL_BUILDERS[cfg.kind](cfg, shape)

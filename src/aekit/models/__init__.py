"""One short file per family of models; each composes the shared parts.

The table of kinds is :data:`SPECS`: one :class:`~aekit.models.registry.ModelSpec` per kind, saying
how the model is built, how it is trained (the gradient trainer, or a procedure of its own: closed
form, EM, contrastive divergence), its default settings, and which settings it reads — every other
setting is refused (:func:`~aekit.models.registry.check_settings`). ``build_model(model_cfg, shape)``
looks the kind up there (no if-chains on names).
"""

from __future__ import annotations

from ..config import DataShape, ModelConfig, RunConfig
from ..errors import AekitError, unknown_choice
from ..priors import PRIORS
from .linear import build_linear_ae, build_ppca, fit_pca, fit_ppca, initialize_linear_ae
from .registry import (CD_TRAINING, CONDITIONS, GRADIENT_TRAINING, PRESENTATION, ModelSpec, body_settings,
                       check_settings, combine, corruption_settings, kl_settings, likelihood_settings,
                       regularizer_settings)
from .vae import VAE, Autoencoder, build_ae, build_vae, latent_settings


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


def _build_miwae(cfg, shape):
    from .miwae import build_miwae  # miwae imports aekit.impute, which imports this package
    return build_miwae(cfg, shape)


# vqvae helper: the vq-vae and the prior over its codes (models/vqvae.py)
def _build_vqvae(cfg, shape):
    from .vqvae import build_vqvae
    return build_vqvae(cfg, shape)


def _vqvae_settings(cfg):
    from .vqvae import vqvae_settings
    return vqvae_settings(cfg)


def _initialize_vqvae(model, x, run_cfg, progress=True):
    from .vqvae import initialize_vqvae
    return initialize_vqvae(model, x, run_cfg, progress)


def _build_prior(cfg, shape):
    from .vqvae import build_prior
    return build_prior(cfg, shape)


def _prior_settings(cfg):
    from .vqvae import prior_model_settings
    return prior_model_settings(cfg)


def _initialize_prior(model, x, run_cfg, progress=True):
    from .vqvae import initialize_prior
    return initialize_prior(model, x, run_cfg, progress)


def _ppca_settings(cfg: ModelConfig) -> set[str]:
    return {"method"} | ({"max_iter", "tol"} if cfg.method == "em" else set())


def _ppca_training(cfg: ModelConfig) -> frozenset[str]:
    # EM starts from a random W (the seed); the closed form has nothing random.
    return PRESENTATION | ({"seed"} if cfg.method == "em" else set())


def _deep_ae_settings(cfg: ModelConfig) -> set[str]:
    return {"hidden_dims", "pretrain"} | ({"pretrain_epochs"} if cfg.pretrain == "rbm" else set())


def _build_helmholtz(cfg, shape):
    from .helmholtz import build_helmholtz
    return build_helmholtz(cfg, shape)


def _helmholtz_settings(cfg):
    from .helmholtz import helmholtz_settings
    return helmholtz_settings(cfg)


_AE = combine(body_settings, likelihood_settings, regularizer_settings)
_VAE = combine(body_settings, likelihood_settings, kl_settings, latent_settings, corruption_settings)  # corruption: restoration
_LINEAR_GAUSSIAN = {"likelihood": "gaussian"}

SPECS: dict[str, ModelSpec] = {spec.kind: spec for spec in (
    ModelSpec("ae", "deterministic autoencoder, loss -log p(x|z)", build_ae, _AE),
    ModelSpec("dae", "denoising ae: corrupted input, clean target (--corruption masking | salt-pepper | gaussian | "
              "block | downsample:F | grayscale)",
              build_ae, _AE, defaults={"corruption": "masking", "corruption_level": 0.25}),
    ModelSpec("sparse-ae", "sparse ae: sigmoid code, KL(rho || mean activation) penalty (--sparsity kl | l1)",
              build_ae, _AE, defaults={"code_activation": "sigmoid", "sparsity": "kl", "sparsity_target": 0.05}),
    ModelSpec("cae", "contractive ae: penalty on the encoder Jacobian's Frobenius norm (--contractive-weight)",
              build_ae, _AE, defaults={"code_activation": "sigmoid", "contractive_weight": 0.1}),
    ModelSpec("vae", "variational autoencoder (beta, KL warm-up / cyclical, free bits, L samples)", build_vae, _VAE),
    ModelSpec("cvae", "conditional VAE: one-hot label into encoder and decoder",
              lambda cfg, shape: build_vae(cfg, shape, conditional=True), _VAE),
    ModelSpec("iwae", "importance-weighted autoencoder (k-sample bound as objective, --iw-samples)",
              lambda cfg, shape: build_vae(cfg, shape, objective="iwae"),
              combine(body_settings, likelihood_settings, latent_settings, {"prior", "iw_samples"})),
    ModelSpec("linear-ae", "linear autoencoder, squared error, gradient-trained (learns the PCA subspace)",
              build_linear_ae, combine(), defaults=_LINEAR_GAUSSIAN,
              # From an orthonormal, centred start (initialize_linear_ae), digits d = 8 reaches angle
              # 0.013-0.039 rad and the PCA residual to 7e-5 in 1640 Adam steps (benchmarks/linear_ae.py);
              # MNIST needs its own: --batch-size 128 --lr 1e-2 --epochs 5 (NOTES-ppca.md)
              train_defaults={"lr": 5e-2, "batch_size": 32, "lr_schedule": "cosine", "epochs": 40},
              initialize=initialize_linear_ae),
    ModelSpec("pca", "the linear autoencoder solved in closed form (top-d eigenvectors)", build_linear_ae, combine(),
              train_settings=PRESENTATION, defaults=_LINEAR_GAUSSIAN, fit=fit_pca),
    ModelSpec("ppca", "probabilistic PCA, closed-form maximum likelihood or EM (--method em)", build_ppca,
              combine(_ppca_settings), train_settings=_ppca_training,
              # EM's tol is the Aitken estimate of the relative gap to the maximum: 1e-12 puts train and
              # test log-likelihoods within 1e-8 of the closed form (MNIST, q = 2..100; models/ppca.py)
              defaults={**_LINEAR_GAUSSIAN, "tol": 1e-12}, fit=fit_ppca),
    ModelSpec("rbm", "restricted Boltzmann machine, CD-k / PCD (--cd-steps, --persistent); --likelihood = visible units",
              _build_rbm, combine({"likelihood", "cd_steps", "persistent"}), train_settings=CD_TRAINING,
              defaults={"latent_dim": 500},
              # Hinton's practical guide (2010): CD learning rate 0.1 on batch means, mini-batches of 100
              train_defaults={"lr": 0.1, "batch_size": 100, "epochs": 10}, fit=_fit_rbm, resamples_data=True),
    ModelSpec("deep-ae", "deep autoencoder (Hinton & Salakhutdinov 2006), --pretrain rbm for layer-wise RBM pretraining",
              _build_deep_ae, combine(likelihood_settings, _deep_ae_settings),
              defaults={"hidden_dims": (1000, 500, 250), "latent_dim": 30, "likelihood": "bernoulli"},
              initialize=_pretrain_deep_ae),
    ModelSpec("miwae", "missing-data IWAE (Mattei & Frellsen 2019): trains on data with NaN, imputes them (aekit impute)",
              lambda cfg, shape: _build_miwae(cfg, shape),
              combine(body_settings, likelihood_settings, {"prior", "iw_samples"}), defaults={"iw_samples": 20}),
    ModelSpec("helmholtz", "Helmholtz machine: sigmoid belief net + recognition net, --hidden-dims layers "
              "(--algorithm wake-sleep | reweighted-wake-sleep | elbo)", _build_helmholtz, _helmholtz_settings,
              defaults={"latent": "bernoulli", "hidden_dims": (200,)}),
    ModelSpec("vq-vae", "vector-quantized autoencoder: K codes (--codebook-size), EMA / codebook loss, restarts, "
              "k-means init; code maps in 1-D, 2-D, 3-D", _build_vqvae, _vqvae_settings,
              defaults={"body": "conv", "hidden_dims": (32, 64)}, train_defaults={"lr": 1e-3},
              initialize=_initialize_vqvae),
    ModelSpec("prior", "PixelCNN prior over a vq-vae's code maps (aekit train prior --codes-from RUN; "
              "sample with aekit sample RUN --prior PRIOR)", _build_prior, _prior_settings,
              defaults={"likelihood": "categorical"}, train_defaults={"lr": 1e-3}, initialize=_initialize_prior),
)}

MODEL_HELP = {kind: spec.help for kind, spec in SPECS.items()}


def get_spec(kind: str) -> ModelSpec:
    if kind not in SPECS:
        raise unknown_choice("model", kind, SPECS)
    return SPECS[kind]


def kinds_with(capability: str) -> list[str]:
    """The kinds whose model class declares ``capability`` (built on a tiny shape to ask it).

    The models are built under a forked RNG: asking must not move the global random stream, or a
    run's initialization would depend on what the process asked before.
    """
    import torch

    from ..capabilities import capabilities_of

    # A vector shape, then an image one for the kinds that need images (the vq-vae's conv body).
    shapes = (DataShape(data_dim=4, image_shape=None, num_classes=2), DataShape(data_dim=64, image_shape=(1, 8, 8),
                                                                               num_classes=2))
    kinds = []
    with torch.random.fork_rng(devices=[]):
        for kind, spec in SPECS.items():
            for shape in shapes:
                try:
                    small = {"latent_dim": 2, "hidden_dims": (4,)} if shape.image_shape is None else {}
                    model = spec.build(ModelConfig(**{**spec.defaults, "kind": kind, **small}), shape)
                except (AekitError, ValueError, RuntimeError):
                    continue
                if capability in capabilities_of(model):
                    kinds.append(kind)
                break
    return kinds


def validate(cfg: RunConfig) -> None:
    """Refuse unknown names and settings the kind would not use, before any data is read."""
    check_settings(get_spec(cfg.model.kind), cfg)


def build_model(cfg: ModelConfig, shape: DataShape):
    spec = get_spec(cfg.kind)
    if cfg.prior not in PRIORS:
        raise unknown_choice("prior", cfg.prior, PRIORS)
    if "likelihood" not in spec.model_settings(cfg) and cfg.likelihood != spec.effective_defaults()[0].likelihood:
        raise AekitError(f"{cfg.kind} is defined with a {spec.effective_defaults()[0].likelihood} likelihood; "
                         f"drop --likelihood")
    if cfg.kind in ("linear-ae", "pca", "ppca") and not 1 <= cfg.latent_dim < shape.data_dim:
        raise AekitError(f"latent_dim must be below the data dimension for {cfg.kind}: "
                         f"1 <= latent_dim < {shape.data_dim}, got {cfg.latent_dim}")
    return spec.build(cfg, shape)


__all__ = ["SPECS", "MODEL_HELP", "ModelSpec", "get_spec", "kinds_with", "validate", "build_model", "VAE",
           "Autoencoder", "GRADIENT_TRAINING"]

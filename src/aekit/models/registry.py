"""The table of models: one :class:`ModelSpec` per kind, and which settings each one uses.

A setting a model does not use is refused, never accepted and ignored. Each spec says which
``ModelConfig`` and ``TrainConfig`` fields the model reads — as a function of the configuration,
since some settings only act under others (``--sigma`` only with ``--likelihood gaussian``,
``--warmup-steps`` only with ``--kl-schedule linear``). :func:`check_settings` compares every other
field with the kind's effective default and refuses the ones that differ, in one line.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from ..config import DataShape, ModelConfig, RunConfig, TrainConfig
from ..errors import AekitError

Settings = Callable[[ModelConfig], set[str]]

# Training settings every gradient-trained model uses (TrainConfig fields). `momentum` is CD's.
GRADIENT_TRAINING = frozenset(f.name for f in dataclasses.fields(TrainConfig)) - {"momentum"}
# Presentation and placement settings that every model accepts and that never change a result.
PRESENTATION = frozenset({"device", "figures", "figure_seconds", "progress", "threads"})
# Training settings of contrastive divergence (rbm): epochs of shuffled mini-batches, CD learning rate.
CD_TRAINING = PRESENTATION | {"epochs", "batch_size", "lr", "weight_decay", "momentum", "seed",
                              "checkpoint_seconds"}

# The setting (flag) that switches a conditional setting on, for the refusal message.
CONDITIONS = {
    "sigma": "--likelihood gaussian",
    "warmup_steps": "--kl-schedule linear",
    "cycle_steps": "--kl-schedule cyclical",
    "corruption_level": "a --corruption that takes a level (gaussian, salt-pepper, masking, block)",
    "sparsity_weight": "a --sparsity penalty",
    "sparsity_target": "--sparsity kl",
    "max_iter": "--method em",
    "tol": "--method em",
    "pretrain_epochs": "--pretrain rbm",
    "pixelcnn_layers": "--likelihood pixelcnn",    # vqvae helper: PixelCNN sizes, EMA, code-map bodies
    "pixelcnn_channels": "--likelihood pixelcnn",
    "ema_decay": "--codebook-update ema",
    "residual_blocks": "a conv body",
}


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


# ----------------------------------------------------------------------------- setting groups
def body_settings(cfg: ModelConfig) -> set[str]:
    return {"body", "hidden_dims", "activation"}


def likelihood_settings(cfg: ModelConfig) -> set[str]:
    return ({"likelihood"} | ({"sigma"} if cfg.likelihood == "gaussian" else set())
            | ({"pixelcnn_layers", "pixelcnn_channels"} if cfg.likelihood == "pixelcnn" else set()))


def kl_settings(cfg: ModelConfig) -> set[str]:
    used = {"prior", "beta", "kl_schedule", "free_bits", "mc_samples"}
    if cfg.kl_schedule == "linear":
        used.add("warmup_steps")
    if cfg.kl_schedule == "cyclical":
        used.add("cycle_steps")
    return used


def corruption_settings(cfg: ModelConfig) -> set[str]:
    """The input corruption (degradation) of the autoencoders and the VAE, and its level where it has one."""
    from ..regularizers import corruption_takes_level

    return {"corruption"} | ({"corruption_level"} if corruption_takes_level(cfg.corruption) else set())


def regularizer_settings(cfg: ModelConfig) -> set[str]:
    used = {"code_activation", "sparsity", "contractive_weight"} | corruption_settings(cfg)
    if cfg.sparsity != "none":
        used.add("sparsity_weight")
    if cfg.sparsity == "kl":
        used.add("sparsity_target")
    return used


def combine(*groups: Settings | set[str]) -> Settings:
    """One settings function from groups (functions of the config, or fixed sets of names)."""
    def used(cfg: ModelConfig) -> set[str]:
        out = {"latent_dim"}
        for g in groups:
            out |= g(cfg) if callable(g) else set(g)
        return out
    return used


@dataclass(frozen=True)
class ModelSpec:
    """One kind of model: how to build it, how it is trained, and which settings it reads."""

    kind: str
    help: str                                        # one line for `aekit list`
    build: Callable[[ModelConfig, DataShape], Any]   # (model settings, data shape) → untrained model
    model_settings: Settings                         # ModelConfig fields it reads, given the config
    train_settings: Callable[[ModelConfig], frozenset[str]] | frozenset[str] = GRADIENT_TRAINING
    defaults: Mapping[str, Any] = field(default_factory=dict)        # ModelConfig values unless the user says otherwise
    train_defaults: Mapping[str, Any] = field(default_factory=dict)  # TrainConfig values likewise
    fit: Callable | None = None         # fit(model, x_train, run_cfg, progress) → model: a procedure, not gradient descent
    initialize: Callable | None = None  # initialize(model, x_train, run_cfg, progress): before gradient training
    resamples_data: bool = False        # a fit procedure that honours dynamic binarization (resamples each epoch)

    @property
    def gradient_trained(self) -> bool:
        return self.fit is None

    def used_train_settings(self, cfg: ModelConfig) -> frozenset[str]:
        return self.train_settings(cfg) if callable(self.train_settings) else self.train_settings

    def effective_defaults(self) -> tuple[ModelConfig, TrainConfig]:
        """The kind's defaults: the dataclass defaults with this spec's overrides."""
        return (ModelConfig(**{**self.defaults, "kind": self.kind}), TrainConfig(**self.train_defaults))


def check_settings(spec: ModelSpec, cfg: RunConfig) -> None:
    """Refuse every setting that differs from the kind's default but that the model would not use."""
    model_default, train_default = spec.effective_defaults()
    used_model = spec.model_settings(cfg.model) | {"kind"}
    used_train = spec.used_train_settings(cfg.model)
    unused = [f.name for f in dataclasses.fields(ModelConfig)
              if f.name not in used_model and getattr(cfg.model, f.name) != getattr(model_default, f.name)]
    unused += [f.name for f in dataclasses.fields(TrainConfig)
               if f.name not in used_train and getattr(cfg.train, f.name) != getattr(train_default, f.name)]
    if not unused:
        return
    # A conditional setting the kind could use under another setting gets that hint.
    hints = [f"{flag(n)} acts only with {CONDITIONS[n]}" for n in unused if n in CONDITIONS
             and n in spec.model_settings(_enabling(cfg.model, n))]
    names = ", ".join(flag(n) for n in unused)
    verb = "does" if len(unused) == 1 else "do"
    message = f"{names} {verb} not apply to {spec.kind} (it would be ignored); drop {'it' if len(unused) == 1 else 'them'}"
    if hints:
        message += " (" + "; ".join(hints) + ")"
    raise AekitError(message + f"; see aekit train {spec.kind} --help for the settings it takes")


_ENABLERS = {"sigma": {"likelihood": "gaussian"}, "warmup_steps": {"kl_schedule": "linear"},
             "cycle_steps": {"kl_schedule": "cyclical"}, "corruption_level": {"corruption": "masking"},
             "sparsity_weight": {"sparsity": "l1"}, "sparsity_target": {"sparsity": "kl", "code_activation": "sigmoid"},
             "max_iter": {"method": "em"}, "tol": {"method": "em"}, "pretrain_epochs": {"pretrain": "rbm"},
             "pixelcnn_layers": {"likelihood": "pixelcnn"}, "pixelcnn_channels": {"likelihood": "pixelcnn"},
             "ema_decay": {"codebook_update": "ema"}, "residual_blocks": {"body": "conv"}}


# The discrete latents' conditional settings (for the refusal's hint), and the setting that switches each on.
CONDITIONS.update({
    "groups": "--latent categorical", "baseline": "--estimator score-function",
    "variance_normalization": "--estimator score-function",
    "baseline_decay": "--baseline moving-average | learned or --variance-normalization",
    "baseline_hidden": "--baseline learned", "iw_samples": "--algorithm reweighted-wake-sleep",
    "estimator": "--algorithm elbo",
    **{name: "--estimator gumbel-softmax | gumbel-st (a discrete latent)"
       for name in ("temperature", "temperature_min", "temperature_decay", "temperature_interval")},
})
_ENABLERS.update({
    "groups": {"latent": "categorical", "latent_dim": 2}, "baseline": {"estimator": "score-function"},
    "variance_normalization": {"estimator": "score-function"},
    "baseline_decay": {"estimator": "score-function", "baseline": "moving-average"},
    "baseline_hidden": {"estimator": "score-function", "baseline": "learned"},
    "iw_samples": {"algorithm": "reweighted-wake-sleep"}, "estimator": {"algorithm": "elbo"},
    **{name: {"latent": "bernoulli", "estimator": "gumbel-softmax"}
       for name in ("temperature", "temperature_min", "temperature_decay", "temperature_interval")},
})


def _enabling(cfg: ModelConfig, name: str) -> ModelConfig:
    """``cfg`` with the setting that switches ``name`` on (to ask whether the kind could use it)."""
    try:
        return dataclasses.replace(cfg, **_ENABLERS.get(name, {}))
    except AekitError:
        return cfg


def used_settings(spec: ModelSpec, cfg: ModelConfig) -> tuple[set[str], frozenset[str]]:
    """(model settings, training settings) the kind reads under ``cfg`` (for --help and the settings table)."""
    return spec.model_settings(cfg) | {"kind"}, spec.used_train_settings(cfg)


def possible_settings(spec: ModelSpec) -> set[str]:
    """Every ModelConfig / TrainConfig field the kind reads under some configuration (for --help)."""
    base = spec.effective_defaults()[0]
    used = spec.model_settings(base) | set(spec.used_train_settings(base))
    for name in _ENABLERS:
        enabled = _enabling(base, name)
        used |= spec.model_settings(enabled) | set(spec.used_train_settings(enabled))
    return used

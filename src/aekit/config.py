"""Run configuration: frozen dataclasses, validated once, saved as ``config.json`` in every run.

``RunConfig`` holds everything needed to rebuild a model and continue its training:
what data, which model, how it is trained, and the shape of the data the model was built for.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import AekitError, unknown_choice
from .regularizers import CODE_ACTIVATIONS, SPARSITY_PENALTIES, build_corruption


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise AekitError(msg)


@dataclass(frozen=True)
class DataConfig:
    name: str = "digits"            # registered data set, or a path to .npy/.npz/.csv
    data_dir: str | None = None     # folder with the raw files (mnist IDX); None: $AEKIT_DATA_DIR or the cache
    binarize: str = "auto"          # auto (dynamic for a likelihood model with Bernoulli pixels on grey data, else none) | none | dynamic (resampled each epoch) | static (fixed seed)
    val_fraction: float = 0.1       # share of the training set held out for validation
    labels: str | None = None       # optional label file for user data
    seed: int = 0                   # fixes the split and static binarization
    normal_class: int | None = None  # one-class protocol: train and val on this class only; test = every test row, label 1 (anomalous) when of another class
    window: int | None = None       # series data (--data series:FILE.csv): time steps per window; each row is one sliding window
    stride: int = 1                 # series data: time steps between the starts of two windows
    train_steps: int | None = None  # series data: the first N time steps are the training part (fit, validation and normalization); None: the whole series

    BINARIZE = ("auto", "none", "dynamic", "static")

    def __post_init__(self):
        _check(0 < self.val_fraction < 1, f"--val-fraction must be in (0, 1), got {self.val_fraction}")
        if self.binarize not in self.BINARIZE:
            raise unknown_choice("binarization", self.binarize, self.BINARIZE)
        _check(self.normal_class is None or self.normal_class >= 0,
               f"--normal-class must be a class label >= 0, got {self.normal_class}")
        _check(self.window is None or self.window >= 1, f"--window must be >= 1 (time steps per window), got {self.window}")
        _check(self.stride >= 1, f"--stride must be >= 1 (time steps between windows), got {self.stride}")
        _check(self.train_steps is None or self.train_steps >= 1, f"--train-steps must be >= 1, got {self.train_steps}")


ALGORITHMS = ("wake-sleep", "reweighted-wake-sleep", "elbo")  # training procedures of the Helmholtz machine


@dataclass(frozen=True)
class ModelConfig:
    kind: str = "vae"                       # the model, see `aekit list`
    latent_dim: int = 16                    # J, the size of z
    hidden_dims: tuple[int, ...] = (400, 200)  # MLP widths, encoder order (the decoder mirrors them)
    activation: str = "relu"                # hidden-layer nonlinearity: relu | tanh | elu | gelu | sigmoid | ...
    body: str = "mlp"                       # mlp | conv (images only)
    likelihood: str = "bernoulli"           # decoder p(x|z), see `aekit list`
    sigma: float = 1.0                      # σ of the fixed-σ Gaussian likelihood
    prior: str = "normal"                   # p(z)
    beta: float = 1.0                       # weight on the KL term (β-VAE when ≠ 1)
    kl_schedule: str = "constant"           # constant | linear (warm-up) | cyclical
    warmup_steps: int = 1000                # steps of the linear warm-up
    cycle_steps: int = 2000                 # steps per cycle of the cyclical schedule
    free_bits: float = 0.0                  # λ nats per latent dimension on the batch-average KL
    mc_samples: int = 1                     # L, Monte Carlo samples of z per example in the ELBO
    iw_samples: int = 5                     # k of the importance-weighted training bound (iwae)
    method: str = "closed-form"             # how ppca is fitted: closed-form | em
    max_iter: int = 500                     # iteration cap of iterative fits (EM)
    tol: float = 1e-6                       # EM stops when the estimated relative gap to the maximum (Aitken) is below this; ppca uses 1e-12
    cd_steps: int = 1                       # k of CD-k: Gibbs steps in the negative phase (rbm)
    persistent: bool = False                # persistent CD (Tieleman 2008): chains carried across updates (rbm)
    pretrain: str = "none"                  # deep-ae initialization: none | rbm (greedy layer-wise CD-1)
    pretrain_epochs: int = 10               # CD epochs per RBM layer when pretraining
    corruption: str = "none"                # input corruption (degradation) in training, the target stays clean (ae kinds, vae, cvae; alias --degrade): none | gaussian (noise) | salt-pepper | masking (mask) | block | downsample:F | grayscale
    corruption_level: float = 0.25          # σ of gaussian; the fraction ν of entries hit by salt-pepper / masking; the image fraction of the block
    code_activation: str = "identity"       # on the ae code: identity | sigmoid (codes in (0, 1))
    sparsity: str = "none"                  # ae code penalty: none | l1 (‖z‖₁) | kl (Σ_j KL(ρ ‖ mean of z_j))
    sparsity_weight: float = 1.0            # weight of the sparsity penalty (λ for l1, β for kl)
    sparsity_target: float = 0.05           # ρ, the target mean activation of each code unit (sparsity kl)
    contractive_weight: float = 0.0         # λ on ‖J_f(x)‖²_F, the encoder Jacobian's squared norm (cae); 0: off
    # discrete latents and their gradient estimators (vae family, helmholtz)
    latent: str = "gaussian"                # q(z|x): gaussian | bernoulli (--latent-dim binary units) | categorical (--groups of --latent-dim classes)
    groups: int = 1                         # N, the number of categorical variables of a categorical latent
    estimator: str = "auto"                 # gradient through the sampled z: auto (reparameterization if gaussian, else score-function) | reparameterization | score-function | gumbel-softmax | straight-through | gumbel-st
    baseline: str = "none"                  # score-function baseline: none | constant | moving-average | learned (NVIL's c + C(x)) | vimco (iwae)
    variance_normalization: bool = False    # divide the centred score-function signal by max(1, its running std) (NVIL)
    baseline_decay: float = 0.8             # α of the running mean and variance of the learning signal (NVIL: 0.8)
    baseline_hidden: int = 100              # tanh units of the learned baseline network C(x) (NVIL: 100)
    temperature: float = 1.0                # τ₀, the initial Gumbel-softmax temperature
    temperature_min: float = 0.5            # τ_min, the floor of the annealed temperature
    temperature_decay: float = 1e-4         # r in τ_t = max(τ_min, τ₀·exp(−r·t))
    temperature_interval: int = 500         # N: τ is updated every N steps (Jang et al. 2017)
    algorithm: str = "wake-sleep"           # how helmholtz is trained: wake-sleep | reweighted-wake-sleep (--iw-samples K) | elbo (--estimator)
    track_grad_variance: bool = False       # log grad_log_variance: the encoder gradient's log-variance from running averages of g and g²

    # --- vq-vae and priors over its codes (van den Oord et al. 2017); see aekit.quantizers, aekit.pixelcnn
    codebook_size: int = 512                # K, the number of codes (a prior's K is its vq-vae's, set by --codes-from)
    code_dim: int = 64                      # D, the dimension of each code vector
    commitment_weight: float = 0.25         # β on the commitment loss ‖z − sg(e)‖² (vq-vae)
    codebook_update: str = "ema"            # loss (codebook loss ‖sg(z) − e‖²) | ema (moving averages, decay --ema-decay)
    ema_decay: float = 0.99                 # γ of the EMA codebook updates
    codebook_init: str = "kmeans"           # uniform (U(−1/K, 1/K)) | kmeans (k-means on encoder outputs of the first batches)
    restart_threshold: float = 1.0          # re-seed codes used less than this many times per batch (running average); 0: never
    residual_blocks: int = 2                # residual blocks at the code-map resolution (vq-vae conv bodies)
    pixelcnn_layers: int = 12               # gated layers of the PixelCNN (prior over codes, --likelihood pixelcnn)
    pixelcnn_channels: int = 64             # channels of each PixelCNN layer
    class_conditional: bool = False         # the prior models p(codes | y), y the label (sample with --label)

    def __post_init__(self):
        object.__setattr__(self, "hidden_dims", tuple(int(h) for h in self.hidden_dims))
        _check(self.latent_dim >= 1, f"--latent-dim must be >= 1, got {self.latent_dim}")
        _check(all(h >= 1 for h in self.hidden_dims), f"--hidden-dims must be positive, got {self.hidden_dims}")
        _check(self.beta >= 0, f"--beta must be >= 0, got {self.beta}")
        _check(self.free_bits >= 0, f"--free-bits must be >= 0, got {self.free_bits}")
        _check(self.mc_samples >= 1, f"--mc-samples must be >= 1, got {self.mc_samples}")
        _check(self.iw_samples >= 1, f"--iw-samples must be >= 1, got {self.iw_samples}")
        _check(self.sigma > 0, f"--sigma must be > 0, got {self.sigma}")
        _check(self.max_iter >= 1, f"--max-iter must be >= 1, got {self.max_iter}")
        _check(self.tol > 0, f"--tol must be > 0, got {self.tol}")
        _check(self.cd_steps >= 1, f"--cd-steps must be >= 1, got {self.cd_steps}")
        _check(self.pretrain_epochs >= 1, f"--pretrain-epochs must be >= 1, got {self.pretrain_epochs}")
        if self.pretrain not in ("none", "rbm"):
            raise unknown_choice("pretraining", self.pretrain, ("none", "rbm"))
        build_corruption(self.corruption, self.corruption_level)  # the name, and the level in its range
        if self.code_activation not in CODE_ACTIVATIONS:
            raise unknown_choice("code_activation", self.code_activation, CODE_ACTIVATIONS)
        if self.sparsity not in SPARSITY_PENALTIES:
            raise unknown_choice("sparsity", self.sparsity, SPARSITY_PENALTIES)
        _check(self.sparsity_weight >= 0, f"--sparsity-weight must be >= 0, got {self.sparsity_weight}")
        _check(0 < self.sparsity_target < 1, f"--sparsity-target must be in (0, 1) (the target mean activation ρ), "
                                             f"got {self.sparsity_target}")
        _check(self.sparsity != "kl" or self.code_activation == "sigmoid",
               f"--sparsity kl needs codes in (0, 1): set --code-activation sigmoid, got '{self.code_activation}'")
        _check(self.contractive_weight >= 0, f"--contractive-weight must be >= 0, got {self.contractive_weight}")
        from .estimators import check_estimator_settings  # here: estimators imports torch
        from .latents import VAE_LATENTS

        if self.latent not in VAE_LATENTS:
            raise unknown_choice("latent", self.latent, VAE_LATENTS)
        _check(self.groups >= 1, f"--groups must be >= 1, got {self.groups}")
        _check(self.latent != "categorical" or self.latent_dim >= 2,
               f"--latent categorical needs --latent-dim >= 2 (classes per group), got {self.latent_dim}")
        if self.algorithm not in ALGORITHMS:
            raise unknown_choice("algorithm", self.algorithm, ALGORITHMS)
        _check(self.prior not in ("uniform", "learned") or self.latent != "gaussian",
               f"--prior {self.prior} is for discrete latents (--latent bernoulli | categorical); a Gaussian latent "
               f"takes --prior normal")
        check_estimator_settings(self)
        _check(self.codebook_size >= 2, f"--codebook-size must be >= 2 (one code carries no information), got {self.codebook_size}")
        _check(self.code_dim >= 1, f"--code-dim must be >= 1, got {self.code_dim}")
        _check(self.commitment_weight >= 0, f"--commitment-weight must be >= 0, got {self.commitment_weight}")
        if self.codebook_update not in ("loss", "ema"):
            raise unknown_choice("codebook update", self.codebook_update, ("loss", "ema"))
        _check(0 < self.ema_decay < 1, f"--ema-decay must be in (0, 1), got {self.ema_decay}")
        if self.codebook_init not in ("uniform", "kmeans"):
            raise unknown_choice("codebook init", self.codebook_init, ("uniform", "kmeans"))
        _check(self.restart_threshold >= 0, f"--restart-threshold must be >= 0 (0: no restarts), got {self.restart_threshold}")
        _check(self.residual_blocks >= 0, f"--residual-blocks must be >= 0, got {self.residual_blocks}")
        _check(self.pixelcnn_layers >= 1, f"--pixelcnn-layers must be >= 1, got {self.pixelcnn_layers}")
        _check(self.pixelcnn_channels >= 1, f"--pixelcnn-channels must be >= 1, got {self.pixelcnn_channels}")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 20                 # total epochs (ignored when steps is set)
    steps: int | None = None         # total optimizer steps instead of epochs
    batch_size: int = 256            # global batch (split across processes under torchrun); see lr
    drop_last: bool = False          # drop the last short batch of each epoch (equal shards under DDP)
    lr: float = 3e-3                 # Adam learning rate; with batch 256, the fastest to a given MNIST VAE loss of those tried (BENCHMARKS.md)
    betas: tuple[float, float] = (0.9, 0.999)  # Adam betas, e.g. 0.9,0.999
    eps: float = 1e-8                # Adam epsilon
    weight_decay: float = 0.0        # L2 penalty (Adam's weight_decay; the CD weight cost for rbm)
    momentum: float = 0.5            # momentum of contrastive-divergence updates (rbm)
    lr_schedule: str = "none"        # none | cosine (to 0 over the run) | warmup-cosine (linear warm-up over 10%, then cosine) | step (×0.1 at 50% and 75%)
    grad_clip: float | None = None   # max global gradient norm; None: no clipping
    patience: int | None = None      # early stopping: epochs without validation improvement
    seed: int = 0                    # initialization, shuffling, sampling
    device: str = "auto"             # auto (cuda when present) | cpu | cuda | cuda:N
    amp: bool = False                # bfloat16 autocast (GPU, or a CPU with AVX512-BF16 / AMX; else float32, said)
    figures: str = "auto"            # when to draw figures: auto (at most every --figure-seconds, and at the end) | epoch | end | none
    figure_seconds: float = 30.0     # with figures auto: seconds of training between two drawings
    checkpoint_seconds: float = 600.0  # a checkpoint mid-epoch once this many seconds passed since the last (and one every epoch)
    progress: bool = True            # progress bars (only when the output is a terminal)
    threads: int | None = None       # CPU threads for torch; None: all cores, 1 for small models (see aekit.threads)

    LR_SCHEDULES = ("none", "cosine", "warmup-cosine", "step")
    FIGURES = ("auto", "epoch", "end", "none")

    def __post_init__(self):
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        _check(self.epochs >= 1, f"--epochs must be >= 1, got {self.epochs}")
        _check(self.steps is None or self.steps >= 1, f"--steps must be >= 1, got {self.steps}")
        _check(self.batch_size >= 1, f"--batch-size must be >= 1, got {self.batch_size}")
        _check(self.lr > 0, f"--lr must be > 0, got {self.lr}")
        _check(self.grad_clip is None or self.grad_clip > 0, f"--grad-clip must be > 0, got {self.grad_clip}")
        _check(self.patience is None or self.patience >= 1, f"--patience must be >= 1, got {self.patience}")
        if self.lr_schedule not in self.LR_SCHEDULES:
            raise unknown_choice("lr schedule", self.lr_schedule, self.LR_SCHEDULES)
        if self.figures not in self.FIGURES:
            raise unknown_choice("figures setting", self.figures, self.FIGURES)
        _check(self.figure_seconds >= 0, f"--figure-seconds must be >= 0, got {self.figure_seconds}")
        _check(self.checkpoint_seconds > 0, f"--checkpoint-seconds must be > 0, got {self.checkpoint_seconds}")
        _check(self.threads is None or self.threads >= 1, f"--threads must be >= 1, got {self.threads}")


@dataclass(frozen=True)
class DataShape:
    """What the model was built for; filled from the data at the start of training."""

    data_dim: int
    image_shape: tuple[int, ...] | None = None   # (C, L), (C, H, W) or (C, T, H, W) for signals; None: vectors
    num_classes: int | None = None
    levels: int | None = None   # L when every value is one of k/(L−1), k = 0..L−1 (2: binary, 256: 8-bit); None: continuous
    fingerprint: str | None = None  # digest of the data (aekit.trainer.data_fingerprint): resume checks it

    def __post_init__(self):
        if self.image_shape is not None:
            object.__setattr__(self, "image_shape", tuple(int(s) for s in self.image_shape))


@dataclass(frozen=True)
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    shape: DataShape | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    SECTIONS = ("model", "data", "train", "shape")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunConfig":
        unknown = sorted(set(d) - set(cls.SECTIONS))
        if unknown:
            raise AekitError(f"unknown config section(s) {unknown}; valid sections: {', '.join(cls.SECTIONS)}")
        try:
            shape = d.get("shape")
            return cls(
                model=_build(ModelConfig, d.get("model", {}), "model"),
                data=_build(DataConfig, d.get("data", {}), "data"),
                train=_build(TrainConfig, d.get("train", {}), "train"),
                shape=_build(DataShape, shape, "shape") if shape else None,
            )
        except TypeError as e:
            raise AekitError(f"config does not fit aekit's settings: {e}") from None

    def replace(self, **sections) -> "RunConfig":
        return dataclasses.replace(self, **sections)


def _build(cls, values: dict[str, Any], section: str):
    if not isinstance(values, dict):
        raise AekitError(f"config section '{section}' must be an object")
    known = {f.name for f in fields(cls)}
    unknown = set(values) - known
    if unknown:
        raise AekitError(f"unknown setting(s) {sorted(unknown)} in config section '{section}'; valid: {sorted(known)}")
    return cls(**values)


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A user config file: JSON with optional sections model / data / train."""
    path = Path(path)
    if not path.is_file():
        raise AekitError(f"config file {path} not found")
    try:
        d = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise AekitError(f"config file {path} is not valid JSON ({e})") from None
    if not isinstance(d, dict):
        raise AekitError(f"config file {path} must hold a JSON object with sections model / data / train")
    unknown = sorted(set(d) - {"model", "data", "train"})
    if unknown:
        raise AekitError(f"config file {path} has unknown section(s) {unknown}; valid sections: model, data, train")
    return d

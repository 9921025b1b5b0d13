"""The VQ-VAE (van den Oord, Vinyals & Kavukcuoglu 2017) and the prior over its codes.

**vq-vae**: encoder body → code map z_e (B, D, *S') → vector quantizer (nearest of K codes,
straight-through) → decoder body → likelihood head p(x | z_q). Per-example loss (B,), nats:

    −log p(x | z_q)  +  ‖sg(z_e) − e‖²  +  β ‖z_e − sg(e)‖²           (eq. 3; sums over the code map)

(the codebook term is absent with EMA codebook updates). The codebook's EMA statistics, usage
averages and dead-code restarts are applied in :meth:`VQVAE.after_step`, which the trainer calls after
every optimizer step; :meth:`VQVAE.loss` only stashes the batch statistics they need (see
:mod:`aekit.quantizers`). k-means initialization runs before the first step (the spec's ``initialize``).
Sequences (C, L), images (C, H, W) and clips (C, T, H, W) give 1-, 2- and 3-D code maps with the same
model; vector data take the MLP body and M = ``latent_dim`` codes.

**prior**: an autoregressive model over the code maps of a trained vq-vae run, p(z) = ∏_i p(z_i | z_<i)
(or p(z | y)): a gated PixelCNN on 2-D maps, causal dilated convolutions on 1-D maps and on 3-D maps
flattened in raster order (see :mod:`aekit.pixelcnn`). It is trained by the same trainer on the data
set ``vq-codes`` — the code maps of the vq-vae's own train / val / test images, encoded once
(:func:`load_vq_codes`). With it the vq-vae is a generative model and has a bound on log p(x):

    −log p(x) ≤ −log p(x | z_q(x)) − log p_prior(z_q(x))        (the ELBO with a one-hot q(z|x):
                                                                  KL(q ‖ p) = −log p(z_q))
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from pathlib import Path

import torch
from torch import nn
from torch.distributions import Distribution

from ..capabilities import CODE_PRIOR, CODES
from ..config import DataShape, ModelConfig
from ..errors import AekitError
from ..likelihoods import likelihood_for
from ..nets import (CodeMapDecoderBody, CodeMapEncoderBody, VectorCodeDecoderBody, VectorCodeEncoderBody,
                    conv_spatial_dims)
from ..pixelcnn import AutoregressiveModel
from ..quantizers import LIVE_USAGE, Quantized, VectorQuantizer, codebook_perplexity_and_usage, perplexity
from .parts import LossOutput

_LAYOUT = {2: "sequences", 3: "images", 4: "clips"}
KMEANS_VECTORS_PER_CODE = 64   # k-means initialization reads about this many encoder outputs per code
KMEANS_ITERATIONS = 20
EVAL_BATCH = 1000


# ============================================================================= the VQ-VAE
class VQVAE(nn.Module):
    """Encoder body → :class:`~aekit.quantizers.VectorQuantizer` → decoder body → likelihood head."""

    capabilities = frozenset({CODES})
    selection_metric = "reconstruction"  # −log p(x | z_q) on the validation split
    num_classes = None                   # not conditional (the CLI asks)

    def __init__(self, encoder: nn.Module, quantizer: VectorQuantizer, decoder: nn.Module, likelihood: nn.Module,
                 code_shape: tuple[int, ...]):
        super().__init__()
        self.encoder, self.quantizer, self.decoder, self.likelihood = encoder, quantizer, decoder, likelihood
        self.code_shape = tuple(code_shape)  # S', e.g. (7, 7) for MNIST with two stride-2 stages

    @property
    def num_codes(self) -> int:
        return self.quantizer.num_codes

    # ------------------------------------------------------------------ the face
    def encode_continuous(self, x, y=None) -> torch.Tensor:
        """z_e(x), the encoder output map before quantization: (B, D, *S')."""
        return self.encoder(x)

    def quantize(self, x, y=None) -> Quantized:
        return self.quantizer(self.encoder(x))

    def encode(self, x, y=None) -> torch.Tensor:
        """z_q(x), the quantized code map (B, D, *S') (a point latent)."""
        return self.quantize(x).z_q

    def codes(self, x, y=None) -> torch.Tensor:
        """The code indices of x: (B, *S') int64."""
        return self.quantize(x).indices

    def embed(self, x, y=None) -> torch.Tensor:
        """z_q(x) flattened, (B, D·∏S'): a vector per example for probes, scatter plots and interpolation."""
        return self.encode(x).flatten(1)

    def decode(self, z, y=None) -> Distribution:
        """p(x | z) from a code map (N, D, *S') or its flattened form (N, D·∏S')."""
        d = self.quantizer.code_dim
        if z.dim() == 2 and z.shape[1] == d * math.prod(self.code_shape):
            z = z.reshape(z.shape[0], d, *self.code_shape)
        if tuple(z.shape[1:]) != (d, *self.code_shape):
            raise AekitError(f"decode takes code maps ({d}, {', '.join(map(str, self.code_shape))}) or their "
                             f"flattened form, got {tuple(z.shape[1:])}")
        return self.likelihood(self.decoder(z))

    def decode_codes(self, indices: torch.Tensor) -> Distribution:
        """p(x | e[indices]) for code indices (N, *S')."""
        if indices.min() < 0 or indices.max() >= self.num_codes:
            raise AekitError(f"code indices must lie in 0..{self.num_codes - 1}")
        return self.decode(self.quantizer.lookup(indices))

    def reconstruct(self, x, y=None) -> torch.Tensor:
        return self.decode(self.encode(x)).mean

    # ------------------------------------------------------------------ training
    def _terms(self, x) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        q = self.quantize(x)
        rec = -self.decode(q.z_q).log_prob(x)  # (B,) nats
        vq = self.quantizer
        total = rec + vq.commitment_weight * q.commitment
        terms = {"reconstruction": rec, "commitment": q.commitment}
        if vq.update == "loss":
            total = total + q.codebook
            terms["codebook"] = q.codebook
        b = x.shape[0]
        # Batch figures, repeated per example so the trainer's means report them (they depend on the batch size).
        terms["perplexity"] = q.perplexity.detach().expand(b)
        terms["codes_in_batch"] = q.codes_in_batch.to(rec.dtype).expand(b)
        return total, terms

    def loss(self, x, y=None, step: int = 0) -> LossOutput:
        """Per-example loss (B,): −log p(x|z_q) [+ ‖sg(z) − e‖²] + β‖z − sg(e)‖², and its terms."""
        total, terms = self._terms(x)
        if self.training:
            live = (self.quantizer.usage_estimate() >= LIVE_USAGE).sum()  # codes used ≥ once per batch, running
            terms["live_codes"] = live.to(total.dtype).expand(x.shape[0])
        return LossOutput(total, terms)

    def evaluation_terms(self, x, y=None) -> dict[str, torch.Tensor]:
        _, terms = self._terms(x)
        return terms

    def after_step(self, step: int) -> None:
        """Apply the last batch's codebook statistics: usage, EMA codebook, dead-code restarts."""
        self.quantizer.apply_statistics()

    def forward(self, x, y=None, step: int = 0) -> LossOutput:
        # DistributedDataParallel synchronizes the gradients of what forward computes: the loss.
        return self.loss(x, y, step)

    # ------------------------------------------------------------------ generation
    @torch.no_grad()
    def sample(self, n: int, y=None, prior: "CodePrior | None" = None) -> torch.Tensor:
        """Decoder means of n code maps drawn from ``prior`` (a trained :class:`CodePrior` of this run's codes)."""
        if prior is None:
            raise AekitError("a vq-vae has no prior over its codes until one is trained: aekit train prior "
                             "--codes-from RUN, then aekit sample RUN --prior PRIOR_RUN")
        check_prior_fits(self, prior)
        return self.decode_codes(prior.sample_codes(n, y)).mean

    def log_likelihood(self, x, y=None, num_samples: int = 1000) -> torch.Tensor:
        raise AekitError("a vq-vae alone defines no p(x); with a prior, prior_bound(vq, prior, data) gives "
                         "the bound -log p(x) <= -log p(x|z_q) - log p(z_q)")


def _vq_bodies(cfg: ModelConfig, shape: DataShape, params_per_dim: int):
    """(encoder body, decoder body, code map shape S') for the config and data shape."""
    act = cfg.activation
    if cfg.body == "mlp":
        if shape.image_shape is not None:
            layout = _LAYOUT[len(shape.image_shape)]
            raise AekitError(f"vq-vae on {layout} {tuple(shape.image_shape)} needs a conv body (--body conv): "
                             f"its codes form a map the prior models in raster order; --body mlp is for vector data")
        if not cfg.hidden_dims:
            raise AekitError("the vq-vae mlp body needs --hidden-dims with at least one width")
        enc = VectorCodeEncoderBody(shape.data_dim, cfg.hidden_dims, cfg.latent_dim, cfg.code_dim, act)
        dec = VectorCodeDecoderBody(shape.data_dim, tuple(reversed(cfg.hidden_dims)), cfg.latent_dim, cfg.code_dim,
                                    params_per_dim, act)
        return enc, dec, enc.code_shape
    dims = conv_spatial_dims(cfg.body, shape.image_shape)
    enc = CodeMapEncoderBody(shape.image_shape, cfg.code_dim, cfg.hidden_dims, cfg.residual_blocks, act, dims)
    dec = CodeMapDecoderBody(shape.image_shape, cfg.code_dim, params_per_dim, cfg.hidden_dims, cfg.residual_blocks,
                             act, dims)
    return enc, dec, enc.code_shape


def build_vqvae(cfg: ModelConfig, shape: DataShape) -> VQVAE:
    likelihood = likelihood_for(cfg, shape)
    encoder, decoder, code_shape = _vq_bodies(cfg, shape, likelihood.params_per_dim)
    quantizer = VectorQuantizer(cfg.codebook_size, cfg.code_dim, commitment_weight=cfg.commitment_weight,
                                update=cfg.codebook_update, decay=cfg.ema_decay,
                                restart_threshold=cfg.restart_threshold)
    return VQVAE(encoder, quantizer, decoder, likelihood, code_shape)


def vqvae_settings(cfg: ModelConfig) -> set[str]:
    """The ModelConfig fields vq-vae reads under ``cfg``."""
    from .registry import likelihood_settings

    used = {"body", "hidden_dims", "activation", "codebook_size", "code_dim", "commitment_weight",
            "codebook_update", "codebook_init", "restart_threshold"} | likelihood_settings(cfg)
    if cfg.codebook_update == "ema":
        used.add("ema_decay")
    used.add("latent_dim" if cfg.body == "mlp" else "residual_blocks")  # M codes per vector, or the conv stack
    return used


@torch.no_grad()
def initialize_vqvae(model: VQVAE, x_train: torch.Tensor, run_cfg, progress: bool = False) -> None:
    """k-means initialization of the codebook (``--codebook-init kmeans``) from the first training batches.

    The batches are those the trainer's first epoch starts with (same order, same binarization), encoded
    by the untrained encoder; about ``KMEANS_VECTORS_PER_CODE`` encoder outputs per code are clustered.
    Every rank computes the same centroids (a seeded, single-process computation).
    """
    if run_cfg.model.codebook_init != "kmeans":
        return
    from ..data import ArrayDataset, BatchLoader
    from ..data.transforms import derive_seed

    tc = run_cfg.train
    data = ArrayDataset(x=x_train, y=None, image_shape=None, num_classes=None, name="kmeans")
    loader = BatchLoader(data, tc.batch_size, shuffle=True, dynamic_binarize=run_cfg.data.binarize == "dynamic",
                         seed=tc.seed)
    loader.set_epoch(0)
    wanted = KMEANS_VECTORS_PER_CODE * model.num_codes
    was_training = model.training
    model.eval()
    vectors, have = [], 0
    for x, _ in loader:
        z = model.encode_continuous(x)  # (B, D, *S')
        flat = z.movedim(1, -1).reshape(-1, z.shape[1])
        vectors.append(flat)
        have += len(flat)
        if have >= wanted:
            break
    model.train(was_training)
    vectors = torch.cat(vectors)[:wanted]
    model.quantizer.kmeans_init(vectors, KMEANS_ITERATIONS, seed=derive_seed("vq-kmeans", tc.seed))


# ============================================================================= the prior over codes
class CodePrior(nn.Module):
    """p(z) or p(z | y) over code maps z ∈ {0..K−1}^S' of a vq-vae: ∏_i Cat(z_i; PixelCNN(z_<i [, y])_i).

    The vq-vae's codebook when the prior was trained is kept as a buffer, so that sampling through a
    vq-vae whose codebook differs is refused rather than decoding codes that mean something else.
    """

    capabilities = frozenset({CODE_PRIOR})
    selection_metric = "nll"

    def __init__(self, code_shape, num_codes: int, code_dim: int, *, channels: int = 64, layers: int = 12,
                 num_classes: int | None = None):
        super().__init__()
        self.code_shape = tuple(int(s) for s in code_shape)
        self.num_codes = num_codes
        self.num_classes = num_classes
        self.model = AutoregressiveModel(self.code_shape, num_values=num_codes, hidden_channels=channels,
                                         layers=layers, num_classes=num_classes)
        self.register_buffer("codebook", torch.zeros(num_codes, code_dim))  # the vq-vae's, set by initialize

    def _labels(self, y):
        if self.num_classes is None:
            return None
        if y is None:
            raise AekitError("this prior is class-conditional and needs labels (--label for sampling)")
        return y.long()

    def _codes(self, x: torch.Tensor) -> torch.Tensor:
        """Rows of the code data set (B, ∏S') → code maps (B, *S') int64 (checked against K)."""
        codes = x.round().long()
        lo, hi = int(codes.min()), int(codes.max())
        if lo < 0 or hi >= self.num_codes:
            raise AekitError(f"the prior models codes 0..{self.num_codes - 1} but its data hold {lo}..{hi}; "
                             f"train it with aekit train prior --codes-from RUN (a vq-vae run)")
        return codes.reshape(x.shape[0], *self.code_shape)

    def log_prob(self, codes: torch.Tensor, y=None) -> torch.Tensor:
        """log p(z [| y]) per code map (B,), nats."""
        return self.model.log_prob(codes, None, self._labels(y))

    def loss(self, x, y=None, step: int = 0) -> LossOutput:
        nll = -self.log_prob(self._codes(x), y)
        return LossOutput(nll, {"nll": nll})

    def evaluation_terms(self, x, y=None) -> dict[str, torch.Tensor]:
        nll = -self.log_prob(self._codes(x), y)
        return {"nll": nll, "bits_per_code": nll / (math.prod(self.code_shape) * math.log(2))}

    def forward(self, x, y=None, step: int = 0) -> LossOutput:
        return self.loss(x, y, step)

    @torch.no_grad()
    def sample_codes(self, n: int, y=None) -> torch.Tensor:
        """n code maps (n, *S') by ancestral sampling (batched, cached; see :mod:`aekit.pixelcnn`)."""
        y = self._labels(y)
        if y is not None and y.shape != (n,):
            raise AekitError(f"give one label per sample: {n} labels, got shape {tuple(y.shape)}")
        return self.model.sample(n, None, y)

    def sample(self, n: int, y=None) -> torch.Tensor:
        raise AekitError("a prior samples code maps; decode them through its vq-vae: "
                         "aekit sample VQ_RUN --prior PRIOR_RUN (or vq.sample(n, prior=prior))")

    def _no_images(self, *args, **kwargs):
        raise AekitError("a prior over codes has no encoder or decoder of its own; use its vq-vae run "
                         "(aekit sample VQ_RUN --prior PRIOR_RUN)")

    encode = decode = reconstruct = embed = _no_images


def build_prior(cfg: ModelConfig, shape: DataShape) -> CodePrior:
    num_classes = None
    if cfg.class_conditional:
        if not shape.num_classes:
            raise AekitError("--class-conditional needs labels, but the vq-vae's data have none")
        num_classes = shape.num_classes
    code_shape = shape.image_shape[1:] if shape.image_shape is not None else (shape.data_dim,)
    return CodePrior(code_shape, cfg.codebook_size, cfg.code_dim, channels=cfg.pixelcnn_channels,
                     layers=cfg.pixelcnn_layers, num_classes=num_classes)


def prior_model_settings(cfg: ModelConfig) -> set[str]:
    return {"codebook_size", "code_dim", "pixelcnn_layers", "pixelcnn_channels", "class_conditional"}


def initialize_prior(model: CodePrior, x_train, run_cfg, progress: bool = False) -> None:
    """Check the prior fits the codes of its vq-vae run and keep that run's codebook (before training)."""
    if run_cfg.data.name != CODES_DATASET:
        raise AekitError("a prior models the codes of a trained vq-vae: aekit train prior --codes-from RUN")
    vq = _load_vqvae(run_cfg.data.data_dir)
    if vq.num_codes != model.num_codes or vq.quantizer.code_dim != model.codebook.shape[1]:
        raise AekitError(f"the codes of {run_cfg.data.data_dir} come from K={vq.num_codes} codes of dimension "
                         f"{vq.quantizer.code_dim}, but the prior was set up for K={model.num_codes}, "
                         f"D={model.codebook.shape[1]}; drop --codebook-size / --code-dim")
    model.codebook.copy_(vq.quantizer.codebook.detach().to(model.codebook.device))


def check_prior_fits(vq: VQVAE, prior: CodePrior) -> None:
    """Refuse a prior trained on another codebook or another code-map shape."""
    source = getattr(getattr(prior, "config", None), "data", None)
    where = f" (trained on the codes of {source.data_dir})" if source is not None else ""
    if prior.code_shape != vq.code_shape or prior.codebook.shape != vq.quantizer.codebook.shape:
        raise AekitError(f"the prior{where} models {'x'.join(map(str, prior.code_shape))} maps of "
                         f"{prior.num_codes} codes, but this vq-vae makes {'x'.join(map(str, vq.code_shape))} maps "
                         f"of {vq.num_codes}; train a prior on its codes: aekit train prior --codes-from RUN")
    if not torch.equal(prior.codebook.cpu(), vq.quantizer.codebook.detach().cpu()):
        raise AekitError(f"the prior{where} was trained for another codebook than this vq-vae's; "
                         f"train a prior on its codes: aekit train prior --codes-from RUN")


# ============================================================================= the code data set
CODES_DATASET = "vq-codes"
CODES_HELP = ("code maps of a trained vq-vae's own train/val/test data, encoded once "
              "(--data-dir RUN; made by aekit train prior --codes-from RUN)")
CODES_CACHE = "codes-cache.safetensors"
_CODES_MEMO: dict = {}


def _load_vqvae(run_dir) -> VQVAE:
    from .. import api, runs

    if run_dir is None:
        raise AekitError("the vq-codes data set needs --data-dir RUN, a trained vq-vae run "
                         "(aekit train prior --codes-from RUN sets it)")
    cfg = runs.load_config(Path(run_dir))
    if cfg.model.kind != "vq-vae":
        raise AekitError(f"{run_dir} is a {cfg.model.kind} run, not a vq-vae; --codes-from needs a trained vq-vae run")
    return api.load(run_dir)


def _fingerprint(run_dir: Path, vq) -> str:
    """sha256 of the weights and of the data settings: the codes are a function of both."""
    from .. import runs

    weights = run_dir / runs.BEST if (run_dir / runs.BEST).exists() else run_dir / runs.LAST
    h = hashlib.sha256(weights.read_bytes())
    h.update(json.dumps(vq.config.to_dict()["data"], sort_keys=True).encode())
    return h.hexdigest()


@torch.no_grad()
def encode_codes(vq: VQVAE, x: torch.Tensor, batch_size: int = EVAL_BATCH) -> torch.Tensor:
    """Code maps of the rows of x, flattened: (N, ∏S') int64."""
    return torch.cat([vq.codes(x[s:s + batch_size]).flatten(1) for s in range(0, len(x), batch_size)])


def code_splits(run_dir) -> dict[str, tuple[torch.Tensor, torch.Tensor | None]]:
    """{split: (codes (N, ∏S') int64, labels)} of a vq-vae run's train / val / test images, encoded once.

    The images are exactly those the run was trained and evaluated on (its data config, splits and
    binarization); under dynamic binarization the training images are binarized once (seeded). The
    result is memoized in this process and cached in RUN/codes-cache.safetensors (keyed by a hash of
    the weights and data settings), so training, resuming and evaluating a prior encode only once.
    """
    from safetensors.torch import load as st_load
    from safetensors.torch import save as st_save

    from .. import runs
    from ..data.transforms import binarize, derive_seed, seeded_generator
    from ..trainer import prepare_data

    run_dir = Path(run_dir).expanduser().resolve()
    vq = _load_vqvae(run_dir)
    key = _fingerprint(run_dir, vq)
    if key in _CODES_MEMO:
        return _CODES_MEMO[key]
    cache = run_dir / CODES_CACHE
    result = None
    if cache.is_file():
        try:
            stored = st_load(cache.read_bytes())
            if bytes(stored["fingerprint"].tolist()).decode() == key:
                result = {s: (stored[f"{s}/codes"], stored.get(f"{s}/labels")) for s in ("train", "val", "test")}
        except Exception:  # a damaged cache is rebuilt
            result = None
    if result is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
        vq = vq.to(device)
        splits = prepare_data(vq.config, device)
        result = {}
        for name in ("train", "val", "test"):
            data = getattr(splits, name)
            x = data.x
            if name == "train" and splits.binarize == "dynamic":  # one fixed binary sample of the grey images
                x = binarize(x, seeded_generator(derive_seed("vq-codes", vq.config.data.seed), x.device))
            result[name] = (encode_codes(vq, x).cpu(), None if data.y is None else data.y.cpu())
        tensors = {"fingerprint": torch.tensor(list(key.encode()), dtype=torch.uint8)}
        for name, (codes, labels) in result.items():
            tensors[f"{name}/codes"] = codes.contiguous()
            if labels is not None:
                tensors[f"{name}/labels"] = labels.contiguous()
        try:
            runs.atomic_write_bytes(cache, st_save(tensors))
        except OSError:  # a read-only run folder: the codes are still memoized in this process
            pass
    _CODES_MEMO[key] = result
    return result


def load_vq_codes(data_dir=None, download: bool = True):
    """The ``vq-codes`` source: the pool is the run's train + val code maps, the test set its test code maps."""
    from ..data.sources import SourceData

    run = _load_vqvae(data_dir)
    parts = code_splits(data_dir)
    (tr, ytr), (va, yva), (te, yte) = parts["train"], parts["val"], parts["test"]
    labels = None if ytr is None else torch.cat([ytr, yva])
    return SourceData(x=torch.cat([tr, va]).float(), y=labels, image_shape=(1, *run.code_shape),
                      num_classes=run.config.shape.num_classes, name=CODES_DATASET, origin=str(data_dir),
                      test_x=te.float(), test_y=yte)


def prior_settings(codes_from, settings: dict) -> dict:
    """The settings of a prior on the codes of the vq-vae run ``codes_from`` (data and K from that run)."""
    from .. import runs

    run = Path(codes_from).expanduser().resolve()
    vq_cfg = runs.load_config(run)
    if vq_cfg.model.kind != "vq-vae":
        raise AekitError(f"{codes_from} is a {vq_cfg.model.kind} run, not a vq-vae; --codes-from needs a trained "
                         f"vq-vae run")
    if vq_cfg.shape is None:
        raise AekitError(f"{codes_from} never started training; train the vq-vae first")
    for key in ("data_dir", "labels", "binarize"):
        if settings.get(key) is not None:
            flag = "--" + key.replace("_", "-")
            raise AekitError(f"{flag} does not apply to train prior: its data are the codes of {codes_from}; drop it")
    fixed = {"codebook_size": vq_cfg.model.codebook_size, "code_dim": vq_cfg.model.code_dim}
    for key, value in fixed.items():
        if settings.get(key) is not None and settings[key] != value:
            flag = "--" + key.replace("_", "-")
            raise AekitError(f"the codes of {codes_from} have {flag} {value}, so the prior's is {value}, not "
                             f"{settings[key]}; drop {flag}")
    return {**settings, **fixed, "data_dir": str(run)}


def prior_cli_settings(model: str, codes_from, data, settings: dict) -> tuple[str, dict]:
    """``aekit train prior --codes-from RUN``: (data set name, settings) for api.build_config."""
    if model != "prior":
        raise AekitError(f"--codes-from is for aekit train prior, not {model}; drop it")
    if codes_from is None:
        raise AekitError("train prior needs --codes-from RUN, the vq-vae run whose code maps it models")
    if data is not None:
        raise AekitError(f"--data does not apply to train prior: its data are the codes of {codes_from}; drop it")
    return CODES_DATASET, prior_settings(codes_from, settings)


def train_prior(codes_from, out=None, **settings):
    """Train a prior on the codes of the vq-vae run ``codes_from``; returns the trained :class:`CodePrior`.

    Example: ``train_prior("runs/vq", out="runs/vq-prior", pixelcnn_layers=12, epochs=20)``.
    """
    from .. import api

    settings = prior_settings(codes_from, settings)
    if out is None:
        out = Path("runs") / f"prior-{Path(codes_from).name}"
    return api.train("prior", CODES_DATASET, out=out, **settings)


def load_prior_pair(vq_run, prior_run):
    """(vq-vae, prior) of two runs, checked to fit each other."""
    from .. import api, runs

    vq_cfg, prior_cfg = runs.load_config(Path(vq_run)), runs.load_config(Path(prior_run))
    if vq_cfg.model.kind != "vq-vae":
        raise AekitError(f"--prior needs a vq-vae run to decode the codes, but {vq_run} is a {vq_cfg.model.kind} run")
    if prior_cfg.model.kind != "prior":
        raise AekitError(f"--prior {prior_run} is a {prior_cfg.model.kind} run, not a prior; train one with "
                         f"aekit train prior --codes-from {vq_run}")
    vq, prior = api.load(vq_run), api.load(prior_run)
    check_prior_fits(vq, prior)
    return vq, prior


@torch.no_grad()
def sample_with_prior(vq: VQVAE, prior: CodePrior, n: int, y=None) -> dict:
    """n samples: codes from the prior (timed), decoded by the vq-vae. Returns codes, images, seconds."""
    start = time.perf_counter()
    codes = prior.sample_codes(n, y)
    seconds = time.perf_counter() - start
    return {"codes": codes, "x": vq.decode_codes(codes).mean, "seconds": seconds, "maps_per_second": n / seconds}


# ============================================================================= metrics
@torch.no_grad()
def code_counts(model: VQVAE, x: torch.Tensor, batch_size: int = EVAL_BATCH) -> torch.Tensor:
    """Assignments of every code over the rows of x: (K,) float64."""
    counts = torch.zeros(model.num_codes, dtype=torch.float64, device=x.device)
    for s in range(0, len(x), batch_size):
        counts += torch.bincount(model.codes(x[s:s + batch_size]).flatten(), minlength=model.num_codes).double()
    return counts


@torch.no_grad()
def codebook_usage(model: VQVAE, data, batch_size: int = 256) -> dict:
    """Codebook health on a split: codes used, dead codes and usage perplexity over the whole split (which
    do not depend on the batch size), beside the mean per-batch perplexity at ``batch_size``."""
    was_training = model.training
    model.eval()
    x = data.x if hasattr(data, "x") else data
    counts = code_counts(model, x)
    batch_perplexities = [float(perplexity(torch.bincount(model.codes(x[s:s + batch_size]).flatten(),
                                                          minlength=model.num_codes).double()))
                          for s in range(0, len(x), batch_size)]
    model.train(was_training)
    out = codebook_perplexity_and_usage(counts)
    out.update({"batch_perplexity": sum(batch_perplexities) / len(batch_perplexities),
                "batch_perplexity_batch_size": batch_size,
                "code_map": "x".join(map(str, model.code_shape)),
                "code_bits": math.prod(model.code_shape) * math.log2(model.num_codes)})
    return out


@torch.no_grad()
def prior_bound(vq: VQVAE, prior: CodePrior, data, batch_size: int = 500) -> dict:
    """The bound −log p(x) ≤ −log p(x | z_q) − log p_prior(z_q) on a split (nats per example, bits/dim).

    Also the same bound with a uniform prior over codes (−log p(z) = ∏S'·log K), which the learned prior
    must beat, and the prior's code likelihood in bits per code.
    """
    check_prior_fits(vq, prior)
    vq.eval(), prior.eval()
    rec = prior_nll = 0.0
    n = len(data)
    for s in range(0, n, batch_size):
        x = data.x[s:s + batch_size]
        y = None if data.y is None else data.y[s:s + batch_size]
        codes = vq.codes(x)
        rec += float(-vq.decode_codes(codes).log_prob(x).double().sum())
        prior_nll += float(-prior.log_prob(codes, y if prior.num_classes else None).double().sum())
    rec, prior_nll = rec / n, prior_nll / n
    positions = math.prod(vq.code_shape)
    uniform = positions * math.log(vq.num_codes)
    dims = data.x.shape[1] * math.log(2)
    return {"bound_nats": rec + prior_nll, "bound_bits_per_dim": (rec + prior_nll) / dims,
            "reconstruction": rec, "prior_nll": prior_nll, "prior_bits_per_code": prior_nll / (positions * math.log(2)),
            "uniform_prior_nll": uniform, "uniform_bound_nats": rec + uniform,
            "uniform_bound_bits_per_dim": (rec + uniform) / dims}


def evaluate_prior(prior: CodePrior, split: str = "test", batch_size: int = 500, device="cpu") -> dict:
    """The bound of a prior run on its vq-vae's images of ``split`` (loads the vq-vae from the prior's data)."""
    from ..trainer import prepare_data

    vq = _load_vqvae(prior.config.data.data_dir).to(device)
    check_prior_fits(vq, prior)
    data = getattr(prepare_data(vq.config, device), split)
    return prior_bound(vq, prior.to(device), data, batch_size)

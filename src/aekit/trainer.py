"""The one training loop for every gradient-trained model.

It only uses the model's face — ``loss(x, y, step)`` (per-example totals and named terms),
``evaluation_terms(x, y)`` and ``selection_metric`` — so it has nothing to do with any model in
particular. It provides: Adam with an optional LR schedule, gradient clipping, epochs or steps,
validation each epoch, early stopping, progress bars, ``metrics.jsonl`` and TensorBoard, atomic
checkpoints with exact resume, DistributedDataParallel under ``torchrun``, and mixed precision.

Exact resume: the data order and binarization noise of epoch e are a pure function of (seed, e)
(see ``BatchLoader``); the global RNG state (reparameterization noise) is saved in every
checkpoint; validation and figures run under ``fork_rng`` with fixed seeds so they never disturb
that stream. A run stopped after any checkpoint and resumed therefore takes the same steps with the
same numbers as an uninterrupted one.
"""

from __future__ import annotations

import math
import os
import time
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from . import runs
from .config import DataShape, RunConfig
from .data import BatchLoader, DataSplits, binarize_splits, load_data, value_levels
from .errors import AekitError, unknown_choice
from .latents import sharded_noise
from .likelihoods import check_data_range
from .models import build_model, get_spec

VALIDATION_SEED = 12345  # fixed noise for validation, so epochs are compared on equal terms
VALIDATION_BATCH = 1000


class TrainingDiverged(AekitError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


# ----------------------------------------------------------------------------- set-up helpers
def distributed_context() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's environment; (0, 1, 0) otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, 0
    return int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0"))


def resolve_device(spec: str, local_rank: int = 0) -> torch.device:
    if spec == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise AekitError(f"unknown device '{spec}'; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise AekitError("--device cuda was asked for but no CUDA GPU is available; use --device cpu")
    return device


def prepare_data(cfg: RunConfig, device: torch.device | None = None) -> DataSplits:
    """Load the configured data, check it suits the model, and move it to ``device``.

    ``binarize="auto"`` is resolved here (see :func:`resolve_binarization`); the trainer stores the
    resolved value in the run's config, so evaluation later reads exactly the data training saw.
    """
    d = cfg.data
    splits = load_data(d.name, data_dir=d.data_dir, binarize="none" if d.binarize == "auto" else d.binarize,
                       val_fraction=d.val_fraction, seed=d.seed, labels=d.labels)
    if d.binarize == "auto":
        resolved = resolve_binarization(cfg, splits)
        if resolved != "none":
            splits = binarize_splits(splits, resolved, d.seed)
    # Grey-level train data under dynamic binarization is binarized per batch, so [0, 1] suffices.
    check_data_range(cfg.model.likelihood, splits.train.x, f"the {d.name} data")
    if cfg.model.kind == "cvae" and splits.train.y is None:
        raise AekitError(f"cvae needs labels, but {d.name} has none; pass --labels FILE or choose labelled data")
    return splits.to(device) if device is not None else splits


def resolve_binarization(cfg: RunConfig, splits: DataSplits) -> str:
    """What ``binarize="auto"`` means for this model and data.

    A Bernoulli likelihood is a distribution over binary data: on grey levels its "log-likelihood" is
    a cross-entropy, not the log of a probability (on [0, 1] the Bernoulli "density" integrates to
    between 1/8 and 1/2). So a model that reports log p(x) with Bernoulli pixels on grey data gets
    dynamic binarization (Salakhutdinov & Murray 2008; Burda et al. 2016): train pixels resampled every
    epoch, val and test binarized once. Models that report no likelihood (the autoencoders) keep the
    grey values, with the cross-entropy as their reconstruction loss.
    """
    from .capabilities import LOG_LIKELIHOOD, has

    if cfg.model.likelihood != "bernoulli" or value_levels(splits.train.x) in (2, None):
        return "none"
    model = build_model(cfg.model, data_shape(splits))
    return "dynamic" if has(model, LOG_LIKELIHOOD) else "none"


def data_shape(splits: DataSplits) -> DataShape:
    """The shape the model is built for; ``levels`` is that of the evaluation data (val and test)."""
    return DataShape(splits.data_dim, splits.image_shape, splits.num_classes, value_levels(splits.test.x))


def check_names(cfg: RunConfig) -> None:
    """Refuse unknown names before any data is read, listing the valid ones."""
    from .likelihoods import LIKELIHOODS
    from .models import SPECS
    from .nets import ACTIVATIONS, BODIES
    from .priors import PRIORS

    for kind, given, valid in (("model", cfg.model.kind, SPECS), ("likelihood", cfg.model.likelihood, LIKELIHOODS),
                               ("prior", cfg.model.prior, PRIORS), ("body", cfg.model.body, BODIES),
                               ("activation", cfg.model.activation, ACTIVATIONS)):
        if given not in valid:
            raise unknown_choice(kind, given, valid)


def _lr_lambda(kind: str, total_steps: int):
    if kind == "cosine":
        return lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total_steps) / total_steps))
    if kind == "step":
        return lambda s: 0.1 ** ((s >= 0.5 * total_steps) + (s >= 0.75 * total_steps))
    return lambda s: 1.0


@torch.no_grad()
def evaluate_terms(model, data, batch_size: int = VALIDATION_BATCH) -> dict[str, float]:
    """Mean of each evaluation term over a split (nats per example), with fixed noise."""
    was_training = model.training
    model.eval()
    sums: dict[str, torch.Tensor] = {}
    with torch.random.fork_rng(devices=[data.x.device] if data.x.device.type == "cuda" else []):
        torch.manual_seed(VALIDATION_SEED)
        for start in range(0, len(data), batch_size):
            x = data.x[start:start + batch_size]
            y = None if data.y is None else data.y[start:start + batch_size]
            for k, v in model.evaluation_terms(x, y).items():
                sums[k] = sums.get(k, 0) + v.double().sum()
    model.train(was_training)
    return {k: float(v) / len(data) for k, v in sums.items()}


# ----------------------------------------------------------------------------- the loop
def fit(cfg: RunConfig, out: str | Path, *, resume: bool = False, splits: DataSplits | None = None):
    """Train the model ``cfg`` describes into the run folder ``out`` (or resume it); returns the model."""
    rank, world, local_rank = distributed_context()
    device = resolve_device(cfg.train.device, local_rank)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    is_writer = rank == 0
    out = Path(out)
    tc = cfg.train

    check_names(cfg)
    torch.manual_seed(tc.seed)
    splits = (splits or prepare_data(cfg)).to(device)
    cfg = cfg.replace(shape=data_shape(splits), data=replace(cfg.data, binarize=splits.binarize))
    spec = get_spec(cfg.model.kind)
    if not spec.gradient_trained:
        return _fit_by_procedure(cfg, out, splits, resume, is_writer)
    model = build_model(cfg.model, cfg.shape).to(device)

    loader = BatchLoader(splits.train, tc.batch_size, shuffle=True, drop_last=tc.drop_last,
                         dynamic_binarize=splits.binarize == "dynamic", seed=tc.seed, rank=rank, world_size=world)
    if len(loader) == 0:
        raise AekitError(f"batch size {tc.batch_size} leaves no batch; the training split has {len(splits.train)} rows")
    total_steps = tc.steps if tc.steps is not None else tc.epochs * len(loader)
    num_epochs = math.ceil(total_steps / len(loader))

    optimizer = torch.optim.Adam(model.parameters(), lr=tc.lr, betas=tc.betas, eps=tc.eps, weight_decay=tc.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(tc.lr_schedule, total_steps))

    step, history, best = 0, [], math.inf
    if resume:
        state = runs.load_checkpoint(out)
        runs.load_weights(out / runs.LAST, model)
        try:
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
        except (ValueError, KeyError) as e:
            raise AekitError(f"checkpoint in {out} does not fit its config ({e})") from None
        step, history, best = state["step"], state["history"], state["best"]
        torch.set_rng_state(state["rng_cpu"])
        if device.type == "cuda" and state.get("rng_cuda") is not None:
            torch.cuda.set_rng_state(state["rng_cuda"], device)
        if state.get("stopped_early"):
            if is_writer:
                print(f"{out}: training had stopped early at step {step}; nothing to resume")
            return model
    else:
        if spec.initialize is not None:
            spec.initialize(model, splits.train.x, cfg, progress=tc.progress and is_writer)
        if is_writer:
            out.mkdir(parents=True, exist_ok=True)
            runs.save_config(out, cfg)
    if step >= total_steps:
        if is_writer:
            print(f"{out}: already trained for {step} steps ({num_epochs} epochs); raise --epochs to continue")
        return model

    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    writer = _tensorboard(out) if is_writer else None
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if (tc.amp and device.type == "cuda") else nullcontext()
    show_progress = tc.progress and is_writer

    def save(stopped_early: bool = False):
        if not is_writer:
            return
        runs.save_weights(out / runs.LAST, model)
        runs.write_metrics(out, history)
        runs.save_checkpoint(out, {
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "step": step,
            "history": history, "best": best, "stopped_early": stopped_early, "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        })

    epochs_without_improvement = 0
    last_figures = -math.inf  # the first epoch draws, so a run's figures appear early
    if history:
        best_epoch = min(range(len(history)), key=lambda i: history[i]["val/loss"])
        epochs_without_improvement = len(history) - 1 - best_epoch
    # A model with state that is not a gradient step (an EMA codebook, a moving-average baseline)
    # updates it here, explicitly, once per optimizer step: never as a side effect of forward.
    after_step = getattr(model, "after_step", None)
    model.train()
    with sharded_noise(rank, world):
        for epoch in range(step // len(loader), num_epochs):
            loader.set_epoch(epoch, start_batch=step % len(loader))
            sums: dict[str, torch.Tensor] = {}
            count = 0
            start_time = time.perf_counter()
            bar = tqdm(loader, desc=f"epoch {epoch + 1}/{num_epochs}", disable=not show_progress,
                       leave=False, mininterval=0.5, dynamic_ncols=True)
            for x, y in bar:
                with amp:
                    result = net(x, y, step)
                loss = result.total.float().mean()
                if not torch.isfinite(loss):
                    bar.close()
                    raise TrainingDiverged(
                        f"loss became {float(loss.detach())} at step {step + 1} (epoch {epoch + 1}); training stopped and "
                        f"the last good checkpoint in {out} was kept; try a lower --lr or --grad-clip")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if tc.grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
                optimizer.step()
                scheduler.step()
                step += 1
                if after_step is not None:
                    after_step(step)
                count += 1
                sums["loss"] = sums.get("loss", 0) + loss.detach()
                for k, v in result.terms.items():
                    sums[k] = sums.get(k, 0) + v.detach().float().mean()
                if show_progress and count % 20 == 0:
                    bar.set_postfix({k: f"{float(v) / count:.2f}" for k, v in sums.items()}, refresh=False)
                if step >= total_steps:
                    break
            bar.close()
            train_time = time.perf_counter() - start_time

            val = evaluate_terms(model, splits.val)
            val_loss = val[model.selection_metric]
            record = {"epoch": epoch + 1, "step": step, "lr": scheduler.get_last_lr()[0],
                      "beta": getattr(model, "kl_schedule", lambda s: None)(step),
                      "epoch_seconds": train_time, "examples_per_second": count * tc.batch_size / max(train_time, 1e-9),
                      **{f"train/{k}": float(v) / max(count, 1) for k, v in sums.items()},
                      **{f"val/{k}": v for k, v in val.items()}, "val/loss": val_loss}
            history.append(record)
            improved = val_loss < best
            if improved:
                best, epochs_without_improvement = val_loss, 0
                if is_writer:
                    runs.save_weights(out / runs.BEST, model)
            else:
                epochs_without_improvement += 1
            stop_early = tc.patience is not None and epochs_without_improvement >= tc.patience
            save(stopped_early=stop_early)
            if is_writer:
                _log(writer, record)
                terms = "  ".join(f"{k}={v:.3f}" for k, v in record.items() if k.startswith(("train/", "val/")))
                tqdm.write(f"epoch {epoch + 1}/{num_epochs}  step {step}  {terms}  ({train_time:.1f}s)")
                last = stop_early or step >= total_steps
                due = time.perf_counter() - last_figures >= tc.figure_seconds
                if tc.figures == "epoch" or (tc.figures in ("end", "auto") and last) or (tc.figures == "auto" and due):
                    from .plots import draw_run_figures
                    draw_run_figures(model, splits, out, history, curves=last)
                    last_figures = time.perf_counter()
            if stop_early:
                if is_writer:
                    tqdm.write(f"early stopping: no validation improvement for {tc.patience} epochs")
                break
    if writer is not None:
        writer.close()
    return model


def _fit_by_procedure(cfg: RunConfig, out: Path, splits: DataSplits, resume: bool, is_writer: bool):
    """Closed-form / EM / CD models: fit once on the training split, then write the same run folder."""
    if resume:
        if is_writer:
            print(f"{out}: {cfg.model.kind} is fitted in one go ({cfg.model.method if cfg.model.kind == 'ppca' else 'closed form'}); "
                  "nothing to resume")
        return _load_fitted(cfg, out, splits.train.x.device)
    start = time.perf_counter()
    model = build_model(cfg.model, cfg.shape).to(splits.train.x.device)
    model = get_spec(cfg.model.kind).fit(model, splits.train.x, cfg, progress=cfg.train.progress and is_writer)
    seconds = time.perf_counter() - start
    record = {"epoch": 1, "step": 1, "fit_seconds": seconds, **getattr(model, "fit_info", {}),
              **{f"train/{k}": v for k, v in evaluate_terms(model, splits.train).items()},
              **{f"val/{k}": v for k, v in evaluate_terms(model, splits.val).items()}}
    record["val/loss"] = record[f"val/{model.selection_metric}"]
    if is_writer:
        out.mkdir(parents=True, exist_ok=True)
        runs.save_config(out, cfg)
        runs.save_weights(out / runs.BEST, model)
        runs.save_weights(out / runs.LAST, model)
        runs.write_metrics(out, [record])
        terms = "  ".join(f"{k}={v:.3f}" for k, v in record.items() if k.startswith(("train/", "val/")))
        tqdm.write(f"fitted {cfg.model.kind} in {seconds:.2f}s  {terms}")
        if cfg.train.figures != "none":
            from .plots import draw_run_figures
            draw_run_figures(model, splits, out, [record], curves=False)
    return model


def _load_fitted(cfg: RunConfig, out: Path, device):
    model = build_model(cfg.model, cfg.shape)
    runs.load_weights(out / runs.LAST, model)
    return model.to(device)


def _tensorboard(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is a dependency, but a broken install must not stop training
        return None
    return SummaryWriter(log_dir=str(out / "tb"))


def _log(writer, record: dict) -> None:
    if writer is None:
        return
    for k, v in record.items():
        if isinstance(v, (int, float)) and k not in ("epoch", "step") and v is not None:
            writer.add_scalar(k, v, record["step"])
    writer.flush()

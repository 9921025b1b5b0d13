"""The one training loop for every gradient-trained model.

It only uses the model's face — ``loss(x, y, step)`` (per-example totals and named terms),
``evaluation_terms(x, y)``, ``selection_metric`` and the optional ``after_step(step)`` — so it has
nothing to do with any model in particular. The contract of ``after_step``: it is called once after
every optimizer step, and a model whose state is not a gradient step (an EMA codebook, a running
baseline) updates it there from statistics its ``loss`` stashed in training mode for that step's
batch — one ``loss`` call per step. It provides: Adam with an optional LR schedule, gradient
clipping, epochs or steps, validation each epoch, early stopping, progress bars, ``metrics.jsonl`` and
TensorBoard, checkpoints committed as generations (see :mod:`aekit.runs`) with exact resume,
DistributedDataParallel under ``torchrun``, and mixed precision.

Checkpoints: one at step 0 (so a run killed in its first epoch resumes), one after every epoch, and
one mid-epoch whenever ``checkpoint_seconds`` have passed since the last. Each holds the weights, the
optimizer and schedule, the RNG state, the epoch's running sums and the history, committed together.

Exact resume: the data order and binarization noise of epoch e are a pure function of (seed, e)
(see ``BatchLoader``); the global RNG state (reparameterization noise) is in every checkpoint;
validation and figures run under ``fork_rng`` with fixed seeds so they never disturb that stream. A
run stopped anywhere and resumed therefore takes the same steps with the same numbers as an
uninterrupted one, from its newest complete checkpoint.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import sys
import tempfile
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


def prepare_data(cfg: RunConfig, device: torch.device | None = None, *, loaded: DataSplits | None = None) -> DataSplits:
    """Load the configured data, check it suits the model, and move it to ``device``.

    Every data setting reaches the data layer through :func:`aekit.data.splits.load_configured`
    (the one-class protocol, series windows, ...). ``binarize="auto"`` is resolved here (see
    :func:`resolve_binarization`); the trainer stores the resolved value in the run's config, so
    evaluation later reads exactly the data training saw. NaN (missing entries) passes only for the
    kinds that train with missing data. ``loaded``: the splits of ``cfg.data`` already read with
    ``binarize="none"`` (a benchmark training several kinds on one data set reads it once).
    """
    from .data.splits import load_configured

    d = cfg.data
    allow_missing = accepts_missing(cfg)
    wanted = "none" if d.binarize == "auto" else d.binarize
    if loaded is None:
        splits = load_configured(d, binarize=wanted, allow_missing=allow_missing)
    elif loaded.binarize != "none":
        raise ValueError("loaded splits must be read with binarize='none'")
    else:
        splits = loaded if wanted == "none" else binarize_splits(loaded, wanted, d.seed)
    has_missing = allow_missing and bool(torch.isnan(splits.train.x).any())
    if has_missing and splits.binarize != "none":
        raise AekitError("binarization would fill the missing entries (NaN); binarize the data yourself, keeping "
                         "NaN, and use --binarize none")
    if d.binarize == "auto" and not has_missing:
        resolved = resolve_binarization(cfg, splits)
        if resolved != "none":
            splits = binarize_splits(splits, resolved, d.seed)
    # Grey-level train data under dynamic binarization is binarized per batch, so [0, 1] suffices.
    observed = splits.train.x[~torch.isnan(splits.train.x)] if has_missing else splits.train.x
    check_data_range(cfg.model.likelihood, observed, f"the {d.name} data")
    if cfg.model.kind == "cvae" and splits.train.y is None:
        raise AekitError(f"cvae needs labels, but {d.name} has none; pass --labels FILE or choose labelled data")
    return splits.to(device) if device is not None else splits


def accepts_missing(cfg: RunConfig) -> bool:
    """Whether the kind trains and scores on data with NaN marking missing entries."""
    return cfg.model.kind in _missing_data_kinds()


@functools.lru_cache(maxsize=None)
def _missing_data_kinds() -> tuple[str, ...]:
    from .capabilities import MISSING_DATA
    from .models import kinds_with

    return tuple(kinds_with(MISSING_DATA))


def resolve_binarization(cfg: RunConfig, splits: DataSplits) -> str:
    """What ``binarize="auto"`` means for this model and data.

    A Bernoulli likelihood is a distribution over binary data: on grey levels its "log-likelihood" is
    a cross-entropy, not the log of a probability (on [0, 1] the Bernoulli "density" integrates to
    between 1/8 and 1/2). So a model that reports log p(x) with Bernoulli pixels on grey data gets
    dynamic binarization (Salakhutdinov & Murray 2008; Burda et al. 2016): train pixels resampled every
    epoch, val and test binarized once. Models that report no likelihood (the autoencoders) keep the
    grey values, with the cross-entropy as their reconstruction loss.
    """
    from .capabilities import CORRUPTS_INPUT, LOG_LIKELIHOOD, has

    if cfg.model.likelihood not in ("bernoulli", "pixelcnn") or value_levels(splits.train.x) in (2, None):
        return "none"
    with torch.random.fork_rng(devices=[]):  # building the model to ask it must not move the run's RNG
        model = build_model(cfg.model, data_shape(splits))
    # A restorer (a model trained to undo a corruption) has the grey image as its target: binarizing it
    # would make the target noise. Its likelihood is a training loss, not the figure it is for.
    if has(model, CORRUPTS_INPUT):
        return "none"
    return "dynamic" if has(model, LOG_LIKELIHOOD) else "none"


def data_shape(splits: DataSplits) -> DataShape:
    """The shape the model is built for; ``levels`` is that of the evaluation data (val and test)."""
    x = splits.test.x
    observed = x[~torch.isnan(x)] if bool(torch.isnan(x).any()) else x  # missing entries are not a level
    return DataShape(splits.data_dim, splits.image_shape, splits.num_classes, value_levels(observed),
                     data_fingerprint(splits))


def data_fingerprint(splits: DataSplits) -> str:
    """A short digest of the data (shapes, sums, every 97th row of each split, the binarization).

    A resumed run checks it, so a --data-dir pointing at other data is refused rather than trained on.
    """
    import hashlib

    h = hashlib.sha256(splits.binarize.encode())
    for split in (splits.train, splits.val, splits.test):
        x = split.x.detach().to("cpu")
        h.update(str(tuple(x.shape)).encode() + repr(float(x.double().sum())).encode())
        h.update(x[::97].contiguous().numpy().tobytes())
        if split.y is not None:
            h.update(split.y.detach().to("cpu")[::97].contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


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
    """The learning rate's factor at step s of ``total_steps``:

    * cosine: ½(1 + cos(π s / T));
    * warmup-cosine: (s + 1)/W for the first W = ⌈T / 10⌉ steps, then ½(1 + cos(π (s − W)/(T − W))) —
      a linear warm-up lets a learning rate several times the constant one start without the early
      collapse it would cause, and the decay to 0 settles the run at its budget (BENCHMARKS.md §3);
    * step: ×0.1 at 50% and at 75% of T; none: 1.
    """
    if kind == "cosine":
        return lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total_steps) / total_steps))
    if kind == "warmup-cosine":
        warm = max(1, math.ceil(total_steps / 10))
        rest = max(1, total_steps - warm)
        return lambda s: (s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * min(s - warm, rest) / rest))
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


# ----------------------------------------------------------------------------- run folders
# Settings a resumed run may change; everything else must match the stored config (or is refused).
RESUMABLE_TRAIN = frozenset({"epochs", "steps", "patience", "figures", "figure_seconds", "checkpoint_seconds",
                             "progress", "threads", "device", "amp"})
RESUMABLE_DATA = frozenset({"data_dir", "name", "labels"})  # where the data is; its fingerprint must match


def resumed_config(stored: RunConfig, changes: dict | None) -> tuple[RunConfig, dict]:
    """The stored config with the resumable ``changes`` applied; any other differing setting is refused.

    ``changes`` maps a setting name (a field of TrainConfig, DataConfig or ModelConfig) to the value the
    user gave. Returns the new config and the changes that differ from the stored values.
    """
    import dataclasses

    if not changes:
        return stored, {}
    sections = {"train": stored.train, "data": stored.data, "model": stored.model}
    effective, refused = {}, []
    for name, value in changes.items():
        section = next((s for s, obj in sections.items() if name in {f.name for f in dataclasses.fields(obj)}), None)
        if section is None:
            raise AekitError(f"unknown setting '{name}'")
        current = getattr(sections[section], name)
        if name in ("data_dir", "name", "labels") and value is not None and (name == "data_dir" or Path(value).suffix):
            from .data.timeseries import SERIES_PREFIX, is_series_name

            prefix = SERIES_PREFIX if is_series_name(value) else ""
            value = prefix + str(Path(value[len(prefix):]).expanduser().resolve())
        if isinstance(current, tuple) and isinstance(value, list):
            value = tuple(value)
        if value == current:
            continue
        if name in RESUMABLE_TRAIN or name in RESUMABLE_DATA:
            effective[name] = value
        else:
            refused.append((name, current, value))
    if refused:
        what = "; ".join(f"--{n.replace('_', '-')} is {c!r} in this run, not {v!r}" for n, c, v in refused)
        raise AekitError(f"a resumed run keeps its model, data and optimizer settings ({what}); start a new run "
                         f"to change them (resume may change: epochs, steps, patience, figures, progress, "
                         f"threads, device, and where the data is: --data-dir, --data FILE)")
    train = dataclasses.replace(stored.train, **{k: v for k, v in effective.items() if k in RESUMABLE_TRAIN})
    data = dataclasses.replace(stored.data, **{k: v for k, v in effective.items() if k in RESUMABLE_DATA})
    return stored.replace(train=train, data=data), effective


def _check_new_folder(out: Path, force: bool) -> None:
    """A fresh run goes into a new or empty folder; a run folder, or the user's files, are refused.

    What an aekit command killed before it wrote config.json can leave (hidden temporary files) does
    not count: the folder is still empty, and the next start cleans it.
    """
    if runs.is_run(out):
        raise AekitError(f"{out} already holds a run; continue it with aekit train --resume {out}, or pick another "
                         f"--out")
    if out.exists() and not out.is_dir():
        raise AekitError(f"{out} is a file, not a folder; pick another --out")
    if out.is_dir() and any(not runs.is_leftover(p) for p in out.iterdir()) and not force:
        raise AekitError(f"{out} is not empty and is not an aekit run; pick a new --out, or pass --force to write "
                         f"the run into it (files with a run file's name would be replaced)")


class _Folder:
    """The run folder while one command writes it: lock, then checks, then the first write."""

    def __init__(self, out: Path, is_writer: bool, fresh: bool, force: bool):
        self.out, self.is_writer = out, is_writer
        self.created = False
        self.lock = runs.RunLock(out)
        if not is_writer:
            return
        if fresh:
            _check_new_folder(out, force)
            if not out.exists():
                try:
                    out.mkdir(parents=True)
                except FileExistsError:
                    pass
                except OSError as e:
                    raise runs.write_error(out, e) from None
                else:
                    self.created = True
            self._probe_writable()
        self.lock.acquire()
        if fresh:
            try:
                _check_new_folder(out, force)  # again under the lock: another command may have won the race
            except AekitError:
                self.lock.release()
                raise

    def _probe_writable(self) -> None:
        try:
            with tempfile.NamedTemporaryFile(dir=self.out, prefix=".probe.", suffix=".tmp"):
                pass
        except OSError as e:
            self._discard()
            raise runs.write_error(self.out, e) from None

    def begin_writing(self, command: str) -> None:
        """Everything was checked: from here on the folder may change."""
        if self.is_writer:
            runs.clean_temporary(self.out)
            self.lock.announce(command)

    def _discard(self) -> None:
        if self.created:
            with contextlib.suppress(OSError):
                self.out.rmdir()  # only if still empty: nothing of the user's is ever removed
            self.created = False

    def close(self, failed: bool) -> None:
        if self.is_writer:
            self.lock.release()
            if failed and not runs.is_run(self.out):
                self._discard()


@contextlib.contextmanager
def _writing(out: Path, is_writer: bool, fresh: bool, force: bool):
    folder = _Folder(out, is_writer, fresh, force)
    failed = True
    try:
        yield folder
        failed = False
    finally:
        folder.close(failed)


def _say(is_writer: bool, text: str) -> None:
    if is_writer:
        tqdm.write(text)


# ----------------------------------------------------------------------------- the loop
def fit(cfg: RunConfig | None, out: str | Path, *, resume: bool = False, splits: DataSplits | None = None,
        changes: dict | None = None, force: bool = False):
    """Train the model ``cfg`` describes into the run folder ``out``, or resume ``out``; returns the model.

    Resuming (``resume=True``, ``cfg`` None): the stored config with the resumable ``changes`` applied
    (see :func:`resumed_config`), continued from the newest complete checkpoint; a run that never
    completed one restarts in place. Nothing in the folder changes until every check has passed.
    """
    rank, world, local_rank = distributed_context()
    out = Path(out)
    is_writer = rank == 0
    if resume:
        stored = runs.load_config(out)
        cfg, changed = resumed_config(stored, changes)
    with _writing(out, is_writer, fresh=not resume, force=force) as folder:
        generation = None
        if resume:
            generation = runs.newest_generation(out)
            if generation is not None:
                generation.verify()
        device = resolve_device(cfg.train.device, local_rank)
        if world > 1 and (getattr(cfg.model, "latent", "gaussian") != "gaussian" or cfg.model.kind == "helmholtz"):
            raise AekitError("multi-process training of discrete latents would not match one process (torch's "
                             "samplers draw per process, not from the shared global-batch noise); train in one process")
        if world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        if device.type == "cuda":
            torch.cuda.set_device(device)
        check_names(cfg)
        torch.manual_seed(cfg.train.seed)
        if splits is None:
            splits = prepare_data(cfg)
        splits = splits.to(device)
        shape = data_shape(splits)
        if resume and cfg.shape is not None and cfg.shape.fingerprint not in (None, shape.fingerprint):
            raise AekitError(f"the data found for {out} ({cfg.data.name} in {cfg.data.data_dir or 'the default folder'}) "
                             f"is not the data this run was trained on; point --data-dir at the original files")
        cfg = cfg.replace(shape=shape, data=replace(cfg.data, binarize=splits.binarize))
        spec = get_spec(cfg.model.kind)
        if not spec.gradient_trained:
            return _fit_by_procedure(cfg, out, splits, folder, generation, is_writer)
        return _train(cfg, out, splits, folder, generation, is_writer, rank, world, device,
                      changed if resume else {})


def _train(cfg: RunConfig, out: Path, splits: DataSplits, folder: _Folder, generation, is_writer: bool,
           rank: int, world: int, device: torch.device, changed: dict):
    tc = cfg.train
    spec = get_spec(cfg.model.kind)
    model = build_model(cfg.model, cfg.shape).to(device)
    governor = None
    if device.type == "cpu":
        from .threads import ThreadGovernor, step_flops

        governor = ThreadGovernor(tc.threads, step_flops(model, tc.batch_size // world))
    loader = BatchLoader(splits.train, tc.batch_size, shuffle=True, drop_last=tc.drop_last,
                         dynamic_binarize=splits.binarize == "dynamic", seed=tc.seed, rank=rank, world_size=world)
    if len(loader) == 0:
        raise AekitError(f"--batch-size {tc.batch_size} leaves no batch; the training split has {len(splits.train)} rows")
    total_steps = tc.steps if tc.steps is not None else tc.epochs * len(loader)
    num_epochs = math.ceil(total_steps / len(loader))
    optimizer = make_adam(model, tc, device, say=is_writer)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(tc.lr_schedule, total_steps))

    state = {"step": 0, "history": [], "best": math.inf, "epochs_without_improvement": 0, "stopped_early": False,
             "epoch_sums": {}, "epoch_count": 0, "epoch_seconds": 0.0, "settings_changes": []}
    if generation is not None:
        saved = generation.training_state()
        generation.load_weights(model)
        try:
            optimizer.load_state_dict(saved["optimizer"])
            scheduler.load_state_dict(saved["scheduler"])
        except (ValueError, KeyError, TypeError) as e:
            raise AekitError(f"the checkpoint in {generation.path} does not fit its config ({e})") from None
        if hasattr(model, "load_training_state") and saved.get("model_state") is not None:
            model.load_training_state(saved["model_state"])
        for key in state:
            if key in saved:
                state[key] = saved[key]
        torch.set_rng_state(saved["rng_cpu"])
        if device.type == "cuda" and saved.get("rng_cuda") is not None:
            torch.cuda.set_rng_state(saved["rng_cuda"], device)
        # The schedule follows the (possibly new) total: LambdaLR keeps only the step it reached.
        scheduler.lr_lambdas = [_lr_lambda(tc.lr_schedule, total_steps)]
    step = state["step"]
    if changed:
        state["settings_changes"] = [*state["settings_changes"], {"step": step, "changes": changed}]

    # -- every check has passed: from here the folder changes
    folder.begin_writing("train --resume" if generation is not None or changed else "train")
    if is_writer and (generation is None or changed):
        runs.save_config(out, cfg)

    def training_state(stopped_early: bool = False) -> dict:
        return {**state, "step": step, "stopped_early": stopped_early,
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "rng_cpu": torch.get_rng_state(),
                "rng_cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
                "model_state": model.training_state() if hasattr(model, "training_state") else None}

    def commit(best_changed: bool, stopped_early: bool = False):
        nonlocal generation
        if not is_writer:
            return
        weights = runs._state_tensors(model)
        runs.write_metrics(out, state["history"])  # before the commit: the view is never behind it
        generation = runs.commit_generation(out, step=step, model_state=weights,
                                            best_state=weights if best_changed else None,
                                            training=training_state(stopped_early), previous=generation)
        runs.refresh_views(out, generation)

    if generation is None:
        if spec.initialize is not None:
            spec.initialize(model, splits.train.x, cfg, progress=_progress(tc) and is_writer)
        commit(best_changed=False)  # step 0: a run killed in its first epoch resumes from here
        _say(is_writer, f"training {cfg.model.kind} on {cfg.data.name} into {out}: {total_steps} steps "
                        f"({num_epochs} epochs of {len(loader)} batches)")
    else:
        if is_writer:
            runs.write_metrics(out, state["history"])
            runs.refresh_views(out, generation)
        if state["stopped_early"]:
            _say(is_writer, f"{out}: training had stopped early at step {step}; nothing to resume")
            return model
        if step >= total_steps:
            _say(is_writer, f"{out}: already trained for {step} steps ({num_epochs} epochs); raise --epochs to continue")
            return model
        _say(is_writer, f"resuming {out} at step {step} (epoch {step // len(loader) + 1}, batch "
                        f"{step % len(loader) + 1} of {len(loader)}), training to step {total_steps}"
                        + (f"; changed: {', '.join(f'{k}={v}' for k, v in changed.items())}" if changed else ""))

    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    writer = _tensorboard(out, purge_step=step if generation is not None and step > 0 else None) if is_writer else None
    amp = autocast(device, say=is_writer) if tc.amp else nullcontext()
    show_progress = _progress(tc) and is_writer
    # A model with state that is not a gradient step (an EMA codebook, a moving-average baseline)
    # updates it here, explicitly, once per optimizer step: never as a side effect of forward.
    after_step = getattr(model, "after_step", None)
    last_figures = -math.inf  # the first epoch draws, so a run's figures appear early
    last_checkpoint = time.perf_counter()
    model.train()
    try:
        with sharded_noise(rank, world):
            for epoch in range(step // len(loader), num_epochs):
                loader.set_epoch(epoch, start_batch=step % len(loader))
                sums: dict[str, torch.Tensor] = state["epoch_sums"]
                count = state["epoch_count"]
                epoch_start = time.perf_counter() - state["epoch_seconds"]
                bar = tqdm(loader, desc=f"epoch {epoch + 1}/{num_epochs}", disable=not show_progress,
                           leave=False, mininterval=0.5, dynamic_ncols=True)
                for x, y in bar:
                    with amp:
                        result = net(x, y, step)
                    loss = result.total.float().mean()
                    if not torch.isfinite(loss):
                        bar.close()
                        raise TrainingDiverged(
                            f"loss became {float(loss.detach())} at step {step + 1} (epoch {epoch + 1}); training "
                            f"stopped and the last good checkpoint (step {generation.step if generation else 0}) in "
                            f"{out} was kept; try a lower --lr or --grad-clip")
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    if tc.grad_clip is not None:
                        torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
                    optimizer.step()
                    scheduler.step()
                    step += 1
                    if after_step is not None:
                        after_step(step)
                    if governor is not None:
                        governor.update()  # cheap: re-counts the free cores every RECHECK_SECONDS
                    count += 1
                    sums["loss"] = sums.get("loss", 0) + loss.detach()
                    for k, v in result.terms.items():
                        sums[k] = sums.get(k, 0) + v.detach().float().mean()
                    if show_progress and count % 20 == 0:
                        bar.set_postfix({k: f"{float(v) / count:.2f}" for k, v in sums.items()}, refresh=False)
                    if step >= total_steps:
                        break
                    if time.perf_counter() - last_checkpoint >= tc.checkpoint_seconds and count < len(loader):
                        state.update(epoch_sums=sums, epoch_count=count,
                                     epoch_seconds=time.perf_counter() - epoch_start)
                        commit(best_changed=False)
                        last_checkpoint = time.perf_counter()
                bar.close()
                train_time = time.perf_counter() - epoch_start

                val = evaluate_terms(model, splits.val)
                val_loss = val[model.selection_metric]
                record = {"epoch": epoch + 1, "step": step, "lr": scheduler.get_last_lr()[0],
                          **({"beta": model.kl_schedule(step)} if _acting_beta(model) else {}),
                          "epoch_seconds": train_time, "examples_per_second": count * tc.batch_size / max(train_time, 1e-9),
                          **{f"train/{k}": float(v) / max(count, 1) for k, v in sums.items()},
                          **{f"val/{k}": v for k, v in val.items()}, "val/loss": val_loss}
                state["history"] = [*state["history"], record]
                improved = val_loss < state["best"]
                if improved:
                    state["best"], state["epochs_without_improvement"] = val_loss, 0
                else:
                    state["epochs_without_improvement"] += 1
                stop_early = tc.patience is not None and state["epochs_without_improvement"] >= tc.patience
                state.update(epoch_sums={}, epoch_count=0, epoch_seconds=0.0)
                commit(best_changed=improved, stopped_early=stop_early)
                last_checkpoint = time.perf_counter()
                if is_writer:
                    _log(writer, record)
                    terms = "  ".join(f"{k}={v:.3f}" for k, v in record.items() if k.startswith(("train/", "val/")))
                    tqdm.write(f"epoch {epoch + 1}/{num_epochs}  step {step}  {terms}  ({train_time:.1f}s)")
                    last = stop_early or step >= total_steps
                    due = time.perf_counter() - last_figures >= tc.figure_seconds
                    if tc.figures == "epoch" or (tc.figures in ("end", "auto") and last) or (tc.figures == "auto" and due):
                        from .plots import draw_run_figures
                        draw_run_figures(model, splits, out, state["history"], curves=last)
                        last_figures = time.perf_counter()
                if stop_early:
                    _say(is_writer, f"early stopping: no validation improvement for {tc.patience} epochs")
                    break
    finally:
        if writer is not None:
            writer.close()
    return model


def cpu_has_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 matrices natively (AVX512-BF16 or AMX-BF16).

    oneDNN also runs bf16 on plain AVX-512 by converting to float32, which is slower than float32
    itself, so torch's own ``_is_mkldnn_bf16_supported`` (true there) is not the test: the flags are.
    """
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:  # not Linux: no way to tell here, so no autocast
        return False
    return bool({"avx512_bf16", "amx_bf16"} & set(flags)) and torch.backends.mkldnn.is_available()


def autocast(device: torch.device, say: bool = True):
    """``--amp``: bfloat16 autocast of the forward pass (matrix products and convolutions in bf16,
    reductions and the loss in float32) on a GPU, or on a CPU with native bf16 arithmetic; elsewhere
    float32, said in one line (bf16 emulated in software would be slower than float32)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    if device.type == "cpu" and cpu_has_bf16():
        return torch.autocast("cpu", dtype=torch.bfloat16)
    if say:
        tqdm.write("--amp: this CPU has no native bfloat16 arithmetic (AVX512-BF16 or AMX); training in float32")
    return nullcontext()


def make_adam(model, tc, device: torch.device, say: bool = True) -> torch.optim.Adam:
    """Adam with the fused kernel (one pass over all parameters: 3x faster than the per-tensor loop on
    the CPU, BENCHMARKS.md "throughput") where this torch and device have it, else the default one."""
    params = [p for p in model.parameters() if p.requires_grad]
    kwargs = dict(lr=tc.lr, betas=tc.betas, eps=tc.eps, weight_decay=tc.weight_decay)
    try:
        return torch.optim.Adam(params, fused=True, **kwargs)
    except (RuntimeError, TypeError, ValueError) as e:
        if say:
            tqdm.write(f"fused Adam is not available here ({type(e).__name__}); using the default implementation")
        return torch.optim.Adam(params, **kwargs)


def _acting_beta(model) -> bool:
    """Whether the model weighs a KL term by a β it actually uses (logged only then)."""
    return getattr(model, "objective", None) == "elbo" and hasattr(model, "kl_schedule")


def _progress(tc) -> bool:
    """Progress bars only on a terminal: a redirected log gets the one line per epoch, not bar frames."""
    return bool(tc.progress) and sys.stderr.isatty()


def _fit_by_procedure(cfg: RunConfig, out: Path, splits: DataSplits, folder: _Folder, generation, is_writer: bool):
    """Closed-form / EM / CD models: fit once on the training split, then write one generation."""
    spec = get_spec(cfg.model.kind)
    if generation is not None:
        _say(is_writer, f"{out}: {cfg.model.kind} is fitted in one go; nothing to resume")
        model = build_model(cfg.model, cfg.shape)
        generation.load_weights(model)
        return model.to(splits.train.x.device)
    if cfg.data.binarize == "dynamic" and not spec.resamples_data:
        raise AekitError(f"{cfg.model.kind} is fitted in one pass over fixed data, so dynamic binarization would "
                         f"not resample anything; use --binarize static")
    folder.begin_writing("train")
    if is_writer:
        runs.save_config(out, cfg)
    start = time.perf_counter()
    from .threads import configure

    configure(cfg.train.threads)
    model = build_model(cfg.model, cfg.shape).to(splits.train.x.device)
    model = spec.fit(model, splits.train.x, cfg, progress=_progress(cfg.train) and is_writer)
    seconds = time.perf_counter() - start
    record = {"epoch": 1, "step": 1, "fit_seconds": seconds, **getattr(model, "fit_info", {}),
              **{f"train/{k}": v for k, v in evaluate_terms(model, splits.train).items()},
              **{f"val/{k}": v for k, v in evaluate_terms(model, splits.val).items()}}
    record["val/loss"] = record[f"val/{model.selection_metric}"]
    if is_writer:
        weights = runs._state_tensors(model)
        runs.write_metrics(out, [record])
        generation = runs.commit_generation(out, step=1, model_state=weights, best_state=weights,
                                            training={"step": 1, "history": [record], "best": record["val/loss"],
                                                      "procedure": True}, previous=None)
        runs.refresh_views(out, generation)
        terms = "  ".join(f"{k}={v:.3f}" for k, v in record.items() if k.startswith(("train/", "val/")))
        tqdm.write(f"fitted {cfg.model.kind} in {seconds:.2f}s  {terms}")
        if cfg.train.figures != "none":
            from .plots import draw_run_figures
            draw_run_figures(model, splits, out, [record], curves=False)
    return model


def _tensorboard(out: Path, purge_step: int | None = None):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is a dependency, but a broken install must not stop training
        return None
    # purge_step: events a killed run logged after the checkpoint it resumes from are hidden
    return SummaryWriter(log_dir=str(out / "tb"), purge_step=purge_step)


def _log(writer, record: dict) -> None:
    if writer is None:
        return
    for k, v in record.items():
        if isinstance(v, (int, float)) and k not in ("epoch", "step") and v is not None:
            writer.add_scalar(k, v, record["step"])
    writer.flush()


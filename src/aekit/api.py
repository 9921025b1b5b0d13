"""The Python face: ``aekit.train(...)`` and ``aekit.load(run_dir)``."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import torch

from . import runs
from .config import DataConfig, ModelConfig, RunConfig, TrainConfig
from .errors import AekitError

_MODEL_FIELDS = {f.name for f in dataclasses.fields(ModelConfig)} - {"kind"}
_DATA_FIELDS = {f.name for f in dataclasses.fields(DataConfig)} - {"name", "seed"}
_TRAIN_FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}


def build_config(model: str = "vae", data: str = "digits", base: dict | None = None, **settings: Any) -> RunConfig:
    """A RunConfig from flat keyword settings (each goes to the section that has it).

    ``seed`` is the training seed; ``data_seed`` fixes the split. ``base`` is a nested dict
    (a config file's content) that the keyword settings override.
    """
    from .models import get_spec, validate

    spec = get_spec(model)
    sections: dict[str, dict[str, Any]] = {k: dict((base or {}).get(k, {})) for k in ("model", "data", "train")}
    sections["model"] = {**spec.defaults, **sections["model"], "kind": model}
    sections["train"] = {**spec.train_defaults, **sections["train"]}
    sections["data"]["name"] = data
    for key, value in settings.items():
        if value is None:
            continue
        if key == "data_seed":
            sections["data"]["seed"] = value
        elif key in _TRAIN_FIELDS:
            sections["train"][key] = value
        elif key in _MODEL_FIELDS:
            sections["model"][key] = value
        elif key in _DATA_FIELDS:
            sections["data"][key] = value
        else:
            valid = sorted(_MODEL_FIELDS | _DATA_FIELDS | _TRAIN_FIELDS | {"data_seed"})
            raise AekitError(f"unknown setting '{key}'; valid settings: {', '.join(valid)}")
    # Paths are stored absolute, so a run resumes (and evaluates) from any working directory.
    if sections["data"].get("data_dir") is not None:
        sections["data"]["data_dir"] = str(Path(sections["data"]["data_dir"]).expanduser().resolve())
    from .data.sources import is_user_file
    from .data.timeseries import SERIES_PREFIX, is_series_name

    for key in ("name", "labels"):
        value = sections["data"].get(key)
        if value is not None and is_series_name(str(value)):
            sections["data"][key] = SERIES_PREFIX + str(Path(str(value)[len(SERIES_PREFIX):]).expanduser().resolve())
        elif value is not None and is_user_file(str(value)):
            sections["data"][key] = str(Path(value).expanduser().resolve())
    cfg = RunConfig.from_dict(sections)
    validate(cfg)
    return cfg


def train(model: str = "vae", data: str = "digits", out: str | Path | None = None, *, force: bool = False,
          base: dict | None = None, **settings: Any):
    """Train ``model`` on ``data`` into the run folder ``out``; returns the trained model.

    Example: ``aekit.train("vae", "digits", out="runs/vae", latent_dim=2, epochs=30, beta=1.0)``.
    Settings are any field of ModelConfig, DataConfig or TrainConfig (see ``aekit train --help``).
    ``out`` must be new or empty (``force=True`` writes into a folder that holds other files);
    ``base`` is a config file's content (sections model / data / train) that the settings override.
    """
    from .trainer import check_names, fit

    if not isinstance(data, (str, os.PathLike)):
        # A run folder records where its data lives, so that it can be resumed and evaluated later.
        raise AekitError(f"aekit.train takes a data set name or a file (.npy, .npz, .csv), not a "
                         f"{type(data).__module__}.{type(data).__name__}: a run folder records where its data "
                         f"lives; save the array with numpy.save(path, x) and pass the path")
    cfg = build_config(model, data, base=base, **settings)
    check_names(cfg)
    out = Path(out) if out is not None else default_run_dir(cfg)
    trained = fit(cfg, out, force=force)
    return _attach(trained.eval(), runs.load_config(out), out)


def resume(run_dir: str | Path, **changes: Any):
    """Continue a run from its newest checkpoint, to its configured total or to new totals.

    ``changes`` are settings a resumed run may change (``epochs``, ``steps``, ``patience``, ``figures``,
    ``progress``, ``threads``, ``device``, ``data_dir``, ...); any other setting that differs from the
    run's own is refused. A run killed before its first checkpoint restarts in place.
    """
    from .trainer import fit

    run_dir = Path(run_dir)
    trained = fit(None, run_dir, resume=True, changes={k: v for k, v in changes.items() if v is not None})
    return _attach(trained.eval(), runs.load_config(run_dir), run_dir)


def default_run_dir(cfg: RunConfig) -> Path:
    stem = f"{cfg.model.kind}-{Path(cfg.data.name).stem}"
    out = Path("runs") / stem
    i = 2
    while out.exists():
        out, i = Path("runs") / f"{stem}-{i}", i + 1
    return out


def load(run_dir: str | Path, which: str = "best", device: str | torch.device = "cpu"):
    """The trained model of a run folder, in eval mode, with ``.config`` and ``.run_dir`` attached.

    ``which``: "best" (lowest validation loss) or "last" (the last checkpoint). Weights come from the
    newest complete checkpoint, verified against its checksums; a folder holding only config.json and
    the weights files (e.g. copied out of a run) loads those, verified against their own checksums.
    """
    from .models import build_model

    run_dir = Path(run_dir)
    if which not in ("best", "last"):
        raise AekitError(f"which must be 'best' or 'last', got '{which}'")
    cfg = runs.load_config(run_dir)
    if cfg.shape is None:
        raise AekitError(f"{run_dir}/config.json lacks the data shape; the run never started training")
    model = build_model(cfg.model, cfg.shape)
    generation = runs.newest_generation(run_dir)
    if generation is not None:
        generation.verify()  # every file of the checkpoint, so damage anywhere in it is caught, not just in the weights read
    runs.verify_views(run_dir, generation)
    if generation is not None:
        generation.load_weights(model, best=which == "best")
    else:
        path = run_dir / (runs.BEST if which == "best" else runs.LAST)
        if which == "best" and not path.exists():
            path = run_dir / runs.LAST
        if not path.exists():
            raise AekitError(f"{run_dir} has no weights yet (no complete checkpoint); resume it with "
                             f"aekit train --resume {run_dir}")
        runs.load_weights(path, model)
    return _attach(model.to(device).eval(), cfg, run_dir)


def _attach(model, cfg: RunConfig, run_dir: Path):
    """The model as users get it: its config and folder attached, and face methods that accept numpy
    arrays, float64 and image-shaped batches (:func:`aekit.inputs.accept_arrays`)."""
    from .inputs import accept_arrays

    model.config = cfg
    model.run_dir = Path(run_dir)
    return accept_arrays(model)

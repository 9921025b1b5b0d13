"""The data of a run with the applications' data settings: one-class protocol, series windows, missing entries.

:func:`prepare_run_data` is :func:`aekit.trainer.prepare_data` reading the data through
:func:`aekit.data.splits.load_configured`, so that ``--normal-class``, ``--window`` / ``--stride`` /
``--train-steps`` and NaN (for the kinds that train with missing entries) reach the data layer.
``aekit score | detect | impute | export`` load a run's data through it, and
:func:`fit_run` trains with it. Once the trainer's ``prepare_data`` calls ``load_configured``
itself (NOTES-apps1.md), both become one-line delegations to the trainer.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch

from .config import RunConfig
from .data import DataSplits, binarize_splits
from .data.splits import load_configured
from .errors import AekitError


@functools.lru_cache(maxsize=None)
def missing_data_kinds() -> tuple[str, ...]:
    """The kinds whose models declare the MISSING_DATA capability (asked once per process)."""
    from .capabilities import MISSING_DATA
    from .models import kinds_with

    return tuple(kinds_with(MISSING_DATA))


def accepts_missing(cfg: RunConfig) -> bool:
    return cfg.model.kind in missing_data_kinds()


def prepare_run_data(cfg: RunConfig, device: torch.device | None = None, *, loaded: DataSplits | None = None) -> DataSplits:
    """The run's train / val / test splits, checked against its model, on ``device``.

    ``loaded``: the splits of ``cfg.data`` already read with ``binarize="none"`` (a benchmark training
    several kinds on one data set reads it once); they are binarized here as the kind needs.
    """
    from .likelihoods import check_data_range
    from .trainer import resolve_binarization

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
    observed = splits.train.x[~torch.isnan(splits.train.x)] if has_missing else splits.train.x
    check_data_range(cfg.model.likelihood, observed, f"the {d.name} data")
    if cfg.model.kind == "cvae" and splits.train.y is None:
        raise AekitError(f"cvae needs labels, but {d.name} has none; pass --labels FILE or choose labelled data")
    return splits.to(device) if device is not None else splits


def fit_run(cfg: RunConfig, out: str | Path, *, splits: DataSplits | None = None):
    """Train ``cfg`` into ``out`` (as ``aekit train``) on the data :func:`prepare_run_data` reads (or ``splits``)."""
    from . import runs
    from .trainer import check_names, fit

    check_names(cfg)
    out = Path(out)
    if (out / runs.CONFIG).exists():
        raise AekitError(f"{out} already holds a run; continue it with aekit train --resume {out}, or pick another --out")
    model = fit(cfg, out, splits=splits if splits is not None else prepare_run_data(cfg))
    model.config = runs.load_config(out)
    model.run_dir = out
    return model.eval()

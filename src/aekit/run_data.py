"""Train from a :class:`~aekit.config.RunConfig` (the applications' benchmarks and tests build configs).

``prepare_run_data`` is the trainer's :func:`~aekit.trainer.prepare_data`; :func:`fit_run` is
``aekit train`` for a config, on the data ``prepare_data`` reads (or on ``splits`` read once).
"""

from __future__ import annotations

from pathlib import Path

from .config import RunConfig
from .data import DataSplits
from .trainer import accepts_missing, prepare_data as prepare_run_data  # noqa: F401


def fit_run(cfg: RunConfig, out: str | Path, *, splits: DataSplits | None = None):
    """Train ``cfg`` into ``out`` (a new or empty folder); returns the trained model in eval mode."""
    from . import runs
    from .trainer import check_names, fit

    check_names(cfg)
    out = Path(out)
    model = fit(cfg, out, splits=splits)
    model.config = runs.load_config(out)
    model.run_dir = out
    return model.eval()

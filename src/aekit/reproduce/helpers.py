"""Small helpers the claims share: quiet training through ``aekit.train``, a run's data, figures, order tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def by_budget(budget: str, smoke, quick, full):
    """The value for ``budget``: the three budgets' settings side by side at the call."""
    return {"smoke": smoke, "quick": quick, "full": full}[budget]


def train(kind: str, data: str, out: Path, seed: int, **settings: Any):
    """``aekit.train`` without figures or progress bars (the claim draws its own figures).

    Training runs on the run's device (a GPU when there is one); the model comes back on the CPU, where
    the claims measure it beside data read with :func:`run_splits`.
    """
    import aekit

    settings.setdefault("figures", "none")
    settings.setdefault("progress", False)
    return aekit.train(kind, data, out=Path(out), seed=seed, **settings).cpu()


def resume(run_dir: Path, **changes: Any):
    """``aekit.resume`` (exact continuation to new totals), the model back on the CPU as :func:`train`."""
    import aekit

    return aekit.resume(Path(run_dir), **changes).cpu()


def run_splits(model):
    """The train / val / test splits a trained run reads (as ``aekit evaluate`` reads them)."""
    from ..trainer import prepare_data

    return prepare_data(model.config)


def evaluate(model, split, reference=None, iw_samples: int = 0) -> dict:
    """``aekit.evaluate.evaluate_model`` without a progress bar."""
    from ..evaluate import evaluate_model

    return evaluate_model(model, split, iw_samples=iw_samples, progress=False, reference=reference)


def last_metrics(run_dir: Path) -> dict:
    from ..runs import read_metrics

    return read_metrics(Path(run_dir))[-1]


def mnist_settings(data_dir: str | None) -> dict:
    return {"data_dir": data_dir} if data_dir else {}


# ----------------------------------------------------------------------------- order
def increasing(values: Sequence[float], strict: bool = True) -> bool:
    return all((b > a) if strict else (b >= a) for a, b in zip(values, values[1:]))


def decreasing(values: Sequence[float], strict: bool = True) -> bool:
    return all((b < a) if strict else (b <= a) for a, b in zip(values, values[1:]))


# ----------------------------------------------------------------------------- figures
def figure(ncols: int = 1, nrows: int = 1, size: tuple[float, float] = (5.0, 3.6)):
    fig, axes = plt.subplots(nrows, ncols, figsize=(size[0] * ncols, size[1] * nrows), squeeze=False)
    return fig, axes.ravel().tolist() if ncols * nrows > 1 else axes[0, 0]


def save(fig, out: Path, name: str) -> str:
    """Write ``fig`` as ``out/name`` (PNG) and return the name (a Measurement lists names)."""
    fig.tight_layout()
    fig.savefig(Path(out) / name, format="png", dpi=90)
    plt.close(fig)
    return name


def bars(ax, labels: Sequence[str], values: Sequence[float], *, ylabel: str, reference: float | None = None,
         reference_label: str | None = None, colors=None, fmt: str = "{:.3g}") -> None:
    """A labelled bar chart, each bar with its value written on it."""
    positions = range(len(values))
    drawn = ax.bar(positions, values, color=colors)
    ax.set_xticks(list(positions), labels, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    for rect, v in zip(drawn, values):
        ax.annotate(fmt.format(v), (rect.get_x() + rect.get_width() / 2, rect.get_height()), ha="center",
                    va="bottom", fontsize=7)
    if reference is not None:
        ax.axhline(reference, color="k", ls="--", lw=1, label=reference_label)
        if reference_label:
            ax.legend(fontsize=8)


def image_grid(ax, images, image_shape, nrow: int, title: str = "") -> None:
    """Rows of images (N, D) in [0, 1] tiled into one panel."""
    import numpy as np

    from ..plots import tile

    x = np.asarray(images, dtype=float).clip(0, 1).reshape(-1, *image_shape)
    grid = tile(x, nrow=nrow)
    ax.imshow(grid, cmap="gray" if grid.ndim == 2 else None, vmin=0, vmax=1)
    ax.set_title(title, fontsize=9)
    ax.axis("off")

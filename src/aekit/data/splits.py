"""``load_data``: any source → validated train / val / test splits, binarized as asked."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Callable

import torch

from ..errors import AekitError, unknown_choice
from .dataset import ArrayDataset, DataSplits
from .oneclass import one_class_splits
from .sources import DATASETS, PARAMETERIZED, SourceData, is_user_file, load_user_file, parameterized_source
from .timeseries import is_series_name
from .transforms import binarize as bernoulli_sample
from .transforms import check_finite, check_unit_range, derive_seed, seeded_generator, standardize

TEST_FRACTION = 0.2  # share of the rows held out as test by sources without an official test set

Splits = dict[str, ArrayDataset]  # "train" / "val" / "test" -> split


def list_datasets() -> dict[str, str]:
    """Registered data set name → one-line description (a .npy/.npz/.csv path also works as a name)."""
    listed = {name: source.description for name, source in DATASETS.items() if name not in PARAMETERIZED}
    listed.update({f"{prefix}[:{argument}]" if prefix in DATASETS else f"{prefix}:{argument}": description
                   for prefix, (argument, description, _) in PARAMETERIZED.items()})
    return listed


def load_data(
    name: str,
    *,
    data_dir: str | Path | None = None,
    binarize: str = "none",
    val_fraction: float = 0.1,
    seed: int = 0,
    labels: str | Path | None = None,
    download: bool = True,
    normal_class: int | None = None,
    window: int | None = None,
    stride: int = 1,
    train_steps: int | None = None,
    allow_missing: bool = False,
) -> DataSplits:
    """Load a registered data set or a user file and split it into train / val / test.

    Splits: the official test set when the source has one (mnist, fashion-mnist), else a random
    ``TEST_FRACTION`` of the rows; ``val`` is a random ``val_fraction`` of the remaining rows.
    Both are fixed by ``seed`` (the data seed, not the training seed). Rows keep their file order
    within each split.

    Binarization (for Bernoulli likelihoods, pixels read as probabilities x̃ ~ Bernoulli(x)):
    ``none`` keeps grey values; ``static`` samples every split once; ``dynamic`` keeps train grey
    for :class:`BatchLoader` to resample every epoch and samples val and test once. The samples
    of val and test are the same in both modes (seeded by ``seed`` and the split name), so
    likelihoods of static and dynamic runs are measured on the same binary data.

    Settings of the applications (see :func:`load_configured`): ``normal_class`` applies the
    one-class protocol (:mod:`aekit.data.oneclass`); ``window`` / ``stride`` / ``train_steps`` read
    a ``series:FILE.csv`` as sliding windows (:mod:`aekit.data.timeseries`); ``allow_missing`` lets
    NaN through as missing entries (for models that train with them; rows with nothing observed and
    infinite values are still refused).
    """
    if binarize not in BINARIZATIONS:
        raise unknown_choice("binarization", binarize, BINARIZATIONS)
    if not 0.0 < val_fraction < 1.0:
        raise AekitError(f"val_fraction must be in (0, 1), got {val_fraction}; e.g. 0.1 holds out 10% for validation")
    if is_series_name(name):
        return _series_splits(name, binarize, labels, normal_class, window, stride, train_steps, val_fraction)
    if window is not None or stride != 1 or train_steps is not None:
        raise AekitError("--window, --stride and --train-steps are for series data: give --data series:FILE.csv")
    data = _read_source(name, data_dir, labels, download)
    for x in (data.x, data.test_x):
        if x is not None:
            check_missing(x, data.origin, allow_missing)
    splits = _split(data, val_fraction, seed)
    if normal_class is not None:
        splits = one_class_splits(splits, normal_class, data.origin)
    return DataSplits(**BINARIZATIONS[binarize](splits, seed), binarize=binarize)


def load_configured(d, *, binarize: str | None = None, allow_missing: bool = False, download: bool = True) -> DataSplits:
    """``load_data`` with every setting of a :class:`~aekit.config.DataConfig` ``d``.

    The one call the trainer needs, so that a new data setting reaches the data layer without a
    trainer change; ``binarize`` overrides ``d.binarize`` (the trainer resolves "auto" itself).
    """
    return load_data(d.name, data_dir=d.data_dir, binarize=d.binarize if binarize is None else binarize,
                     val_fraction=d.val_fraction, seed=d.seed, labels=d.labels, download=download,
                     normal_class=d.normal_class, window=d.window, stride=d.stride, train_steps=d.train_steps,
                     allow_missing=allow_missing)


def check_missing(x: torch.Tensor, origin: str, allow_missing: bool) -> None:
    """Refuse infinite values always, NaN unless ``allow_missing``, and rows with nothing observed."""
    try:
        check_finite(x, origin)
    except AekitError as error:
        num_nan = int(torch.isnan(x).sum())
        if num_nan == 0:
            raise
        if not allow_missing:
            from ..capabilities import MISSING_DATA
            from ..models import kinds_with

            raise AekitError(f"{error}; NaN marks a missing entry, which only {', '.join(kinds_with(MISSING_DATA))} "
                             f"train on (aekit impute RUN fills them)") from None
        if bool(torch.isinf(x).any()):
            raise AekitError(f"{origin} holds infinite values; only NaN may mark a missing entry") from None
    if allow_missing:
        empty = torch.isnan(x).all(dim=1)
        if bool(empty.any()):
            row = int(empty.nonzero()[0])
            raise AekitError(f"row {row} of {origin} has every entry missing (NaN); drop rows with nothing observed")


def _series_splits(name, binarize, labels, normal_class, window, stride, train_steps, val_fraction) -> DataSplits:
    from .timeseries import read_series, series_path, series_splits

    if window is None:
        raise AekitError("series data needs --window W (time steps per window), e.g. --window 64")
    if labels is not None or normal_class is not None:
        raise AekitError("series data brings its labels in the is_anomaly column; drop --labels / --normal-class")
    if binarize != "none":
        raise AekitError("series data is continuous; use --binarize none (or auto) and a gaussian likelihood")
    path = series_path(name)
    splits = series_splits(read_series(path), window=window, stride=stride, train_steps=train_steps,
                           val_fraction=val_fraction, name=path.stem)
    return DataSplits(**splits, binarize="none")


def _read_source(name: str, data_dir, labels, download: bool) -> SourceData:
    source = DATASETS.get(name) or parameterized_source(name)
    if source is not None:
        if labels is not None:
            raise AekitError(f"--labels is for your own .npy/.npz/.csv data; {name} brings its own labels, drop it")
        return source.load(data_dir, download)
    if is_user_file(name):
        return load_user_file(name, labels)
    raise AekitError(f"{unknown_choice('data set', name, DATASETS)}, images:DIR (a folder of pictures), or a path "
                     f"to a .npy, .npz or .csv file")


def _count(fraction: float, n: int) -> int:
    """round(fraction · n), at least 1: a requested split is never empty."""
    return max(1, round(fraction * n))


def _split(data: SourceData, val_fraction: float, seed: int) -> Splits:
    order = torch.randperm(len(data.x), generator=seeded_generator(derive_seed("split", seed)))
    if data.test_x is None:
        num_test = _count(TEST_FRACTION, len(order))
        test_rows, order = order[:num_test].sort().values, order[num_test:]
        test_x, test_y = data.x[test_rows], None if data.y is None else data.y[test_rows]
    else:
        test_x, test_y = data.test_x, data.test_y
    num_val = _count(val_fraction, len(order))
    val_rows, train_rows = order[:num_val].sort().values, order[num_val:].sort().values
    if len(train_rows) == 0:
        raise AekitError(f"{data.origin} has only {len(data.x)} rows, too few for train / val / test; give more rows")
    xs = (data.x[train_rows], data.x[val_rows], test_x)
    if data.standardize:
        xs = standardize(*xs)
    ys = (None, None, None) if data.y is None else (data.y[train_rows], data.y[val_rows], test_y)
    return {
        split: ArrayDataset(x=x, y=y, image_shape=data.image_shape, num_classes=data.num_classes, name=data.name)
        for split, x, y in zip(("train", "val", "test"), xs, ys)
    }


def _sampled(split: str, data: ArrayDataset, seed: int) -> ArrayDataset:
    """``data`` with x replaced by one Bernoulli(x) sample, seeded by (seed, split)."""
    check_unit_range(data.x, f"{data.name} ({split} split)")
    generator = seeded_generator(derive_seed("binarize", seed, split), data.x.device)
    return replace(data, x=bernoulli_sample(data.x, generator))


def _keep_grey(splits: Splits, seed: int) -> Splits:
    return splits


def _sample_all(splits: Splits, seed: int) -> Splits:
    return {split: _sampled(split, data, seed) for split, data in splits.items()}


def _sample_eval(splits: Splits, seed: int) -> Splits:
    # train stays grey: BatchLoader(dynamic_binarize=True) draws a fresh sample every epoch.
    check_unit_range(splits["train"].x, f"{splits['train'].name} (train split)")
    return {split: data if split == "train" else _sampled(split, data, seed) for split, data in splits.items()}


BINARIZATIONS: dict[str, Callable[[Splits, int], Splits]] = {
    "none": _keep_grey,
    "dynamic": _sample_eval,
    "static": _sample_all,
}


def binarize_splits(splits: DataSplits, binarize: str, seed: int = 0) -> DataSplits:
    """Grey splits (loaded with ``binarize="none"``) binarized as ``load_data(..., binarize=binarize)`` would."""
    if splits.binarize != "none":
        raise ValueError(f"splits are already binarized ({splits.binarize})")
    if binarize not in BINARIZATIONS:
        raise unknown_choice("binarization", binarize, BINARIZATIONS)
    parts = {"train": splits.train, "val": splits.val, "test": splits.test}
    return DataSplits(**BINARIZATIONS[binarize](parts, seed), binarize=binarize)

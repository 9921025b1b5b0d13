"""``load_data``: any source → validated train / val / test splits, binarized as asked."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Callable

import torch

from ..errors import AekitError, unknown_choice
from .dataset import ArrayDataset, DataSplits
from .sources import DATASETS, PARAMETERIZED, SourceData, is_user_file, load_user_file, parameterized_source
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
    """
    if binarize not in BINARIZATIONS:
        raise unknown_choice("binarization", binarize, BINARIZATIONS)
    if not 0.0 < val_fraction < 1.0:
        raise AekitError(f"val_fraction must be in (0, 1), got {val_fraction}; e.g. 0.1 holds out 10% for validation")
    data = _read_source(name, data_dir, labels, download)
    check_finite(data.x, data.origin)
    if data.test_x is not None:
        check_finite(data.test_x, data.origin)
    splits = _split(data, val_fraction, seed)
    return DataSplits(**BINARIZATIONS[binarize](splits, seed), binarize=binarize)


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

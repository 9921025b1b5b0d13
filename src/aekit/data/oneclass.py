"""The one-class protocol: train on one class, test on every class (Ruff et al. 2018, §4.1).

With ``normal_class = C`` the training and validation splits keep only the rows labelled C, and
the test split keeps every row with the label turned into an anomaly indicator:

    y_test = 0  (normal, the row is of class C),    y_test = 1  (anomalous, any other class)

so a detector's AUROC on the test split is the figure Ruff et al. report per class (their Table 1
on MNIST and CIFAR-10: one model per class, AUROC over the whole test set). The test rows keep
their order; ``num_classes`` becomes 2 (normal / anomalous).
"""

from __future__ import annotations

from dataclasses import replace

import torch

from ..errors import AekitError
from .dataset import ArrayDataset

NORMAL, ANOMALOUS = 0, 1


def one_class_splits(splits: dict[str, ArrayDataset], normal_class: int, origin: str) -> dict[str, ArrayDataset]:
    """``splits`` (train / val / test with class labels) → the one-class splits described above."""
    train = splits["train"]
    if train.y is None:
        raise AekitError(f"--normal-class needs labelled data, but {origin} has no labels; "
                         f"pass --labels FILE or choose labelled data")
    if not 0 <= normal_class < (train.num_classes or 0):
        raise AekitError(f"--normal-class must be one of the classes 0..{train.num_classes - 1} of {origin}, "
                         f"got {normal_class}")
    out = {}
    for split in ("train", "val"):
        data = splits[split]
        keep = data.y == normal_class  # (N,)
        if not bool(keep.any()):
            raise AekitError(f"the {split} split of {origin} holds no row of class {normal_class}; "
                             f"choose another --normal-class or a larger --val-fraction")
        out[split] = replace(data, x=data.x[keep], y=torch.full((int(keep.sum()),), NORMAL, dtype=torch.int64),
                             num_classes=2)
    test = splits["test"]
    anomalous = (test.y != normal_class).to(torch.int64)  # (N,) 1 = anomalous
    out["test"] = replace(test, y=anomalous, num_classes=2)
    return out

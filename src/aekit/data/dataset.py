"""In-memory data sets: one tensor of rows per split, kept whole on one device.

Rows are flattened in C order. ``image_shape`` says how a row folds back into a signal with channels
first: (C, L) for sequences (time-series windows), (C, H, W) for images, (C, T, H, W) for clips or
volumes; None for plain vectors. Convolutional bodies take their number of spatial dimensions from it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

# Lengths of ``image_shape``: channels plus 1, 2 or 3 spatial dimensions (sequences, images, clips).
SIGNAL_RANKS = (2, 3, 4)
LAYOUTS = {2: "sequences (C, L)", 3: "images (C, H, W)", 4: "clips or volumes (C, T, H, W)"}


# eq=False: the fields are tensors, whose == is elementwise; identity comparison is the sane default.
@dataclass(frozen=True, eq=False)
class ArrayDataset:
    """N examples as the rows of one tensor; images are flattened C·H·W in C order."""

    x: torch.Tensor                               # (N, D) float32
    y: torch.Tensor | None                        # (N,) int64 class codes 0..K-1, or None
    image_shape: tuple[int, ...] | None           # (C, L), (C, H, W) or (C, T, H, W) when rows are signals; None: vectors
    num_classes: int | None                       # K when labelled, else None
    name: str                                     # data set name, for logs and run folders

    def __post_init__(self):
        if self.x.ndim != 2:
            raise ValueError(f"x must be (N, D), got shape {tuple(self.x.shape)}")
        if self.y is not None and self.y.shape != (self.x.shape[0],):
            raise ValueError(f"y must be ({self.x.shape[0]},), got shape {tuple(self.y.shape)}")
        if self.image_shape is not None and len(self.image_shape) not in SIGNAL_RANKS:
            raise ValueError(f"image_shape must be (C, L), (C, H, W) or (C, T, H, W), got {self.image_shape}")
        if self.image_shape is not None and math.prod(self.image_shape) != self.x.shape[1]:
            raise ValueError(f"image_shape {self.image_shape} does not match D = {self.x.shape[1]}")

    def __len__(self) -> int:
        return self.x.shape[0]

    def to(self, device: torch.device | str) -> "ArrayDataset":
        """The same data set with x and y on ``device``."""
        y = None if self.y is None else self.y.to(device)
        return replace(self, x=self.x.to(device), y=y)


@dataclass(frozen=True, eq=False)
class DataSplits:
    """Train / validation / test splits of one data set and how they were binarized."""

    train: ArrayDataset
    val: ArrayDataset
    test: ArrayDataset
    binarize: str       # none | dynamic (train grey, resampled by the loader each epoch) | static

    @property
    def data_dim(self) -> int:
        """D, the length of one row."""
        return self.train.x.shape[1]

    @property
    def image_shape(self) -> tuple[int, ...] | None:
        """(C, L), (C, H, W) or (C, T, H, W); None for vector data."""
        return self.train.image_shape

    @property
    def num_classes(self) -> int | None:
        return self.train.num_classes

    @property
    def name(self) -> str:
        return self.train.name

    def to(self, device: torch.device | str) -> "DataSplits":
        """The same splits with every tensor on ``device``."""
        return replace(self, train=self.train.to(device), val=self.val.to(device), test=self.test.to(device))

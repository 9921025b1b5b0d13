"""Data: registered data sets and user files → train / val / test splits, and the batch loader.

    splits = load_data("mnist", binarize="dynamic")     # DataSplits of ArrayDatasets (rows on one device)
    loader = BatchLoader(splits.train, 128, dynamic_binarize=True)
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        for x, y in loader: ...                          # x (B, D) float32, y (B,) int64 or None
"""

from .dataset import ArrayDataset, DataSplits
from .idx import read_idx
from .loader import BatchLoader
from .splits import binarize_splits, list_datasets, load_data
from .transforms import binarize, value_levels

__all__ = ["ArrayDataset", "DataSplits", "load_data", "list_datasets", "BatchLoader", "binarize", "read_idx", "binarize_splits", "value_levels"]

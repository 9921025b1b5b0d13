"""Colour photographs for restoration (colorization above all): patches of scikit-learn's two sample photos.

``sklearn.datasets.load_sample_images`` ships ``china.jpg`` and ``flower.jpg``, 427×640 RGB (offline,
read with Pillow). ``--data photos[:SIZE]`` cuts them into SIZE×SIZE patches (default 32) at
positions drawn with a fixed seed:

* train and validation patches lie wholly in the left 480 columns of each photo, test patches wholly
  in the right 160 columns, so no test pixel was ever seen in training;
* 3,000 train and 500 test patches per photo (7,000 in all); the label is the photo (0 china,
  1 flower).

Pixels are scaled to [0, 1]; rows are C·H·W in C order (image shape (3, SIZE, SIZE)).
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import AekitError

PHOTOS = ("china.jpg", "flower.jpg")
DEFAULT_SIZE = 32
TEST_COLUMNS = 160            # the right-most columns of each photo, where the test patches come from
TRAIN_PER_PHOTO = 3000
TEST_PER_PHOTO = 500
SEED = 0
MIN_SIZE = 8


def _sample_images() -> list[np.ndarray]:
    from sklearn.datasets import load_sample_images

    bunch = load_sample_images()
    by_name = {name.replace("\\", "/").rsplit("/", 1)[-1]: image for name, image in zip(bunch.filenames, bunch.images)}
    return [by_name[name] for name in PHOTOS]  # (427, 640, 3) uint8 each


def _patches(image: np.ndarray, size: int, count: int, columns: tuple[int, int], rng) -> np.ndarray:
    """``count`` patches (count, 3, size, size) in [0, 1] with their left edge in [columns[0], columns[1] − size]."""
    height = image.shape[0]
    tops = rng.integers(0, height - size + 1, count)
    lefts = rng.integers(columns[0], columns[1] - size + 1, count)
    rows = tops[:, None] + np.arange(size)  # (count, size)
    cols = lefts[:, None] + np.arange(size)
    patches = image[rows[:, :, None], cols[:, None, :]]  # (count, size, size, 3)
    return patches.transpose(0, 3, 1, 2).astype(np.float32) / 255.0


def load_photos(argument: str = "", data_dir=None, download: bool = True):
    """``--data photos[:SIZE]`` as a :class:`~aekit.data.sources.SourceData` with its disjoint test patches."""
    from .sources import SourceData

    size = DEFAULT_SIZE
    if argument:
        try:
            size = int(argument)
        except ValueError:
            raise AekitError(f"photos:{argument}: the patch size must be an integer, e.g. photos:32") from None
    if not MIN_SIZE <= size <= TEST_COLUMNS:
        raise AekitError(f"photos: the patch size must be in {MIN_SIZE}..{TEST_COLUMNS} (the width of the test "
                         f"region), got {size}")
    rng = np.random.default_rng(SEED)
    train, test, train_y, test_y = [], [], [], []
    for label, image in enumerate(_sample_images()):
        width = image.shape[1]
        split = width - TEST_COLUMNS
        train.append(_patches(image, size, TRAIN_PER_PHOTO, (0, split), rng))
        test.append(_patches(image, size, TEST_PER_PHOTO, (split, width), rng))
        train_y.append(np.full(TRAIN_PER_PHOTO, label))
        test_y.append(np.full(TEST_PER_PHOTO, label))

    def rows(parts):
        stacked = np.concatenate(parts)
        return torch.from_numpy(stacked.reshape(len(stacked), -1))  # (N, 3·size·size)

    name = "photos" + (f":{argument}" if argument else "")
    return SourceData(x=rows(train), y=torch.from_numpy(np.concatenate(train_y)), image_shape=(3, size, size),
                      num_classes=len(PHOTOS), name=name, origin=name, test_x=rows(test),
                      test_y=torch.from_numpy(np.concatenate(test_y)))

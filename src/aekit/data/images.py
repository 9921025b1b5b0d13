"""A folder of the user's own pictures as a data set: ``--data images:DIR`` or ``images:DIR@SIZE``.

Every ``.png``, ``.jpg`` and ``.jpeg`` file directly in DIR (sorted by name) is read with Pillow.
Colour: grey when every image is grey (Pillow modes 1, L, LA, I, I;16, F), else RGB (alpha dropped,
palettes expanded). Size: without ``@SIZE`` all images must have the same size; with it, each image
is scaled (bicubic) so that it covers SIZE×SIZE (or HxW, ``@48x64``) and centre-cropped to it.
Pixels are scaled to [0, 1]; no labels; a random 20% of the images is the test split, as for every
source without an official one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import AekitError
from ._util import one_line

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
GREY_MODES = {"1", "L", "LA", "I", "I;16", "F"}


def parse_argument(argument: str) -> tuple[Path, tuple[int, int] | None]:
    """``DIR`` or ``DIR@SIZE`` / ``DIR@HxW`` → (folder, (height, width) or None)."""
    folder, at, size_text = argument.rpartition("@") if "@" in argument else (argument, "", "")
    if not folder:
        raise AekitError("images: name a folder, e.g. --data images:my_pictures (or images:my_pictures@64)")
    if not at:
        return Path(folder).expanduser(), None
    height_text, x, width_text = size_text.lower().partition("x")
    try:
        height = int(height_text)
        width = int(width_text) if x else height
    except ValueError:
        raise AekitError(f"images:{argument}: the size after @ must be SIZE or HxW in pixels, e.g. @64 or @48x64") from None
    if height < 1 or width < 1:
        raise AekitError(f"images:{argument}: the size must be positive, got {size_text}")
    return Path(folder).expanduser(), (height, width)


def _read(path: Path):
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            return image.copy()
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise AekitError(f"cannot read {path} as an image ({one_line(error)}); remove it or replace it") from None


def load_image_folder(argument: str, data_dir=None, download: bool = True):
    """``--data images:DIR[@SIZE]`` as a :class:`~aekit.data.sources.SourceData`."""
    from PIL import Image, ImageOps

    from .sources import SourceData

    folder, size = parse_argument(argument)
    if not folder.is_dir():
        raise AekitError(f"images: folder {folder} does not exist; check the path")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise AekitError(f"images: {folder} holds no readable images (.png, .jpg or .jpeg files); put pictures "
                         f"there or name another folder")
    images = [_read(p) for p in files]
    grey = all(image.mode in GREY_MODES for image in images)
    mode = "L" if grey else "RGB"
    if size is None:
        sizes = {image.size for image in images}
        if len(sizes) > 1:
            (w1, h1), (w2, h2) = sorted(sizes)[:2]
            raise AekitError(f"images in {folder} have different sizes ({h1}x{w1}, {h2}x{w2}, ...); give one size "
                             f"to resize and crop them to, e.g. --data images:{folder}@64")
    arrays = []
    for image in images:
        image = image.convert(mode)
        if size is not None:
            height, width = size
            image = ImageOps.fit(image, (width, height), method=Image.BICUBIC)  # cover, then centre-crop
        array = np.asarray(image, dtype=np.float32) / 255.0
        arrays.append(array[None] if grey else array.transpose(2, 0, 1))  # (C, H, W)
    stacked = np.stack(arrays)
    x = torch.from_numpy(stacked.reshape(len(stacked), -1))  # (N, C·H·W)
    name = f"images:{argument}"
    return SourceData(x=x, y=None, image_shape=tuple(stacked.shape[1:]), num_classes=None, name=name, origin=str(folder))

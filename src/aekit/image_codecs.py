"""Reference image codecs for rate–distortion comparisons: PNG and JPEG (Pillow), rates measured on written bytes.

Used by ``benchmarks/compression_mnist.py`` and ``aekit reproduce codec-vs-jpeg`` beside aekit's own codec
(:mod:`aekit.codec`). Two rates per codec: one file per image (what a user would store) and the whole set
tiled as one image divided by N (headers amortized, the fairest case for them).
"""

from __future__ import annotations

import io

import numpy as np


def pillow_rates(images: np.ndarray, fmt: str, **options) -> tuple[float, float, np.ndarray]:
    """(bits per image, one file each; bits per image, one tiled file; decoded images) for uint8 (N, H, W)."""
    from PIL import Image

    def encode(array):
        buf = io.BytesIO()
        Image.fromarray(array, mode="L").save(buf, format=fmt, **options)
        return buf.getvalue()

    n, h, w = images.shape
    per_file, decoded = 0, np.empty_like(images)
    for i, image in enumerate(images):
        data = encode(image)
        per_file += len(data)
        decoded[i] = np.asarray(Image.open(io.BytesIO(data)))
    side = int(np.ceil(np.sqrt(n)))
    mosaic = np.zeros((side * h, side * w), np.uint8)
    for i, image in enumerate(images):
        r, c = divmod(i, side)
        mosaic[r * h:(r + 1) * h, c * w:(c + 1) * w] = image
    tiled = len(encode(mosaic))
    return 8 * per_file / n, 8 * tiled / n, decoded


def jpeg_rate_at(psnr_value: float, jpeg: list[dict], key: str) -> float | None:
    """JPEG's rate at a given PSNR, interpolating log(rate) linearly in PSNR between its qualities;
    None outside the PSNR range the qualities cover. ``jpeg``: [{"psnr": dB, key: bits}, ...]."""
    pts = sorted((p["psnr"], np.log(p[key])) for p in jpeg)
    if not pts[0][0] <= psnr_value <= pts[-1][0]:
        return None
    return float(np.exp(np.interp(psnr_value, [p[0] for p in pts], [p[1] for p in pts])))


__all__ = ["pillow_rates", "jpeg_rate_at"]

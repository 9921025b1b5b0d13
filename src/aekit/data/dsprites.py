"""A procedural dSprites: 64×64 binary images of a square, an ellipse and a heart (Matthey et al. 2017).

The five factors of variation and their values, all combinations present once (3·6·40·32·32 =
737,280 images, the grid of the original data set):

    shape        3   square, ellipse, heart
    scale        6   linearly spaced in [0.5, 1]
    orientation  40  2πk/40, k = 0..39, in [0, 2π)
    position_x   32  linearly spaced in [0, 1]
    position_y   32  linearly spaced in [0, 1]

Image ``i`` is the combination whose factor indices are ``numpy.unravel_index(i, FACTOR_SIZES)`` (C
order: shape slowest, position_y fastest), as in the original ``latents_classes``.

**Definition of an image.** Pixel (r, c) — row r from the top, column c from the left — has its
centre at (c + ½, r + ½). A sprite with factors (shape, s, θ, p_x, p_y) has its centre at
(R + p_x(64 − 2R), R + p_y(64 − 2R)) with R = 10 pixels, and a pixel is on exactly when its centre,
in the sprite's frame

    (u, v) = Rot(−θ) · (c + ½ − x₀, y₀ − (r + ½)) / (R·s)        (v points up; θ turns counter-clockwise)

lies in the unit shape:

    square   max(|u|, |v|) ≤ 1/√2                               (side √2·R·s, corners on the unit circle)
    ellipse  u² + (v/0.5)² ≤ 1                                  (semi-axes R·s and R·s/2)
    heart    (X² + Y² − 1)³ − X²Y³ ≤ 0 with X = 1.26u, Y = 1.26v + 0.25   (the classical heart curve; its
             smallest enclosing circle has centre (0, 0.25) and radius 1.25, so it fits the unit disc)

Every shape lies in the disc of radius R·s around its centre, so each sprite stays inside the image
at every position. :meth:`DSprites.render` evaluates this definition on the 22×22 pixels around the
centre (all others are off by construction); it is a pure function of the factor indices, computed
in float64.

**Cache.** The whole set, bit-packed (512 bytes an image, 377 MB), is written once to
``ROOT/dsprites/`` (ROOT as for every data set: ``--data-dir``, ``$AEKIT_DATA_DIR``, or
``~/.cache/aekit``) the first time a large request (more than ``DIRECT_RENDER_LIMIT`` images) needs
it, in about half a minute, and read from there afterwards; smaller requests without a cache are
rendered directly (tens of thousands of images a second). A cache whose sampled rows disagree with
the definition is refused with the file to delete.

**As a data set** (``--data dsprites[:SPEC]``): a fixed-seed subsample of the combinations, since the
whole set as float32 would take 12 GB. SPEC is a comma-separated list of ``N`` (the number of images,
default 20,000) or ``all``, and factor restrictions ``NAME=I`` or ``NAME=I-J`` (inclusive index
ranges; names ``shape``, ``scale``, ``orientation``, ``x``, ``y``), e.g. ``dsprites:50000`` or
``dsprites:all,shape=2``. The labels are the shape (0 square, 1 ellipse, 2 heart). The disentanglement
metrics (:mod:`aekit.disentanglement`) do not use these rows: they draw fresh combinations from the
generator, as disentanglement_lib does.
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from ..errors import AekitError

FACTOR_NAMES = ("shape", "scale", "orientation", "position_x", "position_y")
FACTOR_SIZES = (3, 6, 40, 32, 32)
SHAPES = ("square", "ellipse", "heart")
IMAGE_SIZE = 64
RADIUS = 10.0              # R: pixels from a sprite's centre to the edge of its disc at scale 1
SCALE_RANGE = (0.5, 1.0)
HEART_SCALE, HEART_SHIFT = 1.26, 0.25   # (u, v) → (X, Y) = (1.26u, 1.26v + 0.25): the heart inside the unit disc
ELLIPSE_MINOR = 0.5        # the ellipse's semi-minor axis, in units of its semi-major axis
_WINDOW = 22               # pixels per side around a centre that can be on (2R + 2)
_CHUNK = 8192              # images rendered per vectorized step (memory: a few (chunk, 22, 22) float64 arrays)

DEFAULT_SUBSAMPLE = 20000  # images in `--data dsprites`
SUBSAMPLE_SEED = 0
DIRECT_RENDER_LIMIT = 50000  # requests up to this many images are rendered directly when there is no cache
CACHE_VERSION = 1          # bump when the definition changes: the cache file name carries it
_CHECK_ROWS = 16           # rows of a cache compared with the definition when it is opened

_ALIASES = {"x": "position_x", "y": "position_y", "posx": "position_x", "posy": "position_y"}


def factor_values(sizes=FACTOR_SIZES) -> list[np.ndarray]:
    """The value of each index of each factor (shape as 0, 1, 2; scale; orientation in radians; positions)."""
    shapes, scales, orientations, xs, ys = sizes
    return [np.arange(shapes, dtype=np.float64), np.linspace(*SCALE_RANGE, scales),
            2 * np.pi * np.arange(orientations) / orientations, np.linspace(0.0, 1.0, xs), np.linspace(0.0, 1.0, ys)]


def _square(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.maximum(np.abs(u), np.abs(v)) <= 1 / math.sqrt(2)


def _ellipse(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return u * u + (v * (1 / ELLIPSE_MINOR)) ** 2 <= 1


def _heart(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    x, y = HEART_SCALE * u, HEART_SCALE * v + HEART_SHIFT
    x2 = x * x
    t = x2 + y * y - 1
    return t * t * t - x2 * (y * y * y) <= 0  # (X² + Y² − 1)³ − X²Y³ ≤ 0, by products (np.power is slow)


# Membership of sprite-frame points (u, v) in the unit square, ellipse and heart (module docstring).
SHAPE_TESTS = (_square, _ellipse, _heart)


class DSprites:
    """The procedural dSprites generator over a grid of factor values (``factor_sizes``; default the original).

    A smaller grid (``factor_sizes=(3, 2, 4, 4, 4)``) keeps the same value ranges with fewer steps:
    the tests use one. ``root``: the folder of the cache (None: the data root, see the module docstring).
    """

    factor_names = FACTOR_NAMES

    def __init__(self, factor_sizes=FACTOR_SIZES, root: str | Path | None = None):
        self.factor_sizes = tuple(int(n) for n in factor_sizes)
        if len(self.factor_sizes) != 5 or self.factor_sizes[0] not in (1, 2, 3) or min(self.factor_sizes) < 1:
            raise AekitError(f"dsprites factor sizes must be 5 positive counts with at most 3 shapes, got {factor_sizes}")
        self.values = factor_values(self.factor_sizes)
        from .sources import data_root

        self.cache_path = data_root(root) / "dsprites" / (
            f"dsprites-v{CACHE_VERSION}-{'x'.join(map(str, self.factor_sizes))}-packed.npy")
        self._cache = None

    @property
    def num_factors(self) -> int:
        return len(self.factor_sizes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (1, IMAGE_SIZE, IMAGE_SIZE)

    def __len__(self) -> int:
        return math.prod(self.factor_sizes)

    # ------------------------------------------------------------------------- indices and factors
    def check_factors(self, factors) -> np.ndarray:
        """``factors`` (N, 5) integer indices, each in its range, else a one-line AekitError."""
        f = np.asarray(factors)
        if f.ndim != 2 or f.shape[1] != self.num_factors or not np.issubdtype(f.dtype, np.integer):
            raise AekitError(f"dsprites factors must be integer indices of shape (N, {self.num_factors}), "
                             f"got {f.dtype} {f.shape}")
        for k, (name, size) in enumerate(zip(self.factor_names, self.factor_sizes)):
            if len(f) and (f[:, k].min() < 0 or f[:, k].max() >= size):
                bad = f[:, k][(f[:, k] < 0) | (f[:, k] >= size)][0]
                raise AekitError(f"dsprites factor {name} takes indices 0..{size - 1}, got {bad}")
        return f.astype(np.int64)

    def factors(self, indices) -> np.ndarray:
        """Combination indices (N,) → factor indices (N, 5)."""
        indices = np.asarray(indices, dtype=np.int64)
        if indices.size and (indices.min() < 0 or indices.max() >= len(self)):
            raise AekitError(f"dsprites image indices run 0..{len(self) - 1}, got {int(indices.max())}")
        return np.stack(np.unravel_index(indices, self.factor_sizes), 1).astype(np.int64)

    def index(self, factors) -> np.ndarray:
        """Factor indices (N, 5) → combination indices (N,)."""
        return np.ravel_multi_index(tuple(self.check_factors(factors).T), self.factor_sizes).astype(np.int64)

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n combinations drawn uniformly (with replacement): (n, 5) factor indices."""
        return np.stack([rng.integers(0, size, n) for size in self.factor_sizes], 1)

    # ------------------------------------------------------------------------- rendering
    def render(self, factors) -> np.ndarray:
        """The images of ``factors`` (N, 5) by the definition in the module docstring: (N, 64, 64) bool."""
        f = self.check_factors(factors)
        out = np.zeros((len(f), IMAGE_SIZE, IMAGE_SIZE), dtype=bool)
        span = IMAGE_SIZE - 2 * RADIUS
        offsets = np.arange(_WINDOW)
        for start in range(0, len(f), _CHUNK):
            g = f[start:start + _CHUNK]
            shape = g[:, 0]
            size = RADIUS * self.values[1][g[:, 1]]                       # R·s, (n,)
            theta = self.values[2][g[:, 2]]
            x0 = RADIUS + self.values[3][g[:, 3]] * span                  # centre, columns
            y0 = RADIUS + self.values[4][g[:, 4]] * span                  # centre, rows (downward)
            col0 = np.clip(np.floor(x0 - RADIUS).astype(np.int64), 0, IMAGE_SIZE - _WINDOW)
            row0 = np.clip(np.floor(y0 - RADIUS).astype(np.int64), 0, IMAGE_SIZE - _WINDOW)
            cols = col0[:, None] + offsets                                 # (n, W)
            rows = row0[:, None] + offsets
            dx = (cols + 0.5 - x0[:, None])[:, None, :]                    # (n, 1, W)
            dy = (y0[:, None] - (rows + 0.5))[:, :, None]                  # (n, W, 1), up is positive
            cos, sin = np.cos(theta)[:, None, None], np.sin(theta)[:, None, None]
            scale = size[:, None, None]
            u = (cos * dx + sin * dy) / scale                              # Rot(−θ)·(dx, dy) / (R·s): (n, W, W)
            v = (cos * dy - sin * dx) / scale
            on = np.empty(u.shape, dtype=bool)
            for k, test in enumerate(SHAPE_TESTS):  # each image is tested for its own shape only
                which = shape == k
                if which.any():
                    on[which] = test(u[which], v[which])
            n = len(g)
            out[np.arange(start, start + n)[:, None, None], rows[:, :, None], cols[:, None, :]] = on
        return out

    def render_full(self, factors) -> np.ndarray:
        """The same images by testing every pixel of the 64×64 image (slow; for checking :meth:`render`)."""
        f = self.check_factors(factors)
        c, r = np.meshgrid(np.arange(IMAGE_SIZE), np.arange(IMAGE_SIZE))
        out = np.zeros((len(f), IMAGE_SIZE, IMAGE_SIZE), dtype=bool)
        for i, (shape, si, oi, xi, yi) in enumerate(f):
            s, theta = RADIUS * self.values[1][si], self.values[2][oi]
            x0 = RADIUS + self.values[3][xi] * (IMAGE_SIZE - 2 * RADIUS)
            y0 = RADIUS + self.values[4][yi] * (IMAGE_SIZE - 2 * RADIUS)
            dx, dy = c + 0.5 - x0, y0 - (r + 0.5)
            u = (np.cos(theta) * dx + np.sin(theta) * dy) / s
            v = (np.cos(theta) * dy - np.sin(theta) * dx) / s
            out[i] = SHAPE_TESTS[shape](u, v)
        return out

    # ------------------------------------------------------------------------- the cache
    def _open_cache(self) -> np.ndarray | None:
        if self._cache is not None:
            return self._cache
        if not self.cache_path.is_file():
            return None
        try:
            packed = np.load(self.cache_path, mmap_mode="r")
        except (OSError, ValueError) as error:
            raise AekitError(f"the dsprites cache {self.cache_path} is unreadable ({error}); delete it and it "
                             f"is rebuilt") from None
        if packed.shape != (len(self), IMAGE_SIZE * IMAGE_SIZE // 8) or packed.dtype != np.uint8:
            raise AekitError(f"the dsprites cache {self.cache_path} has shape {packed.shape}, not "
                             f"({len(self)}, 512); delete it and it is rebuilt")
        probe = np.linspace(0, len(self) - 1, _CHECK_ROWS).astype(np.int64)
        if not np.array_equal(np.unpackbits(packed[probe], axis=1).astype(bool),
                              self.render(self.factors(probe)).reshape(len(probe), -1)):
            raise AekitError(f"the dsprites cache {self.cache_path} disagrees with the generator; delete it "
                             f"and it is rebuilt")
        self._cache = packed
        return packed

    def build_cache(self, progress: bool | None = None) -> Path:
        """Render every combination once and write the bit-packed set to :attr:`cache_path` (atomically)."""
        from tqdm.auto import tqdm

        if self._open_cache() is not None:
            return self.cache_path
        folder = self.cache_path.parent
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".dsprites.", suffix=".npy.tmp", dir=folder)
        os.close(fd)
        try:
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8,
                                            shape=(len(self), IMAGE_SIZE * IMAGE_SIZE // 8))
            show = sys.stderr.isatty() if progress is None else progress
            for start in tqdm(range(0, len(self), _CHUNK), desc="rendering dsprites (once)", disable=not show,
                              leave=False):
                stop = min(start + _CHUNK, len(self))
                images = self.render(self.factors(np.arange(start, stop)))
                out[start:stop] = np.packbits(images.reshape(stop - start, -1), axis=1)
            out.flush()
            del out
            os.replace(tmp, self.cache_path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return self.cache_path

    def images(self, indices) -> np.ndarray:
        """Images of combination ``indices`` (N,): (N, 64, 64) bool, from the cache when there is one.

        Without a cache, requests of more than ``DIRECT_RENDER_LIMIT`` images build it first; smaller
        ones are rendered directly.
        """
        indices = np.asarray(indices, dtype=np.int64)
        packed = self._open_cache()
        if packed is None and len(indices) > DIRECT_RENDER_LIMIT:
            self.build_cache()
            packed = self._open_cache()
        if packed is None:
            return self.render(self.factors(indices))
        self.factors(indices)  # range check
        order = np.argsort(indices, kind="stable")  # sorted reads from the memory map are much faster
        rows = np.empty((len(indices), packed.shape[1]), dtype=np.uint8)
        rows[order] = packed[indices[order]]
        return np.unpackbits(rows, axis=1).astype(bool).reshape(-1, IMAGE_SIZE, IMAGE_SIZE)

    def observe(self, factors) -> np.ndarray:
        """The images of ``factors`` (N, 5) as float32 rows (N, 4096) in {0, 1}: what a model sees."""
        images = self.images(self.index(factors))
        return images.reshape(len(images), -1).astype(np.float32)


# ----------------------------------------------------------------------------- as a data set
def parse_spec(spec: str, generator: DSprites) -> tuple[int | None, list[np.ndarray]]:
    """SPEC of ``dsprites:SPEC`` → (number of images or None for all, allowed indices of each factor)."""
    count: int | None = DEFAULT_SUBSAMPLE
    allowed = [np.arange(n) for n in generator.factor_sizes]
    names = {name: k for k, name in enumerate(generator.factor_names)}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        if "=" not in item:
            if item == "all":
                count = None
                continue
            try:
                count = int(item)
            except ValueError:
                raise AekitError(f"dsprites:{spec}: '{item}' is neither a number of images, 'all', nor NAME=I "
                                 f"(names: shape, scale, orientation, x, y)") from None
            if count < 1:
                raise AekitError(f"dsprites: the number of images must be >= 1, got {count}")
            continue
        name, _, value = item.partition("=")
        name = _ALIASES.get(name.strip(), name.strip())
        if name not in names:
            raise AekitError(f"dsprites:{spec}: unknown factor '{name}'; choose one of: shape, scale, orientation, x, y")
        k, size = names[name], generator.factor_sizes[names[name]]
        lo_text, dash, hi_text = value.partition("-")
        try:
            lo, hi = int(lo_text), int(hi_text) if dash else int(lo_text)
        except ValueError:
            raise AekitError(f"dsprites:{spec}: {name}={value} must be an index I or a range I-J") from None
        if not 0 <= lo <= hi < size:
            raise AekitError(f"dsprites factor {name} takes indices 0..{size - 1}, got {value}")
        allowed[k] = np.arange(lo, hi + 1)
    return count, allowed


def subsample(generator: DSprites, count: int | None, allowed: list[np.ndarray], seed: int = SUBSAMPLE_SEED) -> np.ndarray:
    """Sorted combination indices: ``count`` distinct ones drawn uniformly from the allowed grid (all: None)."""
    grid = np.stack([a.ravel() for a in np.meshgrid(*allowed, indexing="ij")], 1)  # (M, 5), C order
    indices = generator.index(grid)
    if count is None or count >= len(indices):
        return indices
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(indices, size=count, replace=False))


def load_dsprites(spec: str = "", data_dir=None, download: bool = True):
    """``--data dsprites[:SPEC]`` as a :class:`~aekit.data.sources.SourceData` (shape as the label)."""
    import torch

    from .sources import SourceData

    generator = DSprites(root=data_dir)
    count, allowed = parse_spec(spec, generator)
    combinations = subsample(generator, count, allowed)
    images = generator.images(combinations)  # (N, 64, 64) bool
    x = torch.from_numpy(images.reshape(len(images), -1)).to(torch.float32)  # (N, 4096)
    shapes = torch.from_numpy(generator.factors(combinations)[:, 0])
    name = "dsprites" + (f":{spec}" if spec else "")
    return SourceData(x=x, y=shapes, image_shape=generator.image_shape, num_classes=generator.factor_sizes[0],
                      name=name, origin=name)

"""Where data comes from: the registered data sets and the user's own .npy / .npz / .csv files.

Every source returns a :class:`SourceData` (all rows as float32, before any split); ``load_data``
splits, validates and binarizes it the same way whatever the source.

Data folder of the IDX data sets (mnist, fashion-mnist), ROOT being the first of:
``data_dir`` argument (``--data-dir``), ``$AEKIT_DATA_DIR``, ``$XDG_CACHE_HOME/aekit`` (default
``~/.cache/aekit``). Each of the four files is looked for in ``ROOT/<name>/`` and then in ``ROOT``
itself, gzipped or not; missing files are downloaded into ``ROOT/<name>/``.
"""

from __future__ import annotations

import hashlib
import os
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from ..errors import AekitError
from ._util import one_line
from .download import DownloadError, RemoteFile, fetch
from .idx import parse_idx, read_idx, read_idx_bytes
from .shifter import load_shifter
from .transforms import remap_labels


@dataclass(frozen=True, eq=False)
class SourceData:
    """A source's rows before splitting."""

    x: torch.Tensor                         # (N, D) float32: the pool of train and val (and test, without test_x)
    y: torch.Tensor | None                  # (N,) int64 codes 0..K-1, or None
    image_shape: tuple[int, int, int] | None
    num_classes: int | None
    name: str
    origin: str                             # where the user would fix a bad value: a file, or the data set
    test_x: torch.Tensor | None = None      # the official test set, when the source publishes one
    test_y: torch.Tensor | None = None
    standardize: bool = False               # standardize features with train statistics (toy vector sets)


@dataclass(frozen=True)
class Source:
    """A registered data set: a one-line description and its loader (data_dir, download) -> SourceData."""

    description: str
    load: Callable[[Path | None, bool], SourceData]


# --------------------------------------------------------------------------------------------
# IDX releases: MNIST and Fashion-MNIST
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IdxRelease:
    """A data set published as the four IDX files of the MNIST layout."""

    name: str
    mirrors: tuple[str, ...]        # base URLs, tried in order; each is followed by the file name
    train_images: RemoteFile
    train_labels: RemoteFile
    test_images: RemoteFile
    test_labels: RemoteFile
    train_labels_md5: str           # of the gunzipped train labels: tells releases apart, as they share file names
    num_classes: int = 10

    @property
    def files(self) -> tuple[RemoteFile, ...]:
        return (self.train_images, self.train_labels, self.test_images, self.test_labels)


# MNIST. sha256: the .gz files as the mirrors serve them, published alongside download code in many
# public projects (e.g. the cvdf-datasets / ossci-datasets mirror listings). content_sha256: of the
# gunzipped IDX bytes, computed from /work/shared/data/mnist. Those copies were recompressed (their
# .gz bytes differ from the mirrors', the IDX bytes are the same: their md5s equal the published
# 6bbc9ace…, a25bea73…, 2646ac64…, 27ae3e4e…), so the content sum accepts any faithful recompression.
MNIST = IdxRelease(
    name="mnist",
    mirrors=(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ),
    train_images=RemoteFile(
        "train-images-idx3-ubyte.gz",
        sha256="440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        content_sha256="ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    ),
    train_labels=RemoteFile(
        "train-labels-idx1-ubyte.gz",
        sha256="3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        content_sha256="65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    ),
    test_images=RemoteFile(
        "t10k-images-idx3-ubyte.gz",
        sha256="8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        content_sha256="0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    ),
    test_labels=RemoteFile(
        "t10k-labels-idx1-ubyte.gz",
        sha256="f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        content_sha256="ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    ),
    train_labels_md5="a25bea736e30d166cdddb491f175f624",
)

# Fashion-MNIST (Xiao, Rasul & Vollgraf 2017). sha256 of the .gz files as served by Zalando's
# mirror, as published in two independent public projects (Britefury/batchup
# datasets/fashion_mnist.py and Connor Olding's "mnists" downloader), which agree. The md5 of the
# gunzipped train labels is the one torchvision publishes for its raw files.
FASHION_MNIST = IdxRelease(
    name="fashion-mnist",
    mirrors=(
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    ),
    train_images=RemoteFile(
        "train-images-idx3-ubyte.gz", sha256="08dc20ab1689590a0bcd66e874647b6ee8464e2d501b5a3f1f78831db19a3fdc"
    ),
    train_labels=RemoteFile(
        "train-labels-idx1-ubyte.gz", sha256="b0197879cbda89f3dc7b894f9fd52b858e68ea4182b6947c9d8c2b67e5f18dcc"
    ),
    test_images=RemoteFile(
        "t10k-images-idx3-ubyte.gz", sha256="78dcbbfb5a27efaf1b6c1d616caca68560be8766c5bffcb2791df9273a534229"
    ),
    test_labels=RemoteFile(
        "t10k-labels-idx1-ubyte.gz", sha256="42bd18137a62d5998cdeae52bf3a0676ac6b706f5cf8439b47bb5b151ae3dccf"
    ),
    train_labels_md5="9018921c3c673c538a1fc5bad174d6f9",
)

IDX_RELEASES: dict[str, IdxRelease] = {release.name: release for release in (MNIST, FASHION_MNIST)}


def data_root(data_dir: str | Path | None) -> Path:
    """ROOT: ``data_dir``, else ``$AEKIT_DATA_DIR``, else ``$XDG_CACHE_HOME/aekit`` (``~/.cache/aekit``)."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    if os.environ.get("AEKIT_DATA_DIR"):
        return Path(os.environ["AEKIT_DATA_DIR"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache).expanduser() / "aekit"


def _find(file: RemoteFile, release: str, root: Path) -> Path | None:
    """The first of ROOT/<release>/f.gz, ROOT/<release>/f, ROOT/f.gz, ROOT/f that exists."""
    plain = file.name.removesuffix(".gz")
    for folder in (root / release, root):
        for name in (file.name, plain):
            if (folder / name).is_file():
                return folder / name
    return None


def locate_release(release: IdxRelease, data_dir: str | Path | None, download: bool) -> dict[str, Path]:
    """Path of each file of ``release`` by its name, downloading the missing ones when allowed."""
    root = data_root(data_dir)
    folder = root / release.name
    found = {file.name: _find(file, release.name, root) for file in release.files}
    missing = [file for file in release.files if found[file.name] is None]
    where = (
        f"in {folder} (gzipped or not), or point --data-dir / AEKIT_DATA_DIR at the folder that holds them"
    )
    if missing and not download:
        raise AekitError(f"{release.name} files missing: put {', '.join(f.name for f in missing)} {where}")
    for i, file in enumerate(missing):
        try:
            found[file.name] = fetch(file, release.mirrors, folder)
        except DownloadError as error:
            names = ", ".join(f.name for f in missing[i:])
            raise AekitError(f"cannot download {release.name} ({error}): put {names} {where}") from None
    return found


def _check_release(release: IdxRelease, raw_train_labels: bytes, path: Path, root: Path) -> None:
    """Refuse another release's files (mnist and fashion-mnist share every file name)."""
    md5 = hashlib.md5(raw_train_labels).hexdigest()
    for other in IDX_RELEASES.values():
        if other.name != release.name and md5 == other.train_labels_md5:
            raise AekitError(
                f"{path} belongs to {other.name}, not {release.name}; point --data-dir at the folder "
                f"holding the {release.name} files, or put them in {root / release.name}"
            )


def _idx_images(images_path: Path, labels: np.ndarray, labels_path: Path,
                num_classes: int) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
    """(N, H, W) uint8 images and (N,) labels → x (N, H·W) in [0, 1], y (N,) int64, and (H, W)."""
    images = read_idx(images_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise AekitError(f"{images_path} must hold uint8 images (N, H, W), got {images.dtype} {images.shape}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise AekitError(
            f"{labels_path} holds {labels.shape} labels for the {len(images)} images of {images_path}; "
            f"the two files do not belong together"
        )
    if len(labels) and int(labels.max()) >= num_classes:
        raise AekitError(f"{labels_path} holds label {int(labels.max())}; expected 0..{num_classes - 1}")
    x = torch.from_numpy(images).reshape(len(images), -1).to(torch.float32).div_(255.0)  # (N, H·W)
    return x, torch.from_numpy(labels.astype(np.int64)), images.shape[1:]


def load_idx_release(release: IdxRelease, data_dir: str | Path | None, download: bool) -> SourceData:
    """The official training set as the pool (train + val) and the official test set as test."""
    paths = locate_release(release, data_dir, download)
    train_labels_path = paths[release.train_labels.name]
    test_labels_path = paths[release.test_labels.name]
    raw_train_labels = read_idx_bytes(train_labels_path)
    _check_release(release, raw_train_labels, train_labels_path, data_root(data_dir))  # before the large files
    x, y, size = _idx_images(paths[release.train_images.name], parse_idx(raw_train_labels, train_labels_path),
                             train_labels_path, release.num_classes)
    test_x, test_y, test_size = _idx_images(paths[release.test_images.name], read_idx(test_labels_path),
                                            test_labels_path, release.num_classes)
    if test_size != size:
        raise AekitError(
            f"{paths[release.train_images.name]} holds {size} images but {paths[release.test_images.name]} "
            f"holds {test_size}; the files do not belong together"
        )
    return SourceData(
        x=x, y=y, image_shape=(1, *size), num_classes=release.num_classes, name=release.name,
        origin=release.name, test_x=test_x, test_y=test_y,
    )


# --------------------------------------------------------------------------------------------
# Small built-in sets: no files, no network
# --------------------------------------------------------------------------------------------

TOY_SIZE = 5000              # points in swiss-roll and circle
TOY_SEED = 0                 # the toy sets are fixed data, not a function of the run's seed
CIRCLE_NOISE = 0.05          # σ of the isotropic Gaussian noise around the unit circle


def load_digits_set(data_dir: Path | None = None, download: bool = True) -> SourceData:
    """scikit-learn's 1797 8×8 digits (UCI optdigits test set), pixels 0..16 scaled to [0, 1]."""
    from sklearn.datasets import load_digits  # here, not at the top: importing sklearn takes seconds

    bunch = load_digits()
    x = torch.from_numpy(bunch.data.astype(np.float32) / 16.0)  # (1797, 64)
    y = torch.from_numpy(bunch.target.astype(np.int64))
    return SourceData(x=x, y=y, image_shape=(1, 8, 8), num_classes=10, name="digits", origin="digits")


def load_swiss_roll(data_dir: Path | None = None, download: bool = True) -> SourceData:
    """3-D swiss roll (sklearn ``make_swiss_roll``, no noise), standardized with train statistics."""
    from sklearn.datasets import make_swiss_roll

    points, _ = make_swiss_roll(n_samples=TOY_SIZE, noise=0.0, random_state=TOY_SEED)
    x = torch.from_numpy(points.astype(np.float32))  # (N, 3)
    return SourceData(x=x, y=None, image_shape=None, num_classes=None, name="swiss-roll", origin="swiss-roll",
                      standardize=True)


def load_circle(data_dir: Path | None = None, download: bool = True) -> SourceData:
    """2-D points (cos θ, sin θ) + ε, θ ~ U[0, 2π), ε ~ N(0, σ² I) with σ = CIRCLE_NOISE."""
    rng = np.random.default_rng(TOY_SEED)
    theta = rng.uniform(0.0, 2.0 * np.pi, TOY_SIZE)
    points = np.stack([np.cos(theta), np.sin(theta)], axis=1) + rng.normal(0.0, CIRCLE_NOISE, (TOY_SIZE, 2))
    x = torch.from_numpy(points.astype(np.float32))  # (N, 2)
    return SourceData(x=x, y=None, image_shape=None, num_classes=None, name="circle", origin="circle")


def _release_loader(release: IdxRelease) -> Callable[[Path | None, bool], SourceData]:
    return lambda data_dir, download: load_idx_release(release, data_dir, download)


DATASETS: dict[str, Source] = {
    "mnist": Source("MNIST handwritten digits, 28x28 grey, 60k train (incl. val) + 10k test; downloaded once",
                    _release_loader(MNIST)),
    "fashion-mnist": Source("Fashion-MNIST clothing images, 28x28 grey, 60k train (incl. val) + 10k test; "
                            "downloaded once", _release_loader(FASHION_MNIST)),
    "digits": Source("scikit-learn 8x8 digits, 1797 images, 10 classes; offline", load_digits_set),
    "swiss-roll": Source("3-D swiss roll, 5000 points, standardized, no labels; offline", load_swiss_roll),
    "circle": Source("2-D noisy unit circle, 5000 points, no labels; offline", load_circle),
    "shifter": Source("shifter patterns (Hinton et al. 1995): 4x8 binary, 12500 images, label = shift direction; offline",
                      load_shifter),
}


# --------------------------------------------------------------------------------------------
# Sources with a parameter in their name, NAME:ARGUMENT (images:DIR, dsprites:50000, photos:64)
# --------------------------------------------------------------------------------------------


def _photos(argument: str, data_dir, download) -> SourceData:
    from .photos import load_photos
    return load_photos(argument, data_dir, download)


def _dsprites(argument: str, data_dir, download) -> SourceData:
    from .dsprites import load_dsprites
    return load_dsprites(argument, data_dir, download)


def _images(argument: str, data_dir, download) -> SourceData:
    from .images import load_image_folder
    return load_image_folder(argument, data_dir, download)


# prefix → (what the argument is, description, loader(argument, data_dir, download) -> SourceData)
PARAMETERIZED: dict[str, tuple[str, str, Callable[[str, Path | None, bool], SourceData]]] = {
    "photos": ("SIZE", "colour patches (default 32x32) of scikit-learn's china.jpg and flower.jpg, test patches "
                       "from disjoint regions; offline", _photos),
    "dsprites": ("SPEC", "procedural dSprites, 64x64 binary square/ellipse/heart over 737,280 factor combinations; "
                         "a 20,000-image subsample (SPEC: N | all, factor=I-J); offline", _dsprites),
    "images": ("DIR[@SIZE]", "your folder of PNG/JPEG pictures, resized and cropped to SIZE (or HxW) when given",
               _images),
}
DATASETS["photos"] = Source(PARAMETERIZED["photos"][1], lambda data_dir, download: _photos("", data_dir, download))
DATASETS["dsprites"] = Source(PARAMETERIZED["dsprites"][1], lambda data_dir, download: _dsprites("", data_dir, download))


def parameterized_source(name: str) -> Source | None:
    """The source ``NAME:ARGUMENT`` names (e.g. images:DIR), or None when NAME is no such prefix."""
    prefix, colon, argument = name.partition(":")
    if not colon or prefix not in PARAMETERIZED:
        return None
    _, description, load = PARAMETERIZED[prefix]
    return Source(description, lambda data_dir, download: load(argument, data_dir, download))


# --------------------------------------------------------------------------------------------
# The user's own files
# --------------------------------------------------------------------------------------------

_LABEL_COLUMNS = ("label", "y")  # a CSV header column with one of these names holds the labels
# What numpy raises on a damaged file: bad/truncated zip, bad deflate data, a short or garbled .npy.
_NUMPY_FILE_ERRORS = (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error, KeyError)


def _np_load(path: Path):
    try:
        return np.load(path, allow_pickle=False)
    except _NUMPY_FILE_ERRORS as error:
        raise AekitError(f"cannot read {path} ({one_line(error)}); the file is corrupt or not a numpy file") from None


def _npz_array(archive, key: str, path: Path) -> np.ndarray:
    try:
        return archive[key]
    except _NUMPY_FILE_ERRORS as error:
        raise AekitError(f"cannot read array '{key}' of {path} ({one_line(error)}); the file is corrupt") from None


def _read_npy(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    array = _np_load(path)
    if not isinstance(array, np.ndarray):  # np.load returns an NpzFile for zip data
        raise AekitError(f"{path} is a .npz archive, not a .npy array; rename it to .npz")
    return array, None


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    with _np_load(path) as archive:
        keys = list(archive.files)
        x_key = next((k for k in ("x", "X") if k in keys), keys[0] if len(keys) == 1 else None)
        if x_key is None:
            raise AekitError(f"{path} holds arrays {keys}; name the data array 'x' (and the labels 'y')")
        y = _npz_array(archive, "y", path) if "y" in keys and x_key != "y" else None
        return _npz_array(archive, x_key, path), y


def _is_number(field: str) -> bool:
    try:
        float(field)
    except ValueError:
        return False
    return True


def _read_csv(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Numeric comma-separated rows; a first line that is not all numbers is a header."""
    try:
        with open(path, newline="") as f:
            first = f.readline()
    except (OSError, UnicodeDecodeError) as error:
        raise AekitError(f"cannot read {path} ({one_line(error)}); it must be a comma-separated text file") from None
    columns = [field.strip().strip("'\"").strip() for field in first.split(",")]
    has_header = not all(_is_number(c) for c in columns)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # numpy warns on an empty file; we raise below instead
            table = np.loadtxt(path, delimiter=",", skiprows=int(has_header), ndmin=2, dtype=np.float64)
    except (ValueError, UnicodeDecodeError) as error:
        raise AekitError(f"{path} is not a numeric comma-separated table ({one_line(error)})") from None
    if table.size == 0:
        raise AekitError(f"{path} holds no data rows")
    label_column = next((i for i, c in enumerate(columns) if has_header and c.lower() in _LABEL_COLUMNS), None)
    if label_column is None:
        return table, None
    return np.delete(table, label_column, axis=1), table[:, label_column]


_ARRAY_READERS: dict[str, Callable[[Path], tuple[np.ndarray, np.ndarray | None]]] = {
    ".npy": _read_npy,
    ".npz": _read_npz,
    ".csv": _read_csv,
}


def is_user_file(name: str) -> bool:
    """Whether ``name`` names a user data file (by its extension) rather than a registered set."""
    return Path(name).suffix.lower() in _ARRAY_READERS


def _existing(path: Path, what: str) -> Path:
    if not path.is_file():
        raise AekitError(f"{what} {path} does not exist; check the path")
    return path


def _read_label_file(path: Path) -> np.ndarray:
    """Labels from a .npy array, a one-column (or 'label'/'y'-headed) .csv, or a .npz ('y' or its only array)."""
    suffix = path.suffix.lower()
    if suffix == ".npz":
        with _np_load(path) as archive:
            keys = list(archive.files)
            key = "y" if "y" in keys else (keys[0] if len(keys) == 1 else None)
            if key is None:
                raise AekitError(f"{path} holds arrays {keys}; name the label array 'y'")
            return _npz_array(archive, key, path)
    if suffix not in _ARRAY_READERS:
        raise AekitError(f"label file {path} must be .npy, .csv or .npz")
    values, labels = _ARRAY_READERS[suffix](path)
    if labels is not None:
        return labels
    if values.ndim == 2 and values.shape[1] != 1:
        raise AekitError(f"{path} has {values.shape[1]} columns; give one column, or a header naming 'label'")
    return values.reshape(-1)


def _rows(x: np.ndarray, path: Path) -> tuple[torch.Tensor, tuple[int, int, int] | None]:
    """x (N, D) → vectors; (N, H, W) → images (1, H, W); (N, C, H, W) → images; as float32 rows."""
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == bool) or np.iscomplexobj(x):
        raise AekitError(f"{path} holds {x.dtype} values; aekit needs real numbers")
    if x.ndim not in (2, 3, 4) or len(x) == 0:
        raise AekitError(f"{path} holds shape {x.shape}; expected (N, D), (N, H, W) or (N, C, H, W) with N > 0")
    image_shape = {2: None, 3: (1, *x.shape[1:]), 4: tuple(x.shape[1:])}[x.ndim]
    rows = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32).reshape(len(x), -1))  # (N, D)
    return rows, image_shape


def load_user_file(name: str, labels: str | Path | None) -> SourceData:
    """Rows of a .npy / .npz / .csv file as they are (never rescaled), with optional labels."""
    path = _existing(Path(name).expanduser(), "data file")
    x, y = _ARRAY_READERS[path.suffix.lower()](path)
    rows, image_shape = _rows(x, path)
    label_origin = path
    if labels is not None:
        label_origin = _existing(Path(labels).expanduser(), "label file")
        y = _read_label_file(label_origin)
    codes, num_classes = None, None
    if y is not None:
        codes, num_classes = remap_labels(y, str(label_origin))
        if len(codes) != len(rows):
            raise AekitError(
                f"{label_origin} holds {len(codes)} labels but {path} has {len(rows)} rows; give one label per row"
            )
    return SourceData(x=rows, y=codes, image_shape=image_shape, num_classes=num_classes, name=path.stem,
                      origin=str(path))


# vqvae helper: procedural clips (3-D) and waveforms (1-D), and the code maps of a vq-vae run.
from .clips import clip_sources  # noqa: E402  (clips imports this module's SourceData and MNIST reader)

DATASETS.update(clip_sources())

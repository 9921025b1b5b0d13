"""Data layer: IDX files, downloads, sources, splits, binarization and the batch loader."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import struct
import zipfile
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch

from aekit.data import ArrayDataset, BatchLoader, DataSplits, binarize, list_datasets, load_data, read_idx
from aekit.data import download as download_module
from aekit.data.download import RemoteFile
from aekit.data.idx import write_idx
from aekit.data.sources import IdxRelease, data_root, load_idx_release
from aekit.errors import AekitError

MNIST_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


def mnist_dir() -> Path:
    return Path(os.environ.get("AEKIT_MNIST_DIR") or Path(__file__).resolve().parents[1] / ".." / "shared/data/mnist")


def has_mnist() -> bool:
    return all((mnist_dir() / name).is_file() for name in MNIST_FILES)


def raises_one_line(match: str):
    """pytest.raises(AekitError) that also checks the message is a single line."""

    class _Check:
        def __enter__(self):
            self._ctx = pytest.raises(AekitError, match=match)
            self.info = self._ctx.__enter__()
            return self.info

        def __exit__(self, *exc):
            suppressed = self._ctx.__exit__(*exc)
            assert "\n" not in str(self.info.value), str(self.info.value)
            return suppressed

    return _Check()


def files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


# ------------------------------------------------------------------------------------------------
# IDX
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize(
    "array",
    [
        np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4),
        np.array([-3, 0, 7], dtype=np.int8),
        np.array([[-300, 2], [5, 32000]], dtype=np.int16),
        np.array([1, -2, 2**30], dtype=np.int32),
        np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3),
        np.array([np.pi, -1e300], dtype=np.float64),
    ],
    ids=["u8", "i8", "i16", "i32", "f32", "f64"],
)
def test_idx_round_trip(tmp_path, array, suffix):
    path = tmp_path / f"a.idx{suffix}"
    write_idx(path, array)
    back = read_idx(path)
    assert back.dtype == array.dtype and back.dtype.isnative
    np.testing.assert_array_equal(back, array)
    back[...] = 0  # writable


def test_idx_header_is_the_documented_layout(tmp_path):
    write_idx(tmp_path / "l.idx", np.array([7, 2, 1], dtype=np.uint8))
    assert (tmp_path / "l.idx").read_bytes() == bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 2, 1])


def _idx_bytes(array: np.ndarray) -> bytes:
    """Uncompressed IDX bytes of a uint8 array, built from the format description, not write_idx."""
    assert array.dtype == np.uint8
    return bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


@pytest.mark.parametrize(
    "name, corrupt, match",
    [
        ("cut.idx", lambda b: b[:-1], "truncated"),
        ("cut-header.idx", lambda b: b[:6], "truncated inside its IDX header"),
        ("long.idx", lambda b: b + b"\x00", "longer than its header says"),
        ("magic.idx", lambda b: b"\x01" + b[1:], "not an IDX file"),
        ("dtype.idx", lambda b: b[:2] + b"\x07" + b[3:], "not an IDX file"),
        ("empty.idx", lambda b: b"", "not an IDX file"),
        ("garbage.gz", lambda b: b"\x1f\x8b" + b"definitely not deflate data", "not a valid gzip file"),
        ("cut.gz", lambda b: gzip.compress(b)[:-12], "not a valid gzip file"),
        ("plain.gz", lambda b: b, "named .gz but does not hold gzip data"),
        ("cut-inside.gz", lambda b: gzip.compress(b[:-5]), "truncated"),
    ],
)
def test_idx_corruption_is_named(tmp_path, name, corrupt, match):
    path = tmp_path / name
    path.write_bytes(corrupt(_idx_bytes(np.arange(60, dtype=np.uint8).reshape(3, 4, 5))))
    with raises_one_line(match) as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_idx_missing_file(tmp_path):
    with raises_one_line("does not exist"):
        read_idx(tmp_path / "nope.idx")


# ------------------------------------------------------------------------------------------------
# IDX data sets: folders and downloads (no network: urlopen is replaced)
# ------------------------------------------------------------------------------------------------


def _fake_release_files(num_train=30, num_test=10, side=5, seed=0) -> dict[str, bytes]:
    """Gzipped IDX bytes of a tiny MNIST-shaped release."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (num_train, side, side), dtype=np.uint8),
        "train-labels-idx1-ubyte.gz": rng.integers(0, 10, num_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (num_test, side, side), dtype=np.uint8),
        "t10k-labels-idx1-ubyte.gz": rng.integers(0, 10, num_test, dtype=np.uint8),
    }
    return {name: gzip.compress(_idx_bytes(a), mtime=0) for name, a in arrays.items()}


def _release_for(files: dict[str, bytes], content_only: bool = False) -> IdxRelease:
    """An IdxRelease whose checksums are those of ``files`` (file sha256, or only the content sha256)."""

    def remote(name):
        content = hashlib.sha256(gzip.decompress(files[name])).hexdigest()
        file_sum = "0" * 64 if content_only else hashlib.sha256(files[name]).hexdigest()
        return RemoteFile(name, sha256=file_sum, content_sha256=content)

    return IdxRelease("tiny", ("https://mirror-a/", "https://mirror-b/"), *(remote(n) for n in MNIST_FILES),
                      train_labels_md5="not-checked")


class FakeResponse(io.BytesIO):
    def __init__(self, data: bytes):
        super().__init__(data)
        self.headers = {"Content-Length": str(len(data))}


def _serve(monkeypatch, files: dict[str, bytes], down_mirrors=("https://mirror-a/",)):
    requested = []

    def fake_urlopen(url, timeout=None):
        requested.append(url)
        if any(url.startswith(m) for m in down_mirrors):
            raise URLError("mirror down")
        return FakeResponse(files[url.rsplit("/", 1)[1]])

    monkeypatch.setattr(download_module, "urlopen", fake_urlopen)
    return requested


def test_download_verifies_and_loads(tmp_path, monkeypatch):
    files = _fake_release_files()
    requested = _serve(monkeypatch, files)
    data = load_idx_release(_release_for(files), tmp_path, download=True)
    assert sorted(p.name for p in files_under(tmp_path)) == sorted(MNIST_FILES)  # no temp files left
    assert all((tmp_path / "tiny" / n).read_bytes() == files[n] for n in MNIST_FILES)
    assert any(u.startswith("https://mirror-b/") for u in requested)  # fell back to the second mirror
    assert data.x.shape == (30, 25) and data.test_x.shape == (10, 25) and data.image_shape == (1, 5, 5)
    # A second load finds the files and does not touch the network.
    monkeypatch.setattr(download_module, "urlopen", lambda *a, **k: pytest.fail("network used"))
    again = load_idx_release(_release_for(files), tmp_path, download=True)
    assert torch.equal(again.x, data.x)


def test_download_accepts_recompressed_same_content(tmp_path, monkeypatch):
    files = _fake_release_files()
    release = _release_for(files, content_only=True)  # file sums never match: only the content can
    _serve(monkeypatch, files)
    data = load_idx_release(release, tmp_path, download=True)
    assert len(data.x) == 30


def test_checksum_mismatch_is_rejected_and_leaves_nothing(tmp_path, monkeypatch):
    files = _fake_release_files()
    release = _release_for(files)
    tampered = dict(files, **{"t10k-images-idx3-ubyte.gz": gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x01\x05")})
    _serve(monkeypatch, tampered)
    with raises_one_line("t10k-images-idx3-ubyte.gz downloaded from .* does not match its published sha256"):
        load_idx_release(release, tmp_path, download=True)
    assert "t10k-images-idx3-ubyte.gz" not in [p.name for p in files_under(tmp_path)]
    assert not [p for p in files_under(tmp_path) if p.name.startswith(".")]  # no temp file


def test_checksum_mismatch_on_real_mnist_spec(tmp_path, monkeypatch):
    _serve(monkeypatch, {n: b"<html>not found</html>" for n in MNIST_FILES}, down_mirrors=())
    with raises_one_line("does not match its published sha256"):
        load_data("mnist", data_dir=tmp_path)
    assert files_under(tmp_path) == []


def test_offline_gives_one_line_and_writes_nothing(tmp_path, monkeypatch):
    def offline(url, timeout=None):
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(download_module, "urlopen", offline)
    with raises_one_line("cannot download mnist") as info:
        load_data("mnist", data_dir=tmp_path)
    message = str(info.value)
    assert all(name in message for name in MNIST_FILES)
    assert str(tmp_path / "mnist") in message and "--data-dir" in message and "AEKIT_DATA_DIR" in message
    assert files_under(tmp_path) == []


def test_offline_after_some_files_lists_only_the_missing(tmp_path, monkeypatch):
    files = _fake_release_files()
    calls = []

    def flaky(url, timeout=None):
        calls.append(url)
        if len(calls) == 2:  # the first file arrives from the second mirror, then the network goes
            return FakeResponse(files[url.rsplit("/", 1)[1]])
        raise URLError("unreachable")

    monkeypatch.setattr(download_module, "urlopen", flaky)
    with raises_one_line("cannot download tiny") as info:
        load_idx_release(_release_for(files), tmp_path, download=True)
    assert MNIST_FILES[0] not in str(info.value) and all(n in str(info.value) for n in MNIST_FILES[1:])
    assert [p.name for p in files_under(tmp_path)] == [MNIST_FILES[0]]  # complete and verified


def test_no_download_lists_missing_files(tmp_path, monkeypatch):
    monkeypatch.setattr(download_module, "urlopen", lambda *a, **k: pytest.fail("network used"))
    with raises_one_line("mnist files missing: put train-images-idx3-ubyte.gz, .*--data-dir"):
        load_data("mnist", data_dir=tmp_path, download=False)


def test_idx_files_found_directly_or_in_subfolder_gz_or_plain(tmp_path, monkeypatch):
    monkeypatch.setattr(download_module, "urlopen", lambda *a, **k: pytest.fail("network used"))
    files = _fake_release_files(num_train=40, num_test=8, side=28)
    (tmp_path / "mnist").mkdir()
    for i, (name, data) in enumerate(files.items()):
        if i % 2:  # half gzipped in ROOT/mnist/, half uncompressed twins directly in ROOT
            (tmp_path / "mnist" / name).write_bytes(data)
        else:
            (tmp_path / name.removesuffix(".gz")).write_bytes(gzip.decompress(data))
    splits = load_data("mnist", data_dir=tmp_path, val_fraction=0.25)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (30, 10, 8)
    assert splits.image_shape == (1, 28, 28) and splits.data_dim == 784 and splits.num_classes == 10
    test_images = read_idx(tmp_path / "t10k-images-idx3-ubyte")
    torch.testing.assert_close(splits.test.x, torch.from_numpy(test_images.reshape(8, -1) / 255.0).float())


def test_data_root_resolution(tmp_path, monkeypatch):
    monkeypatch.delenv("AEKIT_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data_root(None) == tmp_path / "xdg" / "aekit"
    monkeypatch.setenv("AEKIT_DATA_DIR", str(tmp_path / "env"))
    assert data_root(None) == tmp_path / "env"
    assert data_root(tmp_path / "arg") == tmp_path / "arg"


# ------------------------------------------------------------------------------------------------
# BatchLoader
# ------------------------------------------------------------------------------------------------


def _indexed(n=103, d=4, seed=0) -> ArrayDataset:
    """Rows whose column 0 is the row index (x[:, 1:] uniform in [0, 1)) and y = index % 7."""
    x = torch.rand(n, d, generator=torch.Generator().manual_seed(seed))
    x[:, 0] = torch.arange(n, dtype=torch.float32)
    return ArrayDataset(x=x, y=torch.arange(n) % 7, image_shape=None, num_classes=7, name="indexed")


def _ids(batches) -> list[list[int]]:
    return [xb[:, 0].long().tolist() for xb, _ in batches]


def _epoch(loader, epoch, start_batch=0):
    loader.set_epoch(epoch, start_batch)
    return list(loader)


@pytest.mark.parametrize("drop_last", [False, True])
def test_loader_covers_each_example_once(drop_last):
    data = _indexed()
    loader = BatchLoader(data, 10, drop_last=drop_last)
    batches = _epoch(loader, 0)
    assert len(batches) == len(loader) == (10 if drop_last else 11)
    ids = [i for b in _ids(batches) for i in b]
    assert len(ids) == len(set(ids)) == (100 if drop_last else 103)
    for xb, yb in batches:
        assert xb.dtype == torch.float32 and torch.equal(yb, xb[:, 0].long() % 7)


def test_loader_order_is_a_function_of_seed_and_epoch():
    data = _indexed()
    loader = BatchLoader(data, 16, seed=3)
    first = _ids(_epoch(loader, 5))
    assert _ids(_epoch(loader, 5)) == first
    assert _ids(_epoch(BatchLoader(data, 16, seed=3), 5)) == first  # a fresh loader (a resumed run)
    assert _ids(_epoch(loader, 6)) != first
    assert _ids(_epoch(BatchLoader(data, 16, seed=4), 5)) != first
    assert sorted(sum(first, [])) == list(range(103))


def test_loader_without_shuffle_keeps_file_order():
    assert sum(_ids(_epoch(BatchLoader(_indexed(), 16, shuffle=False), 3)), []) == list(range(103))


@pytest.mark.parametrize("dynamic", [False, True])
def test_start_batch_resumes_the_same_remaining_batches(dynamic):
    data = _indexed()
    x = data.x.clone()
    x[:, 1:] = torch.rand(len(x), 3)
    data = ArrayDataset(x=x.clamp(0, 1), y=data.y, image_shape=None, num_classes=7, name="d") if dynamic else data
    loader = BatchLoader(data, 10, dynamic_binarize=dynamic, seed=1)
    full = _epoch(loader, 2)
    resumed = _epoch(BatchLoader(data, 10, dynamic_binarize=dynamic, seed=1), 2, start_batch=4)
    assert len(resumed) == len(full) - 4
    for (xa, ya), (xb, yb) in zip(full[4:], resumed):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert _epoch(loader, 2, start_batch=len(loader)) == []


def _unit_data(n=103, d=6, seed=0) -> ArrayDataset:
    x = torch.rand(n, d, generator=torch.Generator().manual_seed(seed))
    return ArrayDataset(x=x, y=torch.arange(n), image_shape=None, num_classes=n, name="unit")


@pytest.mark.parametrize("world_size, batch_size", [(2, 10), (3, 12), (4, 8)])
@pytest.mark.parametrize("dynamic", [False, True])
def test_rank_slices_concatenate_to_the_global_batch(world_size, batch_size, dynamic):
    data = _unit_data()
    single = _epoch(BatchLoader(data, batch_size, dynamic_binarize=dynamic, seed=7), 3)
    ranks = [_epoch(BatchLoader(data, batch_size, dynamic_binarize=dynamic, seed=7, rank=r, world_size=world_size), 3)
             for r in range(world_size)]
    assert all(len(r) == len(single) for r in ranks)
    for i, (x_global, y_global) in enumerate(single):
        torch.testing.assert_close(torch.cat([r[i][0] for r in ranks]), x_global, rtol=0, atol=0)
        assert torch.equal(torch.cat([r[i][1] for r in ranks]), y_global)
        sizes = [len(r[i][1]) for r in ranks]
        assert max(sizes) - min(sizes) <= 1
        if len(y_global) == batch_size:
            assert sizes == [batch_size // world_size] * world_size  # [r·b/W, (r+1)·b/W)


def test_dynamic_binarization_is_bernoulli_and_fresh_each_epoch():
    p = torch.full((4000, 8), 0.3)
    p[:, 4:] = 0.9
    data = ArrayDataset(x=p, y=None, image_shape=None, num_classes=None, name="p")
    loader = BatchLoader(data, 500, dynamic_binarize=True)
    epoch0 = torch.cat([xb for xb, yb in _epoch(loader, 0)])
    assert set(epoch0.unique().tolist()) <= {0.0, 1.0}
    assert all(yb is None for _, yb in _epoch(loader, 0))
    means = epoch0.mean(0)  # sd of each mean ≈ sqrt(.21/4000) ≈ 0.007
    assert torch.allclose(means[:4], torch.tensor(0.3), atol=0.03)
    assert torch.allclose(means[4:], torch.tensor(0.9), atol=0.03)
    epoch1 = torch.cat([xb for xb, _ in _epoch(BatchLoader(data, 500, dynamic_binarize=True, shuffle=False), 1)])
    assert not torch.equal(epoch0, epoch1)


def test_loader_argument_errors():
    data = _unit_data()
    with raises_one_line("divisible by the 3 processes"):
        BatchLoader(data, 10, world_size=3)
    with raises_one_line("rank must be in"):
        BatchLoader(data, 10, rank=2, world_size=2)
    with raises_one_line("lower --batch-size"):
        BatchLoader(data, 200, drop_last=True)
    with raises_one_line("start_batch 12 is outside the 11 batches"):
        BatchLoader(data, 10).set_epoch(0, start_batch=12)
    grey = ArrayDataset(x=data.x * 255, y=None, image_shape=None, num_classes=None, name="grey")
    with raises_one_line(r"binarization needs values in \[0, 1\]"):
        BatchLoader(grey, 10, dynamic_binarize=True)


# ------------------------------------------------------------------------------------------------
# Binarization and load_data on the built-in sets
# ------------------------------------------------------------------------------------------------


def test_binarize_function():
    x = torch.tensor([[0.0, 1.0, 0.5]]).repeat(2000, 1)
    sample = binarize(x, torch.Generator().manual_seed(0))
    assert sample.dtype == torch.float32 and set(sample.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(sample[:, 0], torch.zeros(2000)) and torch.equal(sample[:, 1], torch.ones(2000))
    assert abs(sample[:, 2].mean().item() - 0.5) < 0.05
    assert torch.equal(sample, binarize(x, torch.Generator().manual_seed(0)))
    with raises_one_line(r"binarization needs values in \[0, 1\]; the data spans \[-0.5, 1\]"):
        binarize(torch.tensor([-0.5, 1.0]))


def test_digits_shapes_and_ranges():
    splits = load_data("digits")
    assert isinstance(splits, DataSplits) and splits.binarize == "none"
    assert (len(splits.train), len(splits.val), len(splits.test)) == (1294, 144, 359)
    assert splits.image_shape == (1, 8, 8) and splits.data_dim == 64 and splits.num_classes == 10
    assert splits.name == "digits"
    for part in (splits.train, splits.val, splits.test):
        assert part.x.dtype == torch.float32 and part.y.dtype == torch.int64
        assert part.x.min() >= 0 and part.x.max() <= 1 and part.x.max() == 1
        assert set(part.y.unique().tolist()) == set(range(10))
    assert (splits.train.x * 16).frac().abs().max() < 1e-5  # pixels were 0..16
    again = load_data("digits")
    assert torch.equal(again.val.x, splits.val.x)  # fixed split
    other = load_data("digits", seed=1)
    assert not torch.equal(other.val.x, splits.val.x)


def test_static_binarization_is_deterministic():
    a = load_data("digits", binarize="static")
    b = load_data("digits", binarize="static")
    for split in ("train", "val", "test"):
        xa = getattr(a, split).x
        assert set(xa.unique().tolist()) <= {0.0, 1.0}
        assert torch.equal(xa, getattr(b, split).x)
    c = load_data("digits", binarize="static", seed=1)
    assert not torch.equal(a.test.x, c.test.x)
    grey = load_data("digits")
    assert abs(a.train.x.mean().item() - grey.train.x.mean().item()) < 0.01


def test_dynamic_binarization_keeps_train_grey_and_fixes_eval():
    dynamic = load_data("digits", binarize="dynamic")
    grey = load_data("digits")
    static = load_data("digits", binarize="static")
    assert dynamic.binarize == "dynamic"
    assert torch.equal(dynamic.train.x, grey.train.x)
    assert torch.equal(dynamic.test.x, static.test.x) and torch.equal(dynamic.val.x, static.val.x)
    assert torch.equal(dynamic.test.x, load_data("digits", binarize="dynamic").test.x)


def test_toy_sets():
    roll = load_data("swiss-roll")
    assert roll.data_dim == 3 and roll.image_shape is None and roll.num_classes is None and roll.train.y is None
    assert (len(roll.train), len(roll.val), len(roll.test)) == (3600, 400, 1000)
    torch.testing.assert_close(roll.train.x.mean(0), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(roll.train.x.std(0), torch.ones(3), atol=1e-4, rtol=0)
    # All splits went through the one affine map fitted on train: raw = z·σ + μ for every row.
    from sklearn.datasets import make_swiss_roll

    raw = torch.from_numpy(make_swiss_roll(5000, noise=0.0, random_state=0)[0]).sort(dim=0).values
    z = torch.cat([roll.train.x, roll.val.x, roll.test.x]).double().sort(dim=0).values
    scale = (raw[-1] - raw[0]) / (z[-1] - z[0])
    torch.testing.assert_close(z * scale + (raw[0] - z[0] * scale), raw, atol=1e-4, rtol=0)
    circle = load_data("circle")
    assert circle.data_dim == 2 and circle.train.y is None
    radius = circle.train.x.norm(dim=1)
    assert abs(radius.mean().item() - 1.0) < 0.01 and radius.std().item() < 0.1


def test_list_datasets():
    listing = list_datasets()
    assert {"mnist", "fashion-mnist", "digits", "swiss-roll", "circle"} <= set(listing)
    assert all(isinstance(v, str) and v and "\n" not in v for v in listing.values())


def test_load_data_argument_errors(tmp_path):
    with raises_one_line("unknown binarization 'always'; choose one of: dynamic, none, static"):
        load_data("digits", binarize="always")
    with raises_one_line("unknown data set 'mnits'; choose one of: .*or a path to a .npy, .npz or .csv file"):
        load_data("mnits")
    with raises_one_line(r"val_fraction must be in \(0, 1\)"):
        load_data("digits", val_fraction=1.0)
    with raises_one_line("brings its own labels"):
        load_data("digits", labels=tmp_path / "y.npy")


def test_splits_to_device_keeps_everything():
    splits = load_data("digits").to("cpu")
    assert splits.train.x.device.type == "cpu" and splits.test.y.device.type == "cpu"
    assert splits.image_shape == (1, 8, 8)


# ------------------------------------------------------------------------------------------------
# User files
# ------------------------------------------------------------------------------------------------


def _rows_with_ids(n=50, d=3) -> np.ndarray:
    x = np.random.default_rng(0).random((n, d))
    x[:, 0] = np.arange(n)
    return x


def _all_ids(splits) -> list[int]:
    return sorted(torch.cat([splits.train.x[:, 0], splits.val.x[:, 0], splits.test.x[:, 0]]).long().tolist())


def test_npy_vectors_without_labels_are_not_rescaled(tmp_path):
    x = _rows_with_ids() * 100
    np.save(tmp_path / "points.npy", x)
    splits = load_data(str(tmp_path / "points.npy"))
    assert splits.name == "points" and splits.train.y is None and splits.image_shape is None
    assert (len(splits.train), len(splits.val), len(splits.test)) == (36, 4, 10)
    assert _all_ids(splits) == list(range(0, 5000, 100))  # every row once, values as saved
    with raises_one_line(r"binarization needs values in \[0, 1\]; points \(train split\) spans"):
        load_data(str(tmp_path / "points.npy"), binarize="static")


@pytest.mark.parametrize("shape, image_shape", [((20, 4, 5), (1, 4, 5)), ((20, 3, 4, 5), (3, 4, 5))])
def test_npy_images(tmp_path, shape, image_shape):
    x = np.random.default_rng(0).random(shape).astype(np.float32)
    np.save(tmp_path / "img.npy", x)
    splits = load_data(str(tmp_path / "img.npy"), binarize="static")
    assert splits.image_shape == image_shape and splits.data_dim == int(np.prod(shape[1:]))


def test_npz_with_labels_remapped(tmp_path):
    x = _rows_with_ids()
    y = np.where(np.arange(50) % 2, 10, -3)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    splits = load_data(str(tmp_path / "d.npz"))
    assert splits.num_classes == 2
    for part in (splits.train, splits.val, splits.test):
        torch.testing.assert_close(part.y, (part.x[:, 0].long() % 2))  # -3 → 0, 10 → 1


def test_npz_keys(tmp_path):
    np.savez(tmp_path / "one.npz", data=_rows_with_ids())
    assert load_data(str(tmp_path / "one.npz")).train.y is None
    np.savez(tmp_path / "upper.npz", X=_rows_with_ids(), y=np.arange(50) % 3)
    assert load_data(str(tmp_path / "upper.npz")).num_classes == 3
    np.savez(tmp_path / "two.npz", a=_rows_with_ids(), b=np.arange(50))
    with raises_one_line(r"holds arrays \['a', 'b'\]; name the data array 'x'"):
        load_data(str(tmp_path / "two.npz"))


def test_csv_with_and_without_header(tmp_path):
    x = _rows_with_ids()
    np.savetxt(tmp_path / "plain.csv", x, delimiter=",")
    plain = load_data(str(tmp_path / "plain.csv"))
    assert plain.data_dim == 3 and plain.train.y is None and _all_ids(plain) == list(range(50))
    np.savetxt(tmp_path / "head.csv", x, delimiter=",", header="id,a,b", comments="")
    assert load_data(str(tmp_path / "head.csv")).data_dim == 3
    labelled = np.column_stack([x[:, :2], np.arange(50) % 4 + 1, x[:, 2:]])
    np.savetxt(tmp_path / "lab.csv", labelled, delimiter=",", header='id,a,"label",b', comments="")
    splits = load_data(str(tmp_path / "lab.csv"))
    assert splits.data_dim == 3 and splits.num_classes == 4
    torch.testing.assert_close(splits.train.y, splits.train.x[:, 0].long() % 4)
    (tmp_path / "text.csv").write_text("a,b\n1,2\n3,oops\n")
    with raises_one_line("text.csv is not a numeric comma-separated table"):
        load_data(str(tmp_path / "text.csv"))


def test_separate_label_file_overrides(tmp_path):
    x = _rows_with_ids()
    np.savez(tmp_path / "d.npz", x=x, y=np.zeros(50))
    np.save(tmp_path / "y.npy", np.arange(50) % 5)
    splits = load_data(str(tmp_path / "d.npz"), labels=tmp_path / "y.npy")
    assert splits.num_classes == 5
    torch.testing.assert_close(splits.val.y, splits.val.x[:, 0].long() % 5)
    (tmp_path / "y.csv").write_text("label\n" + "\n".join(str(i % 2) for i in range(50)) + "\n")
    assert load_data(str(tmp_path / "d.npz"), labels=str(tmp_path / "y.csv")).num_classes == 2
    np.save(tmp_path / "short.npy", np.arange(49))
    with raises_one_line("short.npy holds 49 labels but .*d.npz has 50 rows"):
        load_data(str(tmp_path / "d.npz"), labels=tmp_path / "short.npy")
    with raises_one_line("label file .*missing.npy does not exist"):
        load_data(str(tmp_path / "d.npz"), labels=tmp_path / "missing.npy")


def test_nan_and_inf_rejected(tmp_path):
    x = _rows_with_ids()
    x[3, 2] = np.nan
    x[7, 1] = np.inf
    x[9, 1] = -np.inf
    np.save(tmp_path / "bad.npy", x)
    with raises_one_line(r"bad.npy holds 1 NaN and 2 infinite values \(first at row 3, column 2") as info:
        load_data(str(tmp_path / "bad.npy"))
    assert "remove or replace them in" in str(info.value)


def test_corrupt_or_missing_user_files(tmp_path):
    np.savez(tmp_path / "good.npz", x=_rows_with_ids())
    data = (tmp_path / "good.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    with raises_one_line("cannot read .*cut.npz"):
        load_data(str(tmp_path / "cut.npz"))
    np.save(tmp_path / "good.npy", _rows_with_ids())
    data = (tmp_path / "good.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(data[:-40])
    with raises_one_line("cannot read .*cut.npy"):
        load_data(str(tmp_path / "cut.npy"))
    # A zip whose member is damaged: the directory reads, the array does not.
    with zipfile.ZipFile(tmp_path / "crc.npz", "w") as archive:
        archive.writestr("x.npy", b"\x93NUMPY garbage")
    with raises_one_line("crc.npz"):
        load_data(str(tmp_path / "crc.npz"))
    with raises_one_line("data file .*absent.csv does not exist"):
        load_data(str(tmp_path / "absent.csv"))
    np.save(tmp_path / "flat.npy", np.arange(5.0))
    with raises_one_line(r"flat.npy holds shape \(5,\); expected"):
        load_data(str(tmp_path / "flat.npy"))
    np.save(tmp_path / "tiny.npy", np.zeros((2, 3)))
    with raises_one_line("too few for train / val / test"):
        load_data(str(tmp_path / "tiny.npy"))


# ------------------------------------------------------------------------------------------------
# Real MNIST (skipped without the files)
# ------------------------------------------------------------------------------------------------


@pytest.mark.mnist
@pytest.mark.skipif(not has_mnist(), reason="MNIST IDX files not found (set AEKIT_MNIST_DIR)")
def test_mnist_from_shared_folder(monkeypatch):
    monkeypatch.setattr(download_module, "urlopen", lambda *a, **k: pytest.fail("network used"))
    splits = load_data("mnist", data_dir=mnist_dir())
    assert (len(splits.train), len(splits.val), len(splits.test)) == (54000, 6000, 10000)
    assert splits.image_shape == (1, 28, 28) and splits.data_dim == 784 and splits.num_classes == 10
    assert splits.train.x.dtype == torch.float32 and splits.train.y.dtype == torch.int64
    assert splits.train.x.min() == 0 and splits.train.x.max() == 1
    assert splits.test.y[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]  # the official test order
    assert torch.bincount(splits.test.y).tolist()[:3] == [980, 1135, 1032]


@pytest.mark.mnist
@pytest.mark.skipif(not has_mnist(), reason="MNIST IDX files not found (set AEKIT_MNIST_DIR)")
def test_mnist_files_are_not_taken_for_fashion_mnist(tmp_path, monkeypatch):
    monkeypatch.setattr(download_module, "urlopen", lambda *a, **k: pytest.fail("network used"))
    for name in MNIST_FILES:
        (tmp_path / name).symlink_to((mnist_dir() / name).resolve())
    with raises_one_line("belongs to mnist, not fashion-mnist"):
        load_data("fashion-mnist", data_dir=tmp_path)


@pytest.mark.mnist
@pytest.mark.skipif(not has_mnist(), reason="MNIST IDX files not found (set AEKIT_MNIST_DIR)")
def test_mnist_checksums_accept_the_shared_copies_over_http(tmp_path):
    """A real HTTP transfer from a local mirror of the shared files passes the MNIST checksums."""
    import functools
    import http.server
    import threading

    from aekit.data.sources import MNIST, locate_release

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(mnist_dir()))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            release = IdxRelease(**{**MNIST.__dict__, "mirrors": (f"http://127.0.0.1:{server.server_port}/",)})
            paths = locate_release(release, tmp_path, download=True)
        finally:
            server.shutdown()
    assert sorted(p.name for p in files_under(tmp_path)) == sorted(MNIST_FILES)
    assert all(paths[n].read_bytes() == (mnist_dir() / n).read_bytes() for n in MNIST_FILES)

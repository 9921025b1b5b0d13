"""The IDX format of MNIST and Fashion-MNIST (LeCun et al., http://yann.lecun.com/exdb/mnist/).

An IDX file is a header followed by the array in C order, big-endian::

    bytes 0-1   0x00 0x00
    byte  2     element type: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64
    byte  3     number of dimensions n
    4n bytes    the n dimension sizes, uint32 big-endian
    rest        prod(sizes) elements

so a file is valid exactly when its length is ``4 + 4n + prod(sizes) * itemsize``. Files may be
gzipped (recognised by the gzip magic bytes 1f 8b, whatever the file name).
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np

from ..errors import AekitError
from ._util import one_line

# Element type code (byte 2 of the magic number) -> big-endian numpy dtype.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"
_REFETCH = "delete it and download it again (or copy an intact one)"


def read_idx_bytes(path: str | Path) -> bytes:
    """The uncompressed bytes of an IDX file, gunzipping when the file is gzip data."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise AekitError(f"IDX file {path} does not exist; check the path") from None
    except OSError as error:
        raise AekitError(f"cannot read {path} ({error.strerror}); check that it is a readable file") from None
    if raw[:2] == _GZIP_MAGIC:
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as error:  # BadGzipFile is an OSError; EOFError = truncated
            raise AekitError(f"{path} is not a valid gzip file ({one_line(error)}); {_REFETCH}") from None
    if path.suffix == ".gz":
        raise AekitError(f"{path} is named .gz but does not hold gzip data; {_REFETCH}")
    return raw


def parse_idx(raw: bytes, path: str | Path = "<bytes>") -> np.ndarray:
    """Decode uncompressed IDX bytes into a native-byte-order array (``path`` only names errors)."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_DTYPES or raw[3] == 0:
        raise AekitError(f"{path} is not an IDX file (magic number {raw[:4].hex() or 'missing'}); {_REFETCH}")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise AekitError(f"{path} is truncated inside its IDX header ({len(raw)} bytes); {_REFETCH}")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = IDX_DTYPES[raw[2]]
    expected = header + math.prod(shape) * dtype.itemsize
    if len(raw) != expected:
        problem = "truncated" if len(raw) < expected else "longer than its header says"
        raise AekitError(
            f"{path} is {problem}: {len(raw)} bytes, but a {dtype.name} array of shape {shape} needs "
            f"{expected}; {_REFETCH}"
        )
    array = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    # astype copies, so the result is writable (torch.from_numpy warns on read-only buffers).
    return array.astype(dtype.newbyteorder("="))


def read_idx(path: str | Path) -> np.ndarray:
    """Read a raw or gzipped IDX file; bad magic, bad gzip or a wrong length raise AekitError."""
    return parse_idx(read_idx_bytes(path), path)


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write ``array`` as IDX, gzipped when ``path`` ends in ``.gz`` (the inverse of :func:`read_idx`)."""
    array = np.asarray(array)
    codes = {dtype.newbyteorder("="): code for code, dtype in IDX_DTYPES.items()}
    native = array.dtype.newbyteorder("=")
    if native not in codes or array.ndim == 0:
        raise ValueError(f"IDX holds 1+-dimensional uint8/int8/int16/int32/float32/float64, got {array.dtype}")
    header = bytes([0, 0, codes[native], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + np.ascontiguousarray(array, dtype=native.newbyteorder(">")).tobytes()
    if str(path).endswith(".gz"):
        data = gzip.compress(data)
    Path(path).write_bytes(data)


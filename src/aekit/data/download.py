"""Fetching published data files: each mirror in turn, checksum-verified, written atomically.

A file is streamed into a temporary file beside its target while its SHA-256 is computed, and
renamed over the target only once the checksum matches, so an interrupted or corrupt download
never leaves a file that a later run would trust.
"""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path
from typing import BinaryIO, Sequence
from urllib.request import urlopen  # module attribute, so tests can replace it

from tqdm import tqdm

from ..errors import AekitError
from ._util import one_line

TIMEOUT_S = 30.0  # per connection and per read: a dead mirror must not hang a run
_CHUNK = 1 << 16


@dataclass(frozen=True)
class RemoteFile:
    """One published file and the SHA-256 sums that identify it."""

    name: str                           # file name on the mirrors and on disk
    sha256: str                         # of the file exactly as the mirrors serve it
    content_sha256: str | None = None   # of its gunzipped bytes: accepts a mirror that recompressed the same data


class DownloadError(Exception):
    """No mirror could be reached (no network, DNS failure, HTTP error, timeout)."""


class _NetworkError(Exception):
    """A read from the connection failed mid-transfer."""


def fetch(file: RemoteFile, mirrors: Sequence[str], folder: Path) -> Path:
    """Download ``file`` from the first mirror that answers into ``folder``; return its path.

    Raises :class:`DownloadError` when every mirror fails to connect or drops the transfer, and
    :class:`AekitError` when a transfer completes but does not match the published checksum
    (nothing is written in either case).
    """
    from ..runs import atomic_write  # the one temp-file-and-rename writer of aekit

    target = Path(folder) / file.name
    failures = []
    for mirror in mirrors:
        url = mirror + file.name
        try:
            response = urlopen(url, timeout=TIMEOUT_S)
        except (OSError, HTTPException) as error:  # URLError, HTTPError and timeouts are OSErrors
            failures.append(one_line(error))
            continue
        with response:
            try:
                atomic_write(target, lambda out: _copy_verified(response, out, file, url, target.parent))
            except _NetworkError as error:
                failures.append(str(error))
                continue
        return target
    raise DownloadError("; ".join(dict.fromkeys(failures)))  # each distinct reason once


def _copy_verified(response, out: BinaryIO, file: RemoteFile, url: str, folder: Path) -> None:
    """Stream ``response`` into ``out`` and raise AekitError unless a published checksum matches."""
    digest = hashlib.sha256()
    content_digest = hashlib.sha256()
    gunzip = zlib.decompressobj(wbits=31) if file.content_sha256 else None  # wbits=31: gzip container
    length = response.headers.get("Content-Length")
    with tqdm(total=int(length) if length else None, unit="B", unit_scale=True, unit_divisor=1024,
              desc=file.name, leave=False, disable=None) as progress:
        while True:
            try:
                chunk = response.read(_CHUNK)
            except (OSError, HTTPException) as error:
                raise _NetworkError(one_line(error)) from None
            if not chunk:
                break
            out.write(chunk)
            digest.update(chunk)
            progress.update(len(chunk))
            if gunzip is not None:
                try:
                    content_digest.update(gunzip.decompress(chunk))
                except zlib.error:
                    gunzip = None  # not gzip data: only the file checksum can match now
    if digest.hexdigest() == file.sha256:
        return
    if gunzip is not None and gunzip.eof and content_digest.hexdigest() == file.content_sha256:
        return
    raise AekitError(
        f"{file.name} downloaded from {url} does not match its published sha256 "
        f"(got {digest.hexdigest()}); it was not kept: retry later, or put a verified copy in {folder}"
    )

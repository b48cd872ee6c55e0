"""Getting a corpus file onto disk: download with progress and checksum, landing atomically.

Downloads go through pooch (a small, well-kept library for exactly this: fetch a data file over
HTTP with a progress bar, check its hash, and move it into place only when complete and correct),
so a file at ``dest`` is always complete and verified; one that fails the check is deleted. An
existing cache entry whose hash is wrong is moved aside to ``<dest>.bad`` and fetched again, and so
is a download that preparing finds damaged or not the expected content (``set_aside_if_bad``).
Archives are then read with the standard library's zipfile and tarfile as streams (pooch's own
unpacking would extract members to disk, which charlm never does).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from datamodules.errors import (
    DISK_FULL,
    ChecksumMismatchError,
    CorpusUnavailableError,
    CorruptArchiveError,
    cache_write_error,
    corrupt_archive,
)

__all__ = ["ChecksumMismatchError", "CorpusUnavailableError", "Download", "download", "set_aside_if_bad", "sha256_of"]

_CHUNK = 1 << 20


def sha256_of(path: Path) -> str:
    """The file's SHA-256 as hex, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def download(url: str, dest: Path, sha256: str | None, timeout: float = 30.0) -> Path:
    """Download ``url`` to ``dest`` (verified against ``sha256`` unless None) and return ``dest``.

    An existing ``dest`` with the right checksum is reused without touching the network. The
    transfer itself is pooch's (requests underneath, a progress bar, a temporary file that is
    moved into place only after the hash matched).
    """
    dest = Path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise cache_write_error(dest.parent, err) from None
    if dest.is_file():
        if sha256 is None or sha256_of(dest) == sha256:
            return dest
        # a stale or tampered cache entry: never train on it, fetch again
        os.replace(dest, dest.with_name(dest.name + ".bad"))
    import pooch  # here: only a download needs pooch and requests (training on a local file starts without them)
    import requests

    downloader = pooch.HTTPDownloader(progressbar=True, timeout=timeout)
    try:
        pooch.retrieve(url, known_hash=f"sha256:{sha256}" if sha256 else None, fname=dest.name,
                       path=dest.parent, downloader=downloader)
    except ValueError as err:  # pooch: the downloaded file's hash is not the known one (file removed)
        raise ChecksumMismatchError(
            f"The file downloaded from {url} does not have the expected sha256 {sha256}; it was not used "
            f"({err}). Check the URL or mirror, or pass the expected checksum."
        ) from None
    except OSError as err:  # requests' errors are OSErrors too
        if not isinstance(err, requests.RequestException) and (
            isinstance(err, PermissionError) or err.errno in DISK_FULL
        ):  # writing into the cache failed, not the network
            raise cache_write_error(dest, err) from None
        raise CorpusUnavailableError(
            f"Could not download {url} ({type(err).__name__}: {err}).\n"
            f"If this machine is offline, fetch the file elsewhere and put it at {dest} "
            f"(or point the data module's `path` argument at a local copy), then run again."
        ) from None
    return dest


@dataclass(frozen=True)
class Download:
    """A corpus file charlm downloaded into its cache (never one the user gave with ``--data.path``)."""

    file: Path
    url: str  # where it came from


@contextmanager
def set_aside_if_bad(download: Download | None) -> Iterator[None]:
    """Move a damaged or wrong download aside to ``<file>.bad`` when reading it fails, so the next run
    fetches it anew, and say so; with None (the user's own file) errors pass as they are."""
    try:
        yield
    except (CorruptArchiveError, ChecksumMismatchError) as err:
        if download is None or not download.file.is_file():
            raise
        file, url = download.file, download.url
        bad = file.with_name(file.name + ".bad")
        file.replace(bad)
        what = f"{file} (downloaded from {url})"
        if isinstance(err, CorruptArchiveError):
            raise corrupt_archive(what, err.detail or str(err),
                                  f"It was moved aside to {bad.name}; run again to download it anew.") from None
        raise ChecksumMismatchError(f"{err} {file} was moved aside to {bad.name}; run again to download it "
                                    f"anew, or pass --data.sha256 null to accept what {url} serves.") from None

"""Getting a corpus file onto disk: download with progress and checksum, landing atomically.

Downloads go through pooch (a small, well-kept library for exactly this: fetch a data file over
HTTP with a progress bar, check its hash, and move it into place only when complete and correct),
so a file at ``dest`` is always complete and verified; one that fails the check is deleted. A file
already in the cache whose hash is wrong (put there by hand, or left by a run with other settings) is
never deleted: the right file is downloaded beside it, then it is moved aside to ``<dest>.bad``, saying
so; when that download fails it stays where it is, and the error says it failed its checksum and how
to train on it. A download that preparing finds damaged or not the expected content is moved aside
too (``set_aside_if_bad``), its message saying whether this run downloaded it.
Archives are then read with the standard library's zipfile and tarfile as streams (pooch's own
unpacking would extract members to disk, which charlm never does).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from datamodules.common.errors import (
    DISK_FULL,
    ChecksumMismatchError,
    CorpusUnavailableError,
    CorruptArchiveError,
    cache_write_error,
    corrupt_archive,
)
from datamodules.common.rank_zero import rank_zero_note
from datamodules.io.atomic_files import fsync_dir, temp_name

__all__ = ["ChecksumMismatchError", "CorpusUnavailableError", "Download", "cached_download", "download",
           "set_aside_if_bad", "sha256_of"]

_CHUNK = 1 << 20
# what to do with a file in the cache that failed its checksum, to train on it anyway ({file}: where it is)
OWN_FILE = "To train on that file as it is, pass --data.path {file}."


def sha256_of(path: Path) -> str:
    """The file's SHA-256 as hex, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def download(url: str, dest: Path, sha256: str | None, timeout: float = 30.0, own_file: str = OWN_FILE) -> Path:
    """Download ``url`` to ``dest`` (verified against ``sha256`` unless None) and return ``dest``.

    An existing ``dest`` with the right checksum is reused without touching the network; one with another
    is replaced (``_replace_failing``: ``own_file`` says how to train on it instead). The transfer itself is
    pooch's (requests underneath, a progress bar, a temporary file that is moved into place only after the
    hash matched).
    """
    dest = Path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise cache_write_error(dest.parent, err) from None
    if dest.is_file():
        got = None if sha256 is None else sha256_of(dest)
        if got is None or got == sha256:
            return dest
        return _replace_failing(url, dest, sha256, got, timeout, own_file)
    _fetch(url, dest, sha256, timeout)
    return dest


def _fetch(url: str, dest: Path, sha256: str | None, timeout: float) -> None:
    """pooch's download of ``url`` to ``dest``, its failures worded for the user."""
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


def download_over(url: str, dest: Path, sha256: str | None, timeout: float = 30.0, aside: Path | None = None) -> None:
    """Download ``url`` beside ``dest`` (verified against ``sha256`` unless None), then rename it over ``dest``,
    first moving ``dest`` to ``aside`` if given: a reader (another rank) sees the old file or the new one, never
    none or half of one. When the download fails, ``dest`` stays as it was."""
    fresh = temp_name(dest)
    try:
        fresh.unlink(missing_ok=True)  # pooch reuses an existing file: a leftover must not pass for the new one
        _fetch(url, fresh, sha256, timeout)
        if aside is not None:
            os.replace(dest, aside)
        os.replace(fresh, dest)
    except OSError as err:
        raise cache_write_error(dest, err) from None
    finally:
        fresh.unlink(missing_ok=True)  # gone after the rename; left only by a failure
    fsync_dir(dest.parent)


def _replace_failing(url: str, dest: Path, expected: str, got: str, timeout: float, own_file: str) -> Path:
    """``dest`` is in the cache but fails its checksum, so this run did not download it: it was put there by hand
    (where an offline error said, say) or left by a run with another --data.url or --data.sha256. Never train on
    it, never delete it: download the right file beside it, and only then move it aside (saying so); if that
    download fails, leave it where it is and say why it was not used. Holding a lock on the failing file: every
    process of a DDP run gets here, and only the first replaces it (the others then find the right one)."""
    failed = f"{dest} failed its checksum (sha256 {got}, expected {expected})"
    with open(dest, "rb") as failing:
        fcntl.flock(failing, fcntl.LOCK_EX)  # released when closed; a waiter wakes on the file moved aside
        if sha256_of(dest) == expected:
            return dest  # another process replaced it while this one waited
        bad = _aside_name(dest)
        try:
            download_over(url, dest, expected, timeout, aside=bad)
        except (CorpusUnavailableError, ChecksumMismatchError) as err:
            raise ChecksumMismatchError(
                f"{failed}: it is not the file {url} serves, so it was not used, and was left as it is; "
                f"downloading that file failed: {str(err).splitlines()[0]} {own_file.format(file=dest)} Or put "
                f"the file {url} serves in its place, then run again."
            ) from None
    rank_zero_note(f"charlm: {failed}: it is not the file {url} serves, so it was moved aside to {bad} and that "
                   f"file downloaded in its place. To train on the file moved aside, move it out of the cache and "
                   f"pass --data.path with it.")
    return dest


def _aside_name(file: Path) -> Path:
    """Where ``file`` is moved aside to: ``<file>.bad``, or ``<file>.bad.2``, ... when an earlier one is there
    (what was moved aside before is never overwritten)."""
    bad, n = file.with_name(file.name + ".bad"), 1
    while bad.exists():
        n += 1
        bad = file.with_name(f"{file.name}.bad.{n}")
    return bad


def cached_download(url: str, dest: Path, sha256: str | None, own_file: str = OWN_FILE) -> Download:
    """``download``, noting whether this run downloaded the file (or found it in the cache already)."""
    before = _identity(dest)
    file = download(url, dest, sha256, own_file=own_file)
    return Download(file, url, fetched=_identity(file) != before)


def _identity(path: Path) -> tuple[int, ...] | None:
    """What tells a file downloaded now from the one that was there before (None: none was)."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns


@dataclass(frozen=True)
class Download:
    """A corpus file in charlm's download cache (never one the user gave with ``--data.path``)."""

    file: Path
    url: str  # where it comes from
    fetched: bool  # downloaded by this run; False: in the cache already (an earlier run's, or put there by hand)

    def origin(self) -> str:
        """How the file came to be there, for messages."""
        if self.fetched:
            return f"{self.file} (downloaded from {self.url})"
        return f"{self.file} (in the cache already: put there by hand or by an earlier run, not downloaded now)"


@contextmanager
def set_aside_if_bad(download: Download | None) -> Iterator[None]:
    """Move a damaged or wrong download aside to ``<file>.bad`` when reading it fails, so the next run
    fetches it anew, and say so (and whether this run downloaded it); with None (the user's own file)
    errors pass as they are."""
    try:
        yield
    except (CorruptArchiveError, ChecksumMismatchError) as err:
        if download is None or not download.file.is_file():
            raise
        bad = _aside_name(download.file)
        download.file.replace(bad)
        again = f"run again to download it {'anew' if download.fetched else 'from ' + download.url}"
        own = "" if download.fetched else ", or, to train on that file, move it out of the cache and pass --data.path"
        if isinstance(err, CorruptArchiveError):  # damaged: nothing to train on, so no --data.path advice
            raise corrupt_archive(download.origin(), err.detail or str(err),
                                  f"It was moved aside to {bad.name}; {again}.") from None
        if download.fetched:
            raise ChecksumMismatchError(f"{err} {download.file} was moved aside to {bad.name}; {again}, or pass "
                                        f"--data.sha256 null to accept what {download.url} serves.") from None
        raise ChecksumMismatchError(f"{err} {download.origin()} was moved aside to {bad.name}; "
                                    f"{again}{own} with --data.sha256 null.") from None

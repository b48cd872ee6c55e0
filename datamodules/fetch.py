"""Getting a corpus file onto disk: download with progress and checksum, landing atomically.

A download goes to ``<dest>.part`` and is renamed onto ``dest`` only after its sha256 matches, so a
file at ``dest`` is always complete and verified. A file that fails the check is never kept under
the final name (it is moved aside to ``<dest>.bad`` for inspection).
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

_CHUNK = 1 << 20


class CorpusUnavailableError(RuntimeError):
    """The corpus could neither be found locally nor downloaded."""


class ChecksumMismatchError(RuntimeError):
    """A file's sha256 is not the published one."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def download(url: str, dest: Path, sha256: str | None, timeout: float = 30.0) -> Path:
    """Download ``url`` to ``dest`` (verified against ``sha256`` unless None) and return ``dest``.

    An existing ``dest`` with the right checksum is reused without touching the network.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.is_file():
        if sha256 is None or sha256_of(dest) == sha256:
            return dest
        # a stale or tampered cache entry: never train on it, fetch again
        os.replace(dest, dest.with_name(dest.name + ".bad"))

    part = dest.with_name(dest.name + ".part")
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(part, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"Downloading {dest.name}") as bar:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
            if total is not None and out.tell() != total:
                raise CorpusUnavailableError(
                    f"Download of {url} stopped after {out.tell():,} of {total:,} bytes. Run again to restart it."
                )
    except (urllib.error.URLError, OSError, ValueError) as err:
        part.unlink(missing_ok=True)
        raise CorpusUnavailableError(
            f"Could not download {url} ({err}).\n"
            f"If this machine is offline, fetch the file elsewhere and put it at {dest} "
            f"(or point the data module's `path` argument at a local copy), then run again."
        ) from err
    except BaseException:
        part.unlink(missing_ok=True)
        raise

    got = digest.hexdigest()
    if sha256 is not None and got != sha256:
        bad = dest.with_name(dest.name + ".bad")
        os.replace(part, bad)
        raise ChecksumMismatchError(
            f"The file downloaded from {url} has sha256 {got}, but {sha256} was expected; it was not used "
            f"(kept at {bad} for inspection). Check the URL or mirror, or pass the expected checksum."
        )
    os.replace(part, dest)
    return dest

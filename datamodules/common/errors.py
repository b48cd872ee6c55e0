"""The errors a corpus can end in that are the user's to fix; ``python -m charlm`` prints each as one line.

This module imports nothing, so the entry point can list these errors without loading the data
modules. Every message names the file or folder at fault and says what to do.
"""

from __future__ import annotations

import errno
from pathlib import Path

# write errors that mean "this disk (or this process's share of it) is full"
DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


class CorpusUnavailableError(RuntimeError):
    """The corpus could neither be found locally nor downloaded."""


class ChecksumMismatchError(RuntimeError):
    """A file's sha256 is not the published one."""


class CorruptArchiveError(RuntimeError):
    """An archive is truncated or damaged; ``path`` and ``detail`` say which and how (see corrupt_archive)."""

    path: str = ""
    detail: str = ""


class CacheWriteError(RuntimeError):
    """Writing into charlm's cache folder failed: the disk is full, or the folder is not writable."""


def corrupt_archive(path: Path | str, detail: str, todo: str | None = None) -> CorruptArchiveError:
    """The error for a damaged archive; by default the user gave it (``--data.path``), so say how to replace it."""
    todo = todo or "Download it again, or pass another file with --data.path."
    err = CorruptArchiveError(f"{path} is truncated or corrupted ({detail}). {todo}")
    err.path, err.detail = str(path), detail
    return err


def cache_write_error(path: Path | str, err: OSError) -> CacheWriteError:
    """Turn a failed write under the cache into an error naming the place and the two ways out."""
    where = "--data.cache_dir or $CHARLM_CACHE"
    if err.errno in DISK_FULL:
        return CacheWriteError(
            f"Could not write {path}: {err.strerror} (the disk or your quota is full, or the file is too large "
            f"for it); nothing half-written was kept. Free some space there, or point the cache at another "
            f"disk with {where}."
        )
    if err.errno == errno.ENOTDIR:  # --data.cache_dir (or a folder under it) is a file
        blocker = next((p for p in Path(path).parents if p.is_file()), None)
        if blocker is not None:
            return CacheWriteError(
                f"Could not write {path}: {blocker} is a file, not a folder. "
                f"Point the cache at a folder with {where}, or move that file away."
            )
    return CacheWriteError(
        f"Could not write {path} ({type(err).__name__}: {err.strerror or err}). "
        f"Make that folder writable, or point the cache elsewhere with {where}."
    )


def check_string_list(flag: str, value: object, example: str) -> None:
    """Refuse a list flag that is not a list of strings, naming ``flag`` (``--data.extensions``): from Python a
    plain string would be taken letter by letter (``skip_folders=".git"`` is the folders ".", "g", "i", "t")."""
    if value is not None and not (isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)):
        raise ValueError(f"{flag}: expected a list of strings, e.g. [{example}], got {value!r}.")

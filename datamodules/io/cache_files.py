"""Files in charlm's cache: a lock per prepared folder, atomic writes, and leftovers of killed runs.

Every temporary name charlm writes in the cache carries the pid of the process writing it
(``.tokens.u8.<pid>@<host>.tmp``: atomic_files.temp_name; ``.spool-<pid>-<random>/``), so a later
preparation can tell the leftovers of a killed run (its process is gone) from the work of a live one, and
remove them (``sweep_cache_folders``).
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from datamodules.common.errors import cache_write_error
from datamodules.io.atomic_files import atomic_replace, is_stale_temp, process_is_gone

# the spool a tarball is copied out into: ".spool-1234-k2j4x9/" (temporary files: atomic_files.temp_name)
SPOOL_DIR = re.compile(r"\.spool-(?P<pid>\d+)-\w+")
LOCK = ".lock"

_guard = threading.Lock()
_thread_locks: dict[Path, threading.RLock] = {}
_depth: dict[Path, int] = {}  # how deeply this process holds each folder's file lock


@contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Serialise work on one cache folder across processes (DDP ranks, two terminals) and threads.

    Re-entrant within a process, so a data module can hold the lock around reading its source and
    the preparation inside can take it again. flock itself is not re-entrant: a second ``open``
    in the same process would wait forever on its own lock.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise cache_write_error(folder, err) from None
    key = folder.resolve()
    with _guard:
        thread_lock = _thread_locks.setdefault(key, threading.RLock())
    with thread_lock:
        if _depth.get(key, 0):
            _depth[key] += 1
            try:
                yield
            finally:
                _depth[key] -= 1
            return
        try:
            lock = open(folder / LOCK, "w")  # noqa: SIM115  (opened apart from the with: its error is named)
        except OSError as err:
            raise cache_write_error(folder / LOCK, err) from None
        with lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            _depth[key] = 1
            try:
                yield
            finally:
                _depth[key] = 0
                fcntl.flock(lock, fcntl.LOCK_UN)


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``path`` whole or not at all (datamodules.io.atomic_files); a failure is a CacheWriteError."""
    try:
        atomic_replace(path, lambda file: file.write(data))
    except OSError as err:
        raise cache_write_error(path, err) from None


def sweep_cache_folders(folder: Path) -> list[Path]:
    """Remove what killed runs left in ``folder`` and in the other folders beside it (their
    temporary files and ``.spool-<pid>-*`` folders whose process is gone).

    Call it holding ``folder``'s lock. A sibling is swept only while its lock is free, so nothing
    a live preparation on another machine (a shared cache) is writing is ever touched.
    Returns what was removed.
    """
    removed = _sweep(folder)
    with suppress(OSError):
        for sibling in folder.parent.iterdir():
            if sibling != folder and sibling.is_dir() and not sibling.is_symlink():
                removed += _sweep_if_free(sibling)
    return removed


def _sweep(folder: Path) -> list[Path]:
    removed = []
    with suppress(OSError):
        for entry in folder.iterdir():
            spool = SPOOL_DIR.fullmatch(entry.name)
            if not (is_stale_temp(entry.name) or (spool and process_is_gone(int(spool["pid"])))):
                continue
            with suppress(OSError):
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
                removed.append(entry)
    return removed


def _sweep_if_free(folder: Path) -> list[Path]:
    try:
        fd = os.open(folder / LOCK, os.O_RDONLY)
    except FileNotFoundError:
        return _sweep(folder)  # never prepared by this charlm: no one can be working there under a lock
    except OSError:
        return []
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # busy: a preparation is running there
        os.close(fd)
        return []
    try:
        return _sweep(folder)
    finally:
        os.close(fd)  # releases the lock

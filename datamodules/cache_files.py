"""Files in charlm's cache: a lock per prepared folder, atomic writes, and leftovers of killed runs.

Every temporary name charlm writes in the cache carries the pid of the process writing it
(``.tokens.u8.<pid>.tmp``, ``.spool-<pid>-<random>/``), so a later preparation can tell the
leftovers of a killed run (its process is gone) from the work of a live one, and remove them.
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

from datamodules.atomic_files import atomic_replace
from datamodules.errors import cache_write_error

# charlm's own temporary names (atomic_files.temp_name, the spool), and nothing else: ".tokens.u8.1234.tmp",
# ".spool-1234-k2j4x9/"
TEMP_FILE = re.compile(r"\.(?:tokens\.u8|vocab\.json|meta\.json)\.(?P<pid>\d+)\.tmp")
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
    """Write ``path`` whole or not at all (datamodules.atomic_files); a failure is a CacheWriteError."""
    try:
        atomic_replace(path, lambda file: file.write(data))
    except OSError as err:
        raise cache_write_error(path, err) from None


def process_is_gone(pid: int) -> bool:
    """True only if no process with this id exists on this machine (one we may not signal still exists)."""
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # OverflowError: no pid is that large
        return True
    except PermissionError:  # another user's process
        return False
    return False


def remove_stale_temp_files(folder: Path) -> list[Path]:
    """Remove what killed runs left in ``folder`` and in the other folders beside it (their
    ``.tokens.u8.<pid>.tmp`` files and ``.spool-<pid>-*`` folders whose process is gone).

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
            match = TEMP_FILE.fullmatch(entry.name) or SPOOL_DIR.fullmatch(entry.name)
            if match is None or not process_is_gone(int(match["pid"])):
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

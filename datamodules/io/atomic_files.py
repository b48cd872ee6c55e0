"""The one way charlm replaces a file: whole or not at all, even across a kill or a power cut.

Every file charlm writes over goes through here: the cache's token, vocabulary and meta files
(datamodules.io.prepare, cache_files), checkpoints and the CSV metrics (charlm.train), the samples file
(charlm.callbacks.sample_text), neuron pages, plots and exported models (``write_file``); downloads land
beside their name and are renamed over it (datamodules.io.fetch.download_over). One temporary name for all of
them (``temp_name``): beside the file, hidden, carrying the writer's pid and host, so that a later run can
tell the leftovers of a killed writer from the work of a live one, on a disk several machines share too
(``remove_stale_temp_files``). It lives in ``datamodules`` because ``charlm`` may import from here, and
not the other way round.
"""

from __future__ import annotations

import errno
import os
import re
import socket
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

HOST = re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname()) or "host"
# ".last.ckpt.12345@node7.tmp": the file's name, the writer's pid and host
TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)@(?P<host>[A-Za-z0-9_-]+)\.tmp$")


def temp_name(path: Path, pid: int | None = None) -> Path:
    """The temporary file ``path`` is written to by process ``pid`` (default: this one) on this host before
    it is renamed into place: beside ``path`` (the same filesystem, so the rename is atomic), hidden."""
    return path.with_name(f".{path.name}.{os.getpid() if pid is None else pid}@{HOST}.tmp")


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


def is_stale_temp(name: str) -> bool:
    """Whether ``name`` is a temporary file (``temp_name``) of a writer on this host that is gone."""
    match = TEMP_NAME.match(name)
    return bool(match) and match["host"] == HOST and process_is_gone(int(match["pid"]))


def remove_stale_temp_files(folder: Path) -> list[Path]:
    """Delete the temporary files left in ``folder`` by writers on this host that were killed (their pid is
    gone); those of live processes, of this one and of other hosts (a shared disk) are kept. Returns them."""
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        if is_stale_temp(name):
            try:
                (folder / name).unlink()
                removed.append(folder / name)
            except FileNotFoundError:  # another process cleaned it first
                pass
    return removed


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (a no-op where directories cannot be fsynced)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # e.g. EINVAL on filesystems that do not support it
        pass
    finally:
        os.close(fd)


def atomic_replace(
    path: Path, write: Callable[[BinaryIO], None], tmp: Path | None = None, readable: bool = False
) -> None:
    """Replace ``path`` by what ``write(file)`` writes: into ``tmp`` (default ``temp_name(path)``),
    fsync, ``os.replace`` onto ``path``, fsync the folder so the rename survives a power cut.
    ``readable``: ``file`` can be read back too (a writer that rewrites what it wrote in place).

    On any failure (Ctrl-C too) the temp file is removed and ``path`` is as it was; the error
    passes unchanged, for the caller to word. ``path``'s folder must exist.
    """
    tmp = temp_name(path) if tmp is None else tmp
    try:
        with open(tmp, "w+b" if readable else "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # gone already after the rename
    fsync_dir(path.parent)


class _Writer:
    """A binary file that remembers the OSError of a failed write: torch.save reports it as a
    RuntimeError ("unexpected pos ..."), which says nothing about the disk being full."""

    def __init__(self, file: BinaryIO) -> None:
        self.file = file
        self.error: OSError | None = None

    def write(self, data: bytes) -> int:
        try:
            return self.file.write(data)
        except OSError as err:
            self.error = self.error or err
            raise

    def flush(self) -> None:
        self.file.flush()


def write_atomically(path: str | Path, write: Callable[[BinaryIO], None]) -> None:
    """Write ``path`` through ``write(file)`` so that it is either the old file or the whole new one.

    If the new file cannot be written, raises OSError with the errno of the cause (ENOSPC, EFBIG,
    EACCES ...) and ``filename=path``, saying that the previous file is unchanged; the temp file is
    then gone. A KeyboardInterrupt mid-write also removes the temp file and leaves ``path`` as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(path.parent)
    existed = path.exists()
    writer: _Writer | None = None

    def write_through(file: BinaryIO) -> None:
        nonlocal writer
        writer = _Writer(file)
        write(writer)  # type: ignore[arg-type]

    try:
        atomic_replace(path, write_through)  # KeyboardInterrupt, SystemExit: as they are
    except Exception as err:
        cause = writer.error if writer is not None and writer.error is not None else err
        if isinstance(cause, OSError):
            reason = os.strerror(cause.errno) if cause.errno else str(cause)
            kept = f"the previous {path.name} is unchanged" if existed else "no partial file was left"
            raise OSError(cause.errno or errno.EIO, f"{reason}; {kept}", str(path)) from err
        raise


def write_file(target: Path, data: bytes) -> Path:
    """Write ``data`` to ``target`` (its folder made if missing) and return where it went: atomically, so an
    existing file is never left half-written and a failed write leaves no temporary file behind.

    A name that is not a regular file (``/dev/stdout``, a FIFO, a device) is written through, as a
    rename would put a file in its place; a symlink keeps pointing at the file it names, which is
    replaced. An OSError names ``target``, never the temporary file."""
    try:
        if target.exists() and not target.is_file():  # exists() and is_file() follow links
            with open(target, "wb") as f:
                f.write(data)
            return target
        if target.is_symlink():
            target = Path(os.path.realpath(target))  # the file it names, renamed over; the link stays
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_replace(target, lambda file: file.write(data))
    except OSError as err:
        if err.errno is None:
            raise
        raise type(err)(err.errno, err.strerror, str(target)) from err
    return target

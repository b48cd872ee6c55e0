"""The one way charlm replaces a file: whole or not at all, even across a kill or a power cut.

``atomic_replace`` is used for every file charlm writes over: the cache's token, vocabulary and
meta files (datamodules.cache_files, datamodules.prepare), checkpoints, the CSV metrics and
samples files (charlm.checkpoint_io), neuron pages and exported models (charlm.commands.output_path).
Each caller names its temp file and words its own errors; the sequence lives here. It lives in ``datamodules``
because ``charlm`` may import from here, and not the other way round.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def temp_name(path: Path) -> Path:
    """The temporary file ``path`` is written to before it is renamed into place: beside it (the same
    filesystem, so the rename is atomic), hidden, and carrying this process's id (a later run can tell
    the leftovers of a killed one from the work of a live one)."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


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

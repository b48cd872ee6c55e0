"""Checkpoint files that are never half-written: a kill or a full disk leaves the previous one whole.

Lightning saves through fsspec, which writes a temp file in ``$TMPDIR`` and then moves it onto the
final name. When the run folder is on another filesystem (a cluster's shared disk, a tmpfs
``/tmp``) that move is a copy: a kill during it leaves a truncated ``last.ckpt`` where the good one
was, and a full disk leaves a short file under the final name. Here every checkpoint is written to
a temp file *in its own folder*, fsynced, and ``os.replace``d onto its name (atomic on POSIX), and
the folder is fsynced so the rename survives a power cut (datamodules.atomic_files, charlm's one
atomic writer).

``use_atomic_checkpoints(trainer)`` installs this for a whole Trainer (``charlm.cli`` calls it for
every Trainer it builds): the strategy's ``CheckpointIO`` (``ModelCheckpoint``'s best and last,
``InterruptCheckpoint``, the SIGTERM/SLURM paths and ``trainer.save_checkpoint``) and
``ModelCheckpoint(save_last="link")``'s link, which Lightning makes by deleting ``last.ckpt`` first.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities import rank_zero_warn

from charlm.compat import (
    is_local_path,
    replace_checkpoint_linker,
    replace_wrapped_checkpoint_io,
    wrapped_checkpoint_io,
)
from datamodules.atomic_files import atomic_replace, fsync_dir
from datamodules.cache_files import process_is_gone

_HOST = re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname()) or "host"
# ".last.ckpt.12345@node7.tmp": the writer's pid and host, so a later run can tell a stale one
_TEMP = re.compile(r"^\..+\.(?P<pid>\d+)@(?P<host>[A-Za-z0-9_-]+)\.tmp$")


def temp_path(path: Path, pid: int | None = None) -> Path:
    """The temp file for ``path`` written by process ``pid`` (default: this one) on this host:
    beside ``path`` (the same filesystem, so the final rename is atomic)."""
    return path.with_name(f".{path.name}.{os.getpid() if pid is None else pid}@{_HOST}.tmp")


def remove_stale_temp_files(folder: Path) -> list[Path]:
    """Delete temp files left in ``folder`` by writers on this host that were killed (their pid is gone).

    Temp files of live processes, of this process and of other hosts (a shared filesystem) are kept.
    """
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        match = _TEMP.match(name)
        if not match or match["host"] != _HOST:
            continue
        pid = int(match["pid"])
        if not process_is_gone(pid):  # this process, or another that still runs
            continue
        try:
            (folder / name).unlink()
            removed.append(folder / name)
        except FileNotFoundError:  # another process cleaned it first
            pass
    return removed


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
        atomic_replace(path, write_through, temp_path(path))  # KeyboardInterrupt, SystemExit: as they are
    except Exception as err:
        cause = writer.error if writer is not None and writer.error is not None else err
        if isinstance(cause, OSError):
            reason = os.strerror(cause.errno) if cause.errno else str(cause)
            kept = f"the previous {path.name} is unchanged" if existed else "no partial file was left"
            raise OSError(cause.errno or errno.EIO, f"{reason}; {kept}", str(path)) from err
        raise


def link_atomically(target: str | Path, link: str | Path) -> None:
    """Point ``link`` at ``target`` (a relative symlink, else a copy) without a moment with no ``link``."""
    target, link = Path(target), Path(link)
    if link.is_dir() and not link.is_symlink():
        shutil.rmtree(link)  # a sharded checkpoint folder under the link's name (as Lightning does)
    remove_stale_temp_files(link.parent)
    tmp = temp_path(link)
    tmp.unlink(missing_ok=True)
    try:
        os.symlink(os.path.relpath(target, link.parent), tmp)
        os.replace(tmp, link)
    except OSError:  # no symlinks here (e.g. Windows without the privilege): copy instead
        tmp.unlink(missing_ok=True)
        with open(target, "rb") as source:
            write_atomically(link, lambda file: shutil.copyfileobj(source, file, 1 << 20))
        return
    fsync_dir(link.parent)


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose local saves go through a temp file in the target's folder,
    fsync and ``os.replace``; remote paths (``s3://`` ...) are saved as Lightning does."""

    def __init__(self) -> None:
        super().__init__()
        self.saved: list[Path] = []  # every local path saved, in order (tests read it)

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None) -> None:
        if storage_options is not None or not is_local_path(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        write_atomically(path, lambda file: torch.save(checkpoint, file))
        self.saved.append(Path(path))


def _atomic_link_checkpoint(trainer: L.Trainer, filepath: str, linkpath: str) -> None:
    """``ModelCheckpoint._link_checkpoint`` (lightning 2.6), with the link replaced atomically."""
    if trainer.is_global_zero and os.path.abspath(filepath) != os.path.abspath(linkpath):
        link_atomically(filepath, linkpath)
    trainer.strategy.barrier()


def use_atomic_checkpoints(trainer: L.Trainer) -> L.Trainer:
    """Make every checkpoint ``trainer`` writes atomic; returns ``trainer``.

    Lightning's default ``TorchCheckpointIO`` (held by the strategy, or inside a wrapper such as
    ``AsyncCheckpointIO``) is replaced by ``AtomicCheckpointIO``; a CheckpointIO of the user's own
    kind is kept (with a warning), as they chose how to store checkpoints.
    """
    strategy = trainer.strategy
    io = strategy.checkpoint_io  # the property creates the default TorchCheckpointIO when none was given
    inner = wrapped_checkpoint_io(io)
    if inner is not None:
        if type(inner) is TorchCheckpointIO:
            replace_wrapped_checkpoint_io(io, AtomicCheckpointIO())
        elif not isinstance(inner, AtomicCheckpointIO):
            rank_zero_warn(f"charlm: checkpoints are saved by your {type(inner).__name__}, not atomically by charlm.")
    elif type(io) is TorchCheckpointIO:
        strategy.checkpoint_io = AtomicCheckpointIO()
    elif not isinstance(io, AtomicCheckpointIO):
        rank_zero_warn(f"charlm: checkpoints are saved by your {type(io).__name__}, not atomically by charlm.")
    for callback in trainer.callbacks:
        if isinstance(callback, ModelCheckpoint):
            replace_checkpoint_linker(callback, _atomic_link_checkpoint)
    return trainer

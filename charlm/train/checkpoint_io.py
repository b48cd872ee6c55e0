"""Checkpoint files that are never half-written: a kill or a full disk leaves the previous one whole.

Lightning saves through fsspec, which writes a temp file in ``$TMPDIR`` and then moves it onto the
final name. When the run folder is on another filesystem (a cluster's shared disk, a tmpfs
``/tmp``) that move is a copy: a kill during it leaves a truncated ``last.ckpt`` where the good one
was, and a full disk leaves a short file under the final name. Here every checkpoint is written to
a temp file *in its own folder*, fsynced, and ``os.replace``d onto its name (atomic on POSIX), and
the folder is fsynced so the rename survives a power cut (datamodules.io.atomic_files, charlm's one
atomic writer).

``use_atomic_checkpoints(trainer)`` installs this for a whole Trainer (``charlm.cli.commands.fit`` calls it for
every Trainer it builds): the strategy's ``CheckpointIO`` (``ModelCheckpoint``'s best and last,
``InterruptCheckpoint``, the SIGTERM/SLURM paths and ``trainer.save_checkpoint``) and
``ModelCheckpoint(save_last="link")``'s link, which Lightning makes by deleting ``last.ckpt`` first.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

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
from datamodules.io.atomic_files import fsync_dir, remove_stale_temp_files, temp_name, write_atomically


def link_atomically(target: str | Path, link: str | Path) -> None:
    """Point ``link`` at ``target`` (a relative symlink, else a copy) without a moment with no ``link``."""
    target, link = Path(target), Path(link)
    if link.is_dir() and not link.is_symlink():
        shutil.rmtree(link)  # a sharded checkpoint folder under the link's name (as Lightning does)
    remove_stale_temp_files(link.parent)
    tmp = temp_name(link)
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

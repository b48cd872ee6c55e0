"""Training callbacks that belong to charlm rather than to Lightning."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from charlm.faults import DivergedError, weights_finite


class InterruptCheckpoint(L.Callback):
    """On Ctrl-C (or a crash) during fit, save ``interrupted.ckpt`` beside the run's other checkpoints.

    Resume with ``python -m charlm fit --config ... --ckpt_path <that file>``. (Lightning's own
    OnExceptionCheckpoint also switches every later ``fit`` to ``ckpt_path="last"``; this does not.)
    """

    def __init__(self, filename: str = "interrupted") -> None:
        """
        Args:
            filename: checkpoint file name, without ``.ckpt``.
        """
        self.filename = filename

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if trainer.global_step == 0 or trainer.state.fn != "fit":
            return  # nothing trained yet: nothing worth keeping
        if isinstance(exception, DivergedError) or not weights_finite(pl_module):
            return  # NaN weights are not worth keeping either (and would replace a good interrupted.ckpt)
        folder = trainer.checkpoint_callback.dirpath if trainer.checkpoint_callback else None
        path = Path(folder or trainer.default_root_dir) / f"{self.filename}.ckpt"
        try:
            # atomic: charlm.checkpoint_io (temp file beside it, os.replace); weights_only=False said
            # outright, or Lightning logs "`weights_only` was not set" under the resume line
            trainer.save_checkpoint(path, weights_only=False)
        except OSError as err:  # e.g. the disk is full: report it, and let the exception that stopped training through
            rank_zero_warn(f"charlm: could not save {path}: {err.strerror or err}")
            return
        rank_zero_info(f"Saved a checkpoint at step {trainer.global_step}; resume with --ckpt_path {path}")


class TokensPerSecond(L.Callback):
    """Log training throughput, ``train/tokens_per_sec`` (all processes) and ``..._per_device``.

    Measured over ``every_n_steps`` optimizer steps of wall time, with no device sync of its own.
    """

    def __init__(self, every_n_steps: int = 50) -> None:
        """
        Args:
            every_n_steps: steps between measurements.
        """
        self.every_n_steps = every_n_steps
        self._start: float | None = None
        self._tokens = 0

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int) -> None:
        now = time.perf_counter()
        if self._start is None:  # the first batch includes warm-up: start the clock after it
            self._start, self._tokens = now, 0
            return
        self._tokens += batch[0].numel()
        if trainer.global_step % self.every_n_steps == 0 and now > self._start:
            per_device = self._tokens / (now - self._start)
            pl_module.log("train/tokens_per_sec_per_device", per_device)
            pl_module.log("train/tokens_per_sec", per_device * trainer.world_size)
            self._start, self._tokens = now, 0

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = None  # evaluation time is not training time


def run_log_dir(trainer: L.Trainer) -> Path | None:
    """The run's own log folder (e.g. runs/shakespeare/version_3), for code that runs on rank 0 only.

    ``trainer.log_dir`` would broadcast from rank 0 and so hang a rank-0-only caller under DDP.
    """
    for logger in trainer.loggers:
        log_dir = getattr(logger, "log_dir", None)
        if log_dir:
            return Path(log_dir)
    return None


@contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Put ``model`` in eval mode for a callback's look at it, then restore the mode it was in."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)

"""Save ``interrupted.ckpt`` when fit stops on Ctrl-C or a crash."""

from __future__ import annotations

from pathlib import Path

import lightning as L
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from charlm.train.faults import DivergedError, weights_finite


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
        self.saved: Path | None = None  # the file saved as fit stopped, for RunSummary's resume command

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if trainer.global_step == 0 or trainer.state.fn != "fit":
            return  # nothing trained yet: nothing worth keeping
        if isinstance(exception, DivergedError) or not weights_finite(pl_module):
            return  # NaN weights are not worth keeping either (and would replace a good interrupted.ckpt)
        folder = trainer.checkpoint_callback.dirpath if trainer.checkpoint_callback else None
        path = Path(folder or trainer.default_root_dir) / f"{self.filename}.ckpt"
        try:
            # atomic: charlm.train.checkpoint_io (temp file beside it, os.replace); weights_only=False said
            # outright, or Lightning logs "`weights_only` was not set" under the resume line
            trainer.save_checkpoint(path, weights_only=False)
        except OSError as err:  # e.g. the disk is full: report it, and let the exception that stopped training through
            rank_zero_warn(f"charlm: could not save {path}: {err.strerror or err}")
            return
        self.saved = path
        rank_zero_info(f"Saved a checkpoint at step {trainer.global_step}; resume with --ckpt_path {path}")

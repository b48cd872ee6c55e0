"""Training callbacks that belong to charlm rather than to Lightning."""

from __future__ import annotations

from pathlib import Path

import lightning as L
from lightning.pytorch.utilities import rank_zero_info


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
        folder = trainer.checkpoint_callback.dirpath if trainer.checkpoint_callback else None
        path = Path(folder or trainer.default_root_dir) / f"{self.filename}.ckpt"
        trainer.save_checkpoint(path)  # Lightning writes to a temp file and renames
        rank_zero_info(f"Saved a checkpoint at step {trainer.global_step}; resume with --ckpt_path {path}")

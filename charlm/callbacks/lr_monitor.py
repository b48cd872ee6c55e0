"""Lightning's LearningRateMonitor, minus its refusal to train without a logger."""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import LearningRateMonitor as _LightningLearningRateMonitor


class LearningRateMonitor(_LightningLearningRateMonitor):
    """Log the learning rate of each optimizer parameter group (``lr-AdamW/pg1``, ...) to every logger.

    With ``--trainer.logger false`` there is nowhere to log it, so it does nothing (Lightning's own
    raises before the first step).
    """

    def on_train_start(self, trainer: L.Trainer, *args: Any, **kwargs: Any) -> None:
        if trainer.loggers:
            super().on_train_start(trainer, *args, **kwargs)

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any, **kwargs: Any) -> None:
        if trainer.loggers:
            super().on_train_batch_start(trainer, *args, **kwargs)

    def on_train_epoch_start(self, trainer: L.Trainer, *args: Any, **kwargs: Any) -> None:
        if trainer.loggers:
            super().on_train_epoch_start(trainer, *args, **kwargs)

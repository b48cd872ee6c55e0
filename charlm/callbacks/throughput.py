"""Training throughput in tokens per second."""

from __future__ import annotations

import time

import lightning as L


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

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: object, batch: tuple, batch_idx: int
    ) -> None:
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

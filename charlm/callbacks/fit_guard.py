"""FitGuard: Ctrl-C at a safe point, exit status 143 on SIGTERM (129 on SIGHUP), and a stop on a non-finite loss.

What each fault does, and why, is in charlm.train.faults; this callback carries it out. The CLI attaches
it to every trainer (charlm.cli.commands.fit), whatever callbacks a config lists.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import Any

import lightning as L
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.exceptions import SIGTERMException

from charlm.train.faults import SIGHUP_EXIT_STATUS, SIGTERM_EXIT_STATUS, HangupStop, check_finite


class FitGuard(L.Callback):
    """Ctrl-C at a safe point, exit status 143 on SIGTERM, and a stop on a non-finite loss (see
    charlm.train.faults). Attached by the CLI to every trainer; not meant for configs."""

    def __init__(self) -> None:
        self.sigint_pending = False
        self.hangup_pending = False
        self._previous: dict[int, Any] = {}  # signal -> the handler it had before fit
        self._checked_step: int | None = None  # the last step whose loss was checked

    # --- Ctrl-C ---------------------------------------------------------------------------------
    def _on_sigint(self, signum: int, frame: Any) -> None:
        # runs between two bytecodes of the main thread, wherever that is: set a flag, nothing more
        if self.sigint_pending:
            raise KeyboardInterrupt  # pressed again: the user wants out now
        self.sigint_pending = True
        os.write(2, b"\ncharlm: Ctrl-C: stopping at the start of the next batch (press again to interrupt at once)\n")

    def _on_sighup(self, signum: int, frame: Any) -> None:
        self.hangup_pending = True  # no message: the terminal that would show it is gone

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Lightning's signal connector saves and restores every handler around fit, so this one is
        # gone again after fit ends, however it ends; on_train_end restores it for the normal path.
        self.sigint_pending = self.hangup_pending = False
        if threading.current_thread() is not threading.main_thread():
            return  # only the main thread may set handlers (and only it receives KeyboardInterrupt)
        for signum, handler in ((signal.SIGINT, self._on_sigint), (signal.SIGHUP, self._on_sighup)):
            previous = signal.getsignal(signum)
            if previous is signal.SIG_IGN:
                continue  # started with it ignored (nohup, a background job): leave it so
            self._previous[signum] = previous
            signal.signal(signum, handler)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous = {}

    def _stop_if_asked(self) -> None:
        if self.sigint_pending:
            self.sigint_pending = False
            raise KeyboardInterrupt
        if self.hangup_pending:
            self.hangup_pending = False
            raise HangupStop  # InterruptCheckpoint saves, on_exception sets the exit status

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        self._stop_if_asked()  # before the batch starts: resuming redoes exactly this batch

    def on_validation_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int,
                                  dataloader_idx: int = 0) -> None:
        self._stop_if_asked()  # a resumed run redoes this validation from its start (CharLM.on_load_checkpoint)

    # --- SIGTERM --------------------------------------------------------------------------------
    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, SIGTERMException):  # HangupStop included
            hangup = isinstance(exception, HangupStop)
            name, status = ("SIGHUP", SIGHUP_EXIT_STATUS) if hangup else ("SIGTERM", SIGTERM_EXIT_STATUS)
            exception.code = status  # a SystemExit: its code becomes the exit status
            with contextlib.suppress(OSError):  # SIGHUP: the terminal may be gone
                rank_zero_info(f"charlm: stopped by {name} at step {trainer.global_step} (exit status {status}).")

    # --- divergence -----------------------------------------------------------------------------
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pl_module.loss_watch.reset()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        step = trainer.global_step  # the same over the batches of one step with accumulate_grad_batches
        if step % max(1, trainer.log_every_n_steps) == 0 and step != self._checked_step:  # logging steps read anyway
            self._checked_step = step
            check_finite(trainer, pl_module)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking and trainer.state.fn == "fit":
            check_finite(trainer, pl_module, weights=True)  # before the val score, samples and checkpoints

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        check_finite(trainer, pl_module)  # runs before ModelCheckpoint's end-of-epoch save

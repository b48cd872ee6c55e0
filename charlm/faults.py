"""How a fit stops when something goes wrong: Ctrl-C, SIGTERM, a loss that is no longer finite.

``CharLM.configure_callbacks`` attaches :class:`FitGuard` to every trainer, so all of this holds
whichever callbacks a config lists:

- **Ctrl-C** (SIGINT) during training only records the request; training stops with
  KeyboardInterrupt at the start of the next training or validation batch, where Lightning's
  graceful shutdown (and ``InterruptCheckpoint``) takes over. A KeyboardInterrupt raised wherever
  the signal happens to land can be lost: Python only prints ("Exception ignored in ...") an
  exception raised inside a finalizer or a weakref callback, and training then goes on. A second
  Ctrl-C raises at once. Exit status 1 (Lightning's).
- **SIGTERM** (what schedulers send before they kill a job): Lightning stops at the next batch
  end and ``InterruptCheckpoint`` saves ``interrupted.ckpt``; the exit status is 143
  (128 + SIGTERM, what a shell reports for a process the signal ended) instead of 0, so
  ``&&`` chains and schedulers see that the run did not finish.
- **SIGHUP** (the terminal was closed, an ssh session dropped): handled like SIGTERM — stop at the
  next batch start, save ``interrupted.ckpt``, exit status 129 (128 + SIGHUP) — instead of dying
  on the spot with everything since the last checkpoint lost. Left alone under ``nohup``.
- **A loss or weights that are not finite** (a learning rate far too high) stop the run with
  :class:`DivergedError`, a user error (one line, exit 2), before any checkpoint or "best" score
  records them. The check reads the device only on logging steps, before each validation and
  when a checkpoint is written; between those the per-step bookkeeping stays on the device.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.exceptions import SIGTERMException

SIGTERM_EXIT_STATUS = 128 + signal.SIGTERM  # 143
SIGHUP_EXIT_STATUS = 128 + signal.SIGHUP  # 129


class HangupStop(SIGTERMException):
    """The fit was stopped because its terminal went away (SIGHUP); Lightning handles it as SIGTERM."""


class DivergedError(ValueError):
    """Training produced a loss or weights that are not finite (NaN or infinity)."""


def refuse_untrainable_precision(trainer: L.Trainer) -> None:
    """``16-true`` casts the weights themselves to fp16: gradients underflow with no loss scaler,
    and AdamW's eps (1e-8) rounds to 0 in fp16, so the first steps already give NaN."""
    precision = str(trainer.precision)
    if trainer.state.fn == "fit" and precision in ("16-true", "16"):
        raise ValueError(
            f"--trainer.precision {precision} cannot train charlm: fp16 weights overflow and underflow "
            f"(NaN from the first steps). Use 16-mixed (fp16 compute, fp32 weights, loss scaling), "
            f"bf16-mixed, bf16-true or 32-true."
        )


def refuse_untrainable_settings(trainer: L.Trainer) -> None:
    """--trainer values Lightning accepts but that cannot train: a negative gradient_clip_val
    (torch's clip_grad_norm_ scales the gradients by max_norm / norm, so they flip sign and the run
    climbs the loss), accumulate_grad_batches or check_val_every_n_epoch < 1 (ZeroDivisionError
    mid-epoch)."""
    if trainer.state.fn != "fit":
        return
    clip = trainer.gradient_clip_val
    if clip is not None and not float(clip) >= 0:
        raise ValueError(f"--trainer.gradient_clip_val must be >= 0 (0: no clipping; null: --model.grad_clip's), "
                         f"got {clip}")
    for name in ("accumulate_grad_batches", "check_val_every_n_epoch"):
        value = getattr(trainer, name)
        if value is not None and not value >= 1:
            raise ValueError(f"--trainer.{name} must be a positive integer, got {value}")


def weights_finite(module: torch.nn.Module) -> bool:
    """Whether every parameter of ``module`` is finite (one device sync)."""
    flags = [torch.isfinite(p).all() for p in module.parameters()]
    return bool(torch.stack(flags).all()) if flags else True


class LossWatch:
    """Remembers, on the loss's device, the first optimizer step whose loss was not finite and the
    last finite loss before it, so that training steps never wait for the device to answer."""

    def __init__(self) -> None:
        self._state: torch.Tensor | None = None  # (3,) float32: first bad step, last good step, last good loss

    def update(self, loss: torch.Tensor, step: int) -> None:
        """Record the (detached) loss of optimizer step ``step`` (1-based); a few tiny device ops."""
        if self._state is None or self._state.device != loss.device:
            # float32 (not float64, which MPS lacks): steps are exact up to 2**24, enough for a message
            self._state = torch.tensor([-1.0, 0.0, float("nan")], dtype=torch.float32, device=loss.device)
        s = self._state
        still_good = s[0] < 0
        finite = torch.isfinite(loss)
        keep = finite & still_good
        s[1] = torch.where(keep, step, s[1])
        s[2] = torch.where(keep, loss.float(), s[2])
        s[0] = torch.where(~finite & still_good, step, s[0])

    def reset(self) -> None:
        self._state = None

    def first_bad(self) -> tuple[int, int, float] | None:
        """(first non-finite step, last finite step, last finite loss), or None; syncs the device."""
        if self._state is None:
            return None
        bad, good_step, good_loss = self._state.tolist()
        return None if bad < 0 else (int(bad), int(good_step), good_loss)


def diverged_message(pl_module: L.LightningModule, what: str) -> str:
    """The one line for a run that diverged: ``what`` went wrong, and which flags to change."""
    hp = pl_module.hparams
    clip = (f"--model.grad_clip (now {hp.get('grad_clip'):g})" if hp.get("grad_clip")
            else "clip gradients with --model.grad_clip 1.0")
    return (
        f"training diverged: {what}. Lower --model.lr (now {hp.get('lr'):g}) or {clip} and train again. "
        f"No checkpoint was written from the diverged weights; those already on disk are from before."
    )


class FitGuard(L.Callback):
    """Ctrl-C at a safe point, exit status 143 on SIGTERM, and a stop on a non-finite loss (see the
    module docstring). Attached by ``CharLM.configure_callbacks``; not meant for configs."""

    def __init__(self) -> None:
        self.sigint_pending = False
        self.hangup_pending = False
        self._previous: dict[int, Any] = {}  # signal -> the handler it had before fit

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
        if trainer.global_step % max(1, trainer.log_every_n_steps) == 0:  # the steps that read the device anyway
            check_finite(trainer, pl_module)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking and trainer.state.fn == "fit":
            check_finite(trainer, pl_module, weights=True)  # before the val score, samples and checkpoints

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        check_finite(trainer, pl_module)  # runs before ModelCheckpoint's end-of-epoch save


def divergence(pl_module: L.LightningModule, weights: bool = False) -> str | None:
    """What is not finite (a training loss so far, or with ``weights`` a parameter), or None."""
    bad = pl_module.loss_watch.first_bad()
    if bad is not None:
        step, good_step, good_loss = bad
        last = f"last finite loss {good_loss:.4g} at step {good_step}" if good_step else "no finite loss before it"
        return f"the loss is not finite at step {step} ({last})"
    if weights and not weights_finite(pl_module):
        return f"the weights are not finite at step {pl_module.global_step}"
    return None


def check_finite(trainer: L.Trainer, pl_module: L.LightningModule, weights: bool = False) -> None:
    """Raise DivergedError if :func:`divergence` finds something on any process: every process
    takes the same decision, so none is left waiting for the others."""
    what = divergence(pl_module, weights)
    if trainer.strategy.reduce_boolean_decision(what is not None, all=False):
        raise DivergedError(diverged_message(pl_module, what or "on another process"))

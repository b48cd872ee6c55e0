"""How a fit stops when something goes wrong: Ctrl-C, SIGTERM, a loss that is no longer finite.

:class:`charlm.callbacks.fit_guard.FitGuard` carries these out; ``charlm fit`` / ``validate`` / ``test``
attach it to every trainer, so all of this holds whichever callbacks a config lists:

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

import signal

import lightning as L
import torch
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

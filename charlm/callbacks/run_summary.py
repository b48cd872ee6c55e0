"""Say what a fit made, when it ends: the best checkpoint and its val bpc, the run folder, the next commands.

``charlm fit`` attaches :class:`RunSummary` to every trainer (whatever callbacks a config lists) and gives
the progress bar the run folder's version (:class:`RunFolderProgressBar`). After an interrupted fit
(Ctrl-C, SIGTERM, a crash) the summary ends with the command that resumes it.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger

from charlm.train.faults import HangupStop
from charlm.train.run_folder import run_log_dir
from charlm.train.wandb_logger import wandb_loggers


def shown(path: str | os.PathLike) -> str:
    """``path`` as a user types it: relative to the current folder when inside it, quoted for a shell."""
    path = Path(path)
    with contextlib.suppress(ValueError):  # outside the current folder: as it is
        path = path.resolve().relative_to(Path.cwd().resolve())
    return shlex.quote(str(path))


def resume_command(ckpt_path: str | os.PathLike, argv: list[str] | None = None) -> str:
    """The command that resumes this fit from ``ckpt_path``: the one that started it (``argv``, default
    sys.argv) with its ``--ckpt_path`` replaced; ``charlm fit ... --ckpt_path FILE`` when it was not started
    from the command line."""
    argv = sys.argv if argv is None else argv
    args = list(argv[2:]) if argv[1:2] == ["fit"] else ["..."]  # "..." shlex leaves unquoted
    kept, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg == "--ckpt_path":
            skip = True
        elif not arg.startswith("--ckpt_path="):
            kept.append(arg)
    return shlex.join(["charlm", "fit", *kept]) + f" --ckpt_path {shown(ckpt_path)}"


class RunSummary(L.Callback):
    """On rank 0, when fit ends: the best checkpoint (its val bpc and step), the run folder, and the commands
    that sample and serve it; after an interruption, the command that resumes the fit too."""

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            self._say(trainer, f"charlm: fit finished at step {trainer.global_step}.")

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if not trainer.is_global_zero or trainer.state.fn != "fit":
            return
        if trainer.global_step == 0 and not isinstance(exception, (KeyboardInterrupt, SystemExit)):
            return  # a mistake found before anything trained: its one line says what to do, nothing was made
        resume = interrupted_checkpoint(trainer) or last_checkpoint(trainer)
        lines = [_line("resume", resume_command(resume))] if resume else []
        self._say(trainer, f"charlm: fit stopped at step {trainer.global_step} ({describe(exception)}).", lines)

    def _say(self, trainer: L.Trainer, head: str, tail: list[str] | None = None) -> None:
        lines = [head]
        best, score = best_checkpoint(trainer)
        if best:
            what = f" (val bpc {score:.4f})" if score is not None else " (the last: no validation ran)"
            lines.append(_line("best checkpoint", f"{shown(best)}{what}"))
        else:
            lines.append(_line("checkpoint", "none was written (no ModelCheckpoint, or nothing to save yet)"))
        folder = run_log_dir(trainer)
        if folder is not None:
            held = [name for name in ("metrics.csv", "config.yaml", "samples.jsonl", "neurons")
                    if (folder / name).exists()]
            lines.append(_line("run folder", shown(folder) + (f" ({', '.join(held)})" if held else "")))
        for logger in wandb_loggers(trainer):
            where = logger.where() if hasattr(logger, "where") else None
            if where:
                lines.append(_line("W&B run", where))
        if best:
            lines.append(_line("sample it", f"charlm sample --ckpt_path {shown(best)}"))
            lines.append(_line("serve it", f"charlm serve --ckpt_path {shown(best)}"))
        lines += tail or []
        print("\n" + "\n".join(lines), flush=True)  # on a line of its own, after the progress bar


def _line(label: str, value: str) -> str:
    return f"  {label + ':':<17}{value}"


def describe(exception: BaseException) -> str:
    """Why fit stopped, in a few words."""
    if isinstance(exception, KeyboardInterrupt):
        return "Ctrl-C"
    if isinstance(exception, SystemExit):  # Lightning's SIGTERMException, charlm's HangupStop (a subclass)
        return "SIGHUP" if isinstance(exception, HangupStop) else "SIGTERM"
    return type(exception).__name__


def best_checkpoint(trainer: L.Trainer) -> tuple[str | None, float | None]:
    """The checkpoint the run's ModelCheckpoint rates best and its score; its last one (score None) when it
    rated none (no validation yet); (None, None) without checkpoints."""
    callback = trainer.checkpoint_callback
    if callback is None:
        return None, None
    best = getattr(callback, "best_model_path", "")
    if best and Path(best).is_file():
        score = getattr(callback, "best_model_score", None)
        return best, None if score is None else float(score)
    last = last_checkpoint(trainer)
    return (str(last), None) if last else (None, None)


def last_checkpoint(trainer: L.Trainer) -> Path | None:
    """The run's last.ckpt (ModelCheckpoint's save_last), if it wrote one."""
    callback = trainer.checkpoint_callback
    last = getattr(callback, "last_model_path", "") if callback is not None else ""
    return Path(last) if last and Path(last).is_file() else None


def interrupted_checkpoint(trainer: L.Trainer) -> Path | None:
    """The file InterruptCheckpoint saved as fit stopped, if it did."""
    return next((cb.saved for cb in trainer.callbacks if getattr(cb, "saved", None)), None)


class RunFolderProgressBar(TQDMProgressBar):
    """Lightning's progress bar, its ``v_num`` the run folder's version (``version_0`` -> 0) rather than the
    last four characters of every logger's versions joined (``0_oe0xrdto`` -> ``rdto``)."""

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)
        version = next((logger.version for logger in trainer.loggers if isinstance(logger, CSVLogger)), None)
        return {"v_num": version, **items} if version is not None else items


def attach(trainer: L.Trainer) -> None:
    """Give ``trainer`` a RunSummary, and a RunFolderProgressBar in place of Lightning's default bar (a bar
    of the user's own class is left as it is)."""
    for callback in trainer.callbacks:
        if type(callback) is TQDMProgressBar:
            callback.__class__ = RunFolderProgressBar  # the same bar and settings, one method more
    trainer.callbacks.append(RunSummary())

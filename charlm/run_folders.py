"""The folders a run writes to, checked before anything is trained.

A folder that cannot be written would otherwise end the run at its first checkpoint with a
traceback, or send the W&B run quietly to the system's temp folder. Loggers whose ``save_dir`` is
empty (``""`` or null, as in cli.yaml) write under ``--trainer.default_root_dir``, so that one flag
moves a whole run.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from charlm.compat import entry_is

if TYPE_CHECKING:
    import lightning as L

ROOT_FLAG = "--trainer.default_root_dir"


class RunFolderError(ValueError):
    """A run folder cannot be created or written (a user error: one line, exit 2)."""


def check_writable(folder: str | os.PathLike, advice: str) -> None:
    """Raise :class:`RunFolderError` unless ``folder`` is a writable folder or can be created.

    Creates nothing: it writes a nameless temporary file in the folder, or in the nearest
    existing folder above it (where the run would create it).
    """
    path = Path(folder).expanduser()
    existing = path
    try:
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir():
            problem = f"{existing} is a file, not a folder"
        else:
            with tempfile.TemporaryFile(dir=existing, prefix=".charlm-write-test-"):
                return
    except OSError as err:  # read-only file system, permission denied, immutable folder, ...
        problem = f"{existing} cannot be written ({err.strerror or err})"
    raise RunFolderError(f"cannot write the run folder {path}: {problem}; {advice}.")


def loggers_of(trainer_config: Any) -> list[Any]:
    """The logger entries of a parsed ``trainer`` config (``logger: false`` / ``true`` give none)."""
    loggers = trainer_config.logger
    loggers = loggers if isinstance(loggers, list) else [loggers]
    return [logger for logger in loggers if getattr(logger, "init_args", None) is not None]


def follow_root_dir(trainer_config: Any) -> None:
    """Loggers configured with an empty ``save_dir`` (``""`` or null) write under the trainer's
    ``default_root_dir`` (Lightning's CSVLogger requires a string, hence ``""``)."""
    for logger in loggers_of(trainer_config):
        if "save_dir" in logger.init_args and not logger.init_args.save_dir:
            logger.init_args.save_dir = trainer_config.default_root_dir or "."


def check_run_folders(trainer_config: Any) -> None:
    """Check every folder the run will write to: ``default_root_dir``, each logger's ``save_dir``
    and each ``ModelCheckpoint``'s ``dirpath``; the message names the setting to change."""
    from lightning.pytorch.callbacks import ModelCheckpoint  # here: this module is imported without Lightning too

    root = trainer_config.default_root_dir or "."
    folders = {str(Path(root)): f"choose a writable folder with {ROOT_FLAG} DIR"}
    for logger in loggers_of(trainer_config):
        save_dir = logger.init_args.get("save_dir") or logger.init_args.get("dir")
        if save_dir:
            kind = str(logger.class_path).rsplit(".", 1)[-1]  # for the message: the class's name as configured
            folders.setdefault(str(Path(save_dir)), f"set the {kind}'s save_dir in your config to a writable folder "
                                                    f"(or to \"\": it then follows {ROOT_FLAG})")
    for callback in trainer_config.callbacks or []:
        dirpath = getattr(callback, "init_args", None) and callback.init_args.get("dirpath")
        if dirpath and entry_is(callback, ModelCheckpoint):
            folders.setdefault(str(Path(dirpath)), "set the ModelCheckpoint's dirpath to a writable folder")
    for folder, advice in folders.items():
        check_writable(folder, advice)


def run_log_dir(trainer: L.Trainer) -> Path | None:
    """The run's own log folder (e.g. runs/shakespeare/version_3), for code that runs on rank 0 only.

    ``trainer.log_dir`` would broadcast from rank 0 and so hang a rank-0-only caller under DDP.
    """
    for logger in trainer.loggers:
        log_dir = getattr(logger, "log_dir", None)
        if log_dir:
            return Path(log_dir)
    return None

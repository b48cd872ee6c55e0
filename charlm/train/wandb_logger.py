"""Weights & Biases logging that never prompts and never hangs.

``mode="auto"`` logs online when W&B credentials are present and its server answers, and offline
otherwise, saying how to upload the run later with ``wandb sync``. Online on purpose
(``mode="online"`` or ``WANDB_MODE=online``) checks both first and stops with one line saying what
to do. ``disabled`` (or ``WANDB_MODE=disabled`` under ``auto``) turns W&B off: nothing is written
or logged, and charlm's callbacks skip it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

from lightning.pytorch.loggers import WandbLogger as _LightningWandbLogger

from charlm.compat import entry_is, started_wandb_run, wandb_init_args
from charlm.train.run_folder import ROOT_FLAG, check_writable, loggers_of
from charlm.train.wandb_probe import has_credentials, probe_server
from datamodules.common.rank_zero import rank_zero_note

Mode = Literal["auto", "online", "offline", "disabled"]
# WANDB_MODE values W&B accepts -> what charlm does with them ("dryrun" and "run" are W&B's old names)
_ENV_MODES = {"online": "online", "run": "online", "shared": "online", "offline": "offline", "dryrun": "offline",
              "disabled": "disabled"}
INIT_TIMEOUT = 30.0  # seconds wandb.init may take online (W&B's default is 90, plus its own retries)


class WandbUnavailableError(ValueError):
    """W&B was asked to log online and cannot (a user error: one line, exit 2)."""


def env_mode() -> str | None:
    """The mode ``WANDB_MODE`` asks for, if any."""
    value = os.environ.get("WANDB_MODE", "").strip().lower()
    if value and value not in _ENV_MODES:
        raise ValueError(f"WANDB_MODE={value} is not a W&B mode; use online, offline or disabled.")
    return _ENV_MODES.get(value)


def resolve_mode(mode: Mode) -> tuple[str, str]:
    """The W&B mode to use, and why. ``mode`` wins over ``WANDB_MODE``, which applies under ``auto``
    (as in ``wandb.init``, whose ``mode=`` beats the environment)."""
    if mode == "auto":
        asked = env_mode()
        if asked in ("offline", "disabled"):
            return asked, f"WANDB_MODE={os.environ['WANDB_MODE']}"
        if asked == "online":
            check_online(f"WANDB_MODE={os.environ['WANDB_MODE']}", "WANDB_MODE=offline")
            return "online", "WANDB_MODE=online"
        if not has_credentials():
            return "offline", "no W&B credentials (run `wandb login` or set WANDB_API_KEY to log online)"
        why = probe_server()
        if why:
            return "offline", why
        return "online", "credentials found and the server answers"
    if mode == "online":
        check_online("mode=online", "--trainer.logger.mode offline")
    return mode, f"mode={mode} was asked for"


def check_logger_config(trainer_config: Any) -> None:
    """Resolve the mode of each charlm W&B logger of a parsed config before anything is built, so an
    impossible online run is one line (raised while jsonargparse builds the logger, it would be
    buried in a dump of every type the logger could have been). The logger's own check reuses the
    probe's answer. A logger turned off (``disabled``) is dropped from the config: it would record
    nothing, and leaving it out means ``wandb`` is never imported (nor needed: a machine without it
    trains with ``WANDB_MODE=disabled``)."""
    drop = [logger for logger in loggers_of(trainer_config)
            if entry_is(logger, WandbLogger) and resolve_mode(logger.init_args.get("mode") or "auto")[0] == "disabled"]
    if drop:
        loggers = trainer_config.logger if isinstance(trainer_config.logger, list) else [trainer_config.logger]
        kept = [logger for logger in loggers if not any(logger is d for d in drop)]
        trainer_config.logger = kept if kept else False


def check_online(asked: str, offline_flag: str) -> None:
    """Raise :class:`WandbUnavailableError` unless credentials exist and the server answers (bounded)."""
    offline = f"or log offline with {offline_flag} and upload later with `wandb sync`"
    if not has_credentials():
        raise WandbUnavailableError(f"W&B online mode was asked for ({asked}) but no W&B credentials were found; "
                                    f"run `wandb login` or set WANDB_API_KEY, {offline}.")
    why = probe_server()
    if why:
        raise WandbUnavailableError(f"W&B online mode was asked for ({asked}) but {why}; "
                                    f"check the network (and HTTPS_PROXY), {offline}.")


class WandbLogger(_LightningWandbLogger):
    """Lightning's WandbLogger, online when it can be and offline (never a prompt) when not."""

    def __init__(
        self,
        project: str = "charlm",
        save_dir: str | None = "runs",
        name: str | None = None,
        mode: Mode = "auto",
        **kwargs: Any,
    ) -> None:
        """
        Args:
            project: the W&B project the run goes to.
            save_dir: folder that holds the local ``wandb/`` run folders ("" or null: the trainer's
                default_root_dir, under the CLI).
            name: display name of the run (default, under ``charlm fit``: corpus, cell, shape and run folder
                version, e.g. shakespeare-lstm-2x256-v0).
            mode: auto (online with credentials and network, else offline), online (checked first),
                offline, or disabled (W&B off).
        """
        self.requested_mode = mode
        self.resolved_mode, reason = resolve_mode(mode)
        save_dir = save_dir or "."
        if self.resolved_mode == "offline":
            rank_zero_note(f"W&B logs offline: {reason}.")
        if self.resolved_mode != "disabled":
            # wandb would quietly fall back to the system temp folder
            check_writable(save_dir, f"choose a writable folder with {ROOT_FLAG} DIR (or the W&B logger's save_dir), "
                                     f"or turn W&B off with WANDB_MODE=disabled")
            Path(save_dir).mkdir(parents=True, exist_ok=True)
        kwargs = {k: v for k, v in kwargs.items() if v is not None}  # unset: W&B's and Lightning's defaults
        if "settings" not in kwargs:
            import wandb

            # silent: no lines of wandb's own at start and end (its warnings still show); charlm's say where the run
            # is (at start: offline, the note above; online, its link, from RunConfig; at the end of fit:
            # charlm.callbacks.run_summary, with the link or the `wandb sync` command)
            if self.resolved_mode == "online" and "WANDB_INIT_TIMEOUT" not in os.environ:
                kwargs["settings"] = wandb.Settings(init_timeout=INIT_TIMEOUT, silent=True)
            elif self.resolved_mode == "disabled":  # records nothing: no look for a git repo in a save_dir not made
                kwargs["settings"] = wandb.Settings(disable_git=True)
            else:
                kwargs["settings"] = wandb.Settings(silent=True)
        super().__init__(project=project, save_dir=save_dir, name=name, mode=self.resolved_mode, **kwargs)
        if wandb_init_args(self).get("anonymous") is None:
            wandb_init_args(self).pop("anonymous", None)  # wandb warns about the key even when unset

    def log_hyperparams(self, params: Any) -> None:
        """Nothing: the run's config is the resolved configuration, nested as the config file nests it, which
        charlm.train.run_record.RunConfig records (Lightning's would add the model's settings again, flat, with its
        internals: ``_instantiator`` and the vocabulary as a list of byte values)."""

    def name_and_tag(self, name: str, tags: list[str]) -> None:
        """Name the run ``name`` unless it has a name given, and add ``tags`` to any it has; before it starts."""
        init = wandb_init_args(self)
        init["name"] = init.get("name") or name
        init["tags"] = list(dict.fromkeys([*(init.get("tags") or []), *tags]))

    @property
    def experiment(self) -> Any:
        """The W&B run; started on first use. If it cannot start, ``auto`` goes offline and online
        asked for (``mode`` or ``WANDB_MODE``) stops with one line."""
        import wandb

        try:
            return super().experiment
        except wandb.errors.Error as err:
            text = " ".join(str(err).split())  # wandb's messages span lines; the user gets one
            why = f"{type(err).__name__}: {text}" if text else type(err).__name__
            if self.requested_mode == "auto" and env_mode() is None and self.resolved_mode == "online":
                rank_zero_note(f"W&B logs offline: the online run did not start ({why}).")
                self.resolved_mode = wandb_init_args(self)["mode"] = "offline"
                return super().experiment
            raise WandbUnavailableError(
                f"W&B could not start its {self.resolved_mode} run ({why}); check `wandb login` / WANDB_API_KEY and "
                f"the network, or log offline with WANDB_MODE=offline (upload later with `wandb sync`).") from None

    def where(self) -> str | None:
        """Where the run's records are, for the summary at the end of a fit: its page online; offline, its
        folder and the command that uploads it (a resumed run has one folder per part, uploaded together into
        one run). None before the run starts."""
        run = started_wandb_run(self)
        if run is None:
            return None
        if self.resolved_mode != "offline":
            return str(run.url) if getattr(run, "url", None) else None
        folder = Path(run.dir).parent
        if len(offline_parts(folder.parent, run.id)) > 1:
            folder = folder.parent / f"offline-run-*-{run.id}*"
        return f"saved offline; upload it with: wandb sync {_relative(folder)}"


def _relative(path: Path) -> str:
    try:
        return str(path.absolute().relative_to(Path.cwd().absolute()))
    except ValueError:
        return str(path)


def offline_parts(wandb_dir: Path, run_id: str) -> list[Path]:
    """The offline folders of one W&B run, oldest first: wandb names each part
    ``offline-run-<YYYYmmdd_HHMMSS>-<id>``, plus ``-<n>`` when two parts start within one second."""
    name = re.compile(rf"offline-run-\d{{8}}_\d{{6}}-{re.escape(run_id)}(-\d+)?")
    return sorted(p for p in wandb_dir.glob(f"offline-run-*-{run_id}*") if name.fullmatch(p.name))


def is_enabled(logger: _LightningWandbLogger) -> bool:
    """False for a W&B logger that was turned off (mode disabled, or WANDB_MODE=disabled)."""
    mode = getattr(logger, "resolved_mode", None) or wandb_init_args(logger).get("mode") or os.environ.get("WANDB_MODE")
    return mode != "disabled"


class GrowingTable:
    """One W&B table per W&B logger of a trainer, logged again with each new batch of rows.

    ``log_mode="INCREMENTAL"`` makes W&B upload only the new rows each time, while the run page
    shows one table holding them all.
    """

    def __init__(self, columns: list[str]) -> None:
        self.columns = columns
        self._tables: dict[int, Any] = {}  # id(logger) -> wandb.Table

    def extend(self, logger: _LightningWandbLogger, rows: list[list]) -> Any:
        """Add ``rows`` to ``logger``'s table and return the table, ready for ``experiment.log``."""
        import wandb  # only when a W&B logger is configured

        table = self._tables.get(id(logger))
        if table is None:
            table = self._tables[id(logger)] = wandb.Table(columns=self.columns, log_mode="INCREMENTAL")
        for row in rows:
            table.add_data(*row)
        return table


def wandb_loggers(trainer) -> list[_LightningWandbLogger]:
    """The trainer's W&B loggers (Lightning's class or charlm's) that are not turned off."""
    return [logger for logger in trainer.loggers if isinstance(logger, _LightningWandbLogger) and is_enabled(logger)]

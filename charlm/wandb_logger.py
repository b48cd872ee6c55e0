"""Weights & Biases logging that never prompts and never hangs.

``mode="auto"`` logs online when W&B credentials are present and its server answers, and offline
otherwise, saying how to upload the run later with ``wandb sync``.
"""

from __future__ import annotations

import netrc
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
import os
import socket
import sys
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

from lightning.pytorch.loggers import WandbLogger as _LightningWandbLogger
from lightning.pytorch.utilities import rank_zero_only

Mode = Literal["auto", "online", "offline", "disabled"]


def _host() -> str:
    return urlparse(os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai").hostname or "api.wandb.ai"


def has_credentials() -> bool:
    """An API key in the environment or in ~/.netrc (where ``wandb login`` puts it)."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators(_host()) is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def server_reachable(timeout: float = 3.0) -> bool:
    """Whether the W&B server accepts a connection within ``timeout`` seconds, DNS lookup included
    (a thread bounds the lookup, which socket timeouts do not cover)."""

    def connect() -> bool:
        try:
            with socket.create_connection((_host(), 443), timeout=timeout):
                return True
        except OSError:
            return False

    pool = ThreadPoolExecutor(max_workers=1)
    try:
        return pool.submit(connect).result(timeout=timeout)
    except FutureTimeout:
        return False
    finally:
        pool.shutdown(wait=False)


def resolve_mode(mode: Mode) -> tuple[str, str]:
    """The W&B mode to use, and why."""
    if mode != "auto":
        return mode, f"mode={mode} was asked for"
    env_mode = os.environ.get("WANDB_MODE")
    if env_mode in ("online", "offline", "disabled"):
        return env_mode, f"WANDB_MODE={env_mode}"
    if not has_credentials():
        return "offline", "no W&B credentials (run `wandb login` or set WANDB_API_KEY to log online)"
    if not server_reachable():
        return "offline", f"the W&B server {_host()} cannot be reached"
    return "online", "credentials found and the server answers"


class WandbLogger(_LightningWandbLogger):
    """Lightning's WandbLogger, online when it can be and offline (never a prompt) when not."""

    def __init__(
        self,
        project: str = "charlm",
        save_dir: str = "runs",
        name: str | None = None,
        mode: Mode = "auto",
        **kwargs: Any,
    ) -> None:
        """
        Args:
            project: the W&B project the run goes to.
            save_dir: folder that holds the local ``wandb/`` run folders.
            name: display name of the run (W&B picks one if not given).
            mode: auto (online with credentials and network, else offline), online, offline or disabled.
        """
        self.resolved_mode, reason = resolve_mode(mode)
        if self.resolved_mode == "offline":
            _tell(f"W&B logs offline: {reason}.")
        Path(save_dir).mkdir(parents=True, exist_ok=True)
        super().__init__(project=project, save_dir=save_dir, name=name, mode=self.resolved_mode, **kwargs)
        if self._wandb_init.get("anonymous") is None:
            self._wandb_init.pop("anonymous", None)  # wandb warns about the key even when unset

    def finalize(self, status: str) -> None:
        super().finalize(status)
        if self.resolved_mode == "offline" and self._experiment is not None:
            run_dir = Path(self._experiment.dir).parent
            _tell(f"W&B run saved offline in {run_dir}; upload it with: wandb sync {run_dir}")


@rank_zero_only
def _tell(message: str) -> None:
    print(message, file=sys.stderr)


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
    """The trainer's W&B loggers (Lightning's class or charlm's)."""
    return [logger for logger in trainer.loggers if isinstance(logger, _LightningWandbLogger)]

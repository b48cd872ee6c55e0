"""Small fits of the real CLI for the device-parametrized tests: on the CPU here, on a GPU where there is one.

W&B stays off (the device machine may lack wandb): the run logs to CSV only, so these need the CLI's
own packages (jsonargparse) and none of the optional ones.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from tests.cli_runs import small_run

CSV_ONLY = json.dumps([{"class_path": "charlm.csv_logger.ResumableCSVLogger", "init_args": {"save_dir": ""}}])


def accelerator(device: str) -> list[str]:
    return ["--trainer.accelerator", "gpu" if device == "cuda" else "cpu"]


def device_run(corpus: Path, device: str, *extra: str, cmd: str = "fit") -> list[str]:
    """:func:`tests.cli_runs.small_run` on ``device`` ("cpu" or "cuda"), logging to CSV only."""
    return small_run(corpus, *accelerator(device), "--trainer.devices", "1", f"--trainer.logger={CSV_ONLY}",
                     *extra, cmd=cmd)


def fit_in(folder: Path, args: list[str]):
    """Run the CLI in-process in ``folder``; returns the LightningCLI (tests.cli_runs.run_in, without wandb)."""
    pytest.importorskip("jsonargparse", reason="the charlm CLI needs jsonargparse: carry its wheel (README)")
    from charlm.cli import main

    folder.mkdir(parents=True, exist_ok=True)
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        return main(args)
    finally:
        os.chdir(cwd)
        if "wandb" in sys.modules:
            sys.modules["wandb"].finish()  # a run of an earlier test must not be reused

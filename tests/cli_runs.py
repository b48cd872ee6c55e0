"""Running charlm from tests: a small run of the default config in-process or as a real process,
and what a one-line error must look like. Shared by the test modules (none imports another)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import wandb

from charlm.cli import main
from tests.conftest import REPO


def small_run(corpus: Path, *extra: str, cmd: str = "fit") -> list[str]:
    """Arguments for a small, quick run of the shipped cli.yaml (it writes to ./runs)."""
    return [
        cmd, "--config", str(REPO / "cli.yaml"), "--data.path", str(corpus),
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--model.num_layers", "1", "--model.hidden_size", "64", "--model.embedding_dim", "16",
        "--data.batch_size", "16", "--data.seq_len", "32", *extra,
    ]


def run_in(folder: Path, args: list[str]):
    """Run the CLI in-process with ``folder`` as the working directory; returns the LightningCLI."""
    folder.mkdir(parents=True, exist_ok=True)
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        return main(args)
    finally:
        os.chdir(cwd)
        wandb.finish()  # WandbLogger would otherwise reuse this run in the next test


def checkpoint_dir(folder: Path, cli) -> Path:
    return folder / cli.trainer.checkpoint_callback.dirpath  # dirpath is relative to the run's folder


def with_callback(class_path: str, **init_args) -> list[str]:
    args = [f"--trainer.callbacks+={class_path}"]
    for key, value in init_args.items():
        args.append(f"--trainer.callbacks.{key}={value}")
    return args


def charlm(*args: str, cache=None, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if cache is not None:
        env["CHARLM_CACHE"] = str(cache)
    return subprocess.run([sys.executable, "-m", "charlm", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("charlm: error:")]


def assert_one_line(out, *words: str) -> str:
    """Exit 2, exactly one error line holding ``words``, and none of jsonargparse's dump around it."""
    assert out.returncode == 2, out.stderr[-3000:]
    lines = error_lines(out.stderr)
    assert len(lines) == 1, out.stderr[-3000:]
    for word in words:
        assert word in lines[0], lines[0]
    for noise in ("Traceback", "usage:", "Given value", "Does not validate", "Subtypes:"):
        assert noise not in out.stderr, out.stderr[-3000:]
    return lines[0]

"""Running charlm from tests: a small run of the default config in-process or as a real process,
and what a one-line error must look like. Shared by the test modules (none imports another).

charlm and W&B are imported where used, so the data module tests can start processes with these
helpers without loading Lightning.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

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
    from charlm.cli.commands.fit import main

    folder.mkdir(parents=True, exist_ok=True)
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        return main(args)
    finally:
        os.chdir(cwd)
        if "wandb" in sys.modules:  # (a GPU machine may have no wandb: runs logging to CSV only never import it)
            sys.modules["wandb"].finish()  # WandbLogger would otherwise reuse this run in the next test


def checkpoint_dir(folder: Path, cli) -> Path:
    return folder / cli.trainer.checkpoint_callback.dirpath  # dirpath is relative to the run's folder


def with_callback(class_path: str, **init_args) -> list[str]:
    args = [f"--trainer.callbacks+={class_path}"]
    for key, value in init_args.items():
        args.append(f"--trainer.callbacks.{key}={value}")
    return args


@contextlib.contextmanager
def keeping_sigint() -> Iterator[None]:
    """Give back this process's SIGINT handler, which Lightning leaves ignored after a Ctrl-C shutdown."""
    sigint = signal.getsignal(signal.SIGINT)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, sigint)


# --- real processes ---------------------------------------------------------------------------------
def child_env(cache: Path | None = None, **extra: str) -> dict[str, str]:
    """This process's environment for a child: the repository importable from any folder (Lightning
    relaunches ``python -m charlm`` for the other DDP ranks, and configs name ``tests.helpers``
    callbacks), ``cache`` as its CHARLM_CACHE, and not the W&B service of an in-process run of an
    earlier test (a run killed by a signal would keep its id "in use" there, and a resumed run could
    not take it back); then ``extra``."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("WANDB_SERVICE", None)
    if cache is not None:
        env["CHARLM_CACHE"] = str(cache)
    return {**env, **extra}


@contextlib.contextmanager
def default_signals() -> Iterator[None]:
    """Start children with Ctrl-C's and SIGHUP's default actions even if this pytest ignores them.

    A process started in the background by a non-interactive shell (``pytest ... &``, nohup, some
    CI runners) ignores SIGINT, and its children inherit that: Python then never installs its
    KeyboardInterrupt handler, and a Ctrl-C test sees the signal ignored, as a terminal would not.
    """
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # exec resets a handler to the default
    previous_hup = signal.signal(signal.SIGHUP, signal.SIG_DFL)  # and under nohup, SIGHUP would be ignored
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        signal.signal(signal.SIGHUP, previous_hup)


def disk_full_past(max_bytes: int) -> Callable[[], None]:
    """A ``preexec_fn`` for a child whose disk is full past ``max_bytes`` per file (RLIMIT_FSIZE).

    Python ignores SIGXFSZ, so a write past the limit fails with EFBIG (``File too large``) as a
    full disk fails with ENOSPC; a child that sets SIGXFSZ back to SIG_DFL is killed by it instead
    (and leaves no core file).
    """
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return limit


def start_python(*args: str, cwd: Path = REPO, cache: Path | None = None, env: dict[str, str] | None = None,
                 disk_full_at: int | None = None, **popen: object) -> subprocess.Popen:
    """Start ``python ARGS`` in ``cwd`` as a user's shell would (:func:`child_env`,
    :func:`default_signals`), with a disk full past ``disk_full_at`` bytes per file if given."""
    preexec = disk_full_past(disk_full_at) if disk_full_at is not None else None
    with default_signals():
        return subprocess.Popen([sys.executable, *args], cwd=cwd, env=child_env(cache, **(env or {})),
                                preexec_fn=preexec, **popen)


def run_python(*args: str, input: str | bytes | None = None, text: bool = True, timeout: float = 300,
               **kwargs) -> subprocess.CompletedProcess:
    """Run ``python ARGS`` to its end (:func:`start_python`), fed ``input``; its stdout and stderr
    (``text`` or bytes)."""
    stdin = subprocess.PIPE if input is not None else None  # None: this process's stdin, as subprocess.run
    with start_python(*args, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=text,
                      **kwargs) as proc:
        try:
            stdout, stderr = proc.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def charlm(*args: str, cache=None, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    """Run ``python -m charlm ARGS`` (in the repository unless ``cwd=`` says otherwise)."""
    return run_python("-m", "charlm", *args, cache=cache, timeout=timeout, **kwargs)


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

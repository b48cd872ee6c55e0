import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from charlm.__main__ import run
from tests.cli_runs import checkpoint_dir, run_in, small_run
from tests.conftest import SHAKESPEARE


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A small LSTM trained for 300 steps on the real Tiny Shakespeare (once per test session)."""
    if not SHAKESPEARE.is_file():
        pytest.skip(f"the real Tiny Shakespeare is not at {SHAKESPEARE}")
    tmp = tmp_path_factory.mktemp("tiny")
    cli = run_in(tmp, small_run(SHAKESPEARE, "--trainer.max_steps", "300", "--trainer.limit_val_batches", "5",
                                "--model.lr", "0.005", "--data.cache_dir", str(tmp / "cache")))
    return checkpoint_dir(tmp, cli) / "last.ckpt"


@dataclass
class Finished:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def charlm_main(monkeypatch, capsys, tmp_path) -> Callable[..., Finished]:
    """Run the ``charlm`` entry point (``charlm.__main__.run``) in this process, in ``tmp_path``.

    The same code path as ``python -m charlm ...`` (errors become one line and exit status 2),
    without paying five seconds of interpreter and Lightning start-up per call.
    """
    monkeypatch.chdir(tmp_path)

    def call(*args) -> Finished:
        monkeypatch.setattr(sys, "argv", ["charlm", *map(str, args)])
        capsys.readouterr()
        try:
            run()
            code = 0
        except SystemExit as done:
            code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
        out = capsys.readouterr()
        return Finished(code, out.out, out.err)

    return call

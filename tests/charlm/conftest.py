from pathlib import Path

import pytest

from tests.charlm.test_train import checkpoint_dir, run_in, small_run
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

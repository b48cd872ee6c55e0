"""Every signal at every boundary: a fit stopped by Ctrl-C (SIGINT) or SIGTERM at a batch end, a
validation end or an epoch end, and resumed from its ``interrupted.ckpt``, records what a fit that
never stopped records: the same metrics.csv (rows, steps, values) and the same weights."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from tests.cli_runs import keeping_sigint, run_in, small_run, with_callback
from tests.conftest import SHAKESPEARE

# epochs of 12 batches, validated after batches 6 and 12, every step logged: 30 steps cross two epoch
# ends and five validations, in a few seconds
COMMON = ["--trainer.max_steps", "30", "--trainer.limit_train_batches", "12", "--trainer.val_check_interval", "6",
          "--trainer.limit_val_batches", "2", "--trainer.log_every_n_steps", "1", "--model.dropout", "0.3",
          "--model.warmup_steps", "5", "--trainer.logger", "charlm.train.csv_logger.ResumableCSVLogger",
          "--trainer.logger.save_dir", "runs", "--trainer.logger.name", "null"]
# (boundary, the step after which the signal is sent): the validation after step 12 ends the epoch
BOUNDARIES = [("batch_end", 4), ("validation_end", 18), ("validation_end", 12), ("epoch_end", 12)]
EXIT_STATUS = {"SIGINT": 1, "SIGTERM": 143}  # Lightning's after a Ctrl-C; 128 + SIGTERM (charlm.train.faults)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def fit(folder: Path, cache: Path, *extra: str):
    return run_in(folder, small_run(SHAKESPEARE, *COMMON, "--data.cache_dir", str(cache), *extra))


def metrics(folder: Path) -> list[dict[str, str]]:
    run = folder / "runs" / "shakespeare"
    assert sorted(p.name for p in run.iterdir()) == ["version_0"]  # the resumed fit continued the run folder
    with open(run / "version_0" / "metrics.csv", newline="") as file:
        return list(csv.DictReader(file))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> tuple[list[dict[str, str]], dict[str, torch.Tensor]]:
    """metrics.csv and the final weights of the run never stopped (once for the module)."""
    if not SHAKESPEARE.is_file():
        pytest.skip(f"the real Tiny Shakespeare is not at {SHAKESPEARE}")
    folder = tmp_path_factory.mktemp("uninterrupted")
    with torch.random.fork_rng(devices=[]):
        torch.set_num_threads(1)
        cli = fit(folder, folder / "cache")
    return metrics(folder), {k: v.clone() for k, v in cli.model.state_dict().items()}


@pytest.mark.parametrize("name", ["SIGINT", "SIGTERM"])
@pytest.mark.parametrize(("at", "step"), BOUNDARIES)
def test_a_signal_at_a_boundary_resumes_to_the_uninterrupted_records(name, at, step, uninterrupted, tmp_path):
    full_rows, full_weights = uninterrupted
    with keeping_sigint(), pytest.raises(SystemExit) as stopped:
        fit(tmp_path, tmp_path / "cache", *with_callback("tests.helpers.SignalAt", name=name, at=at, step=step))
    assert stopped.value.code == EXIT_STATUS[name]
    saved = tmp_path / "runs" / "shakespeare" / "version_0" / "checkpoints" / "interrupted.ckpt"
    assert torch.load(saved, weights_only=True)["global_step"] == step
    assert not (saved.parent.parent / "charlm.lock").exists()  # the run folder given back (charlm.train.run_folder)

    resumed = fit(tmp_path, tmp_path / "cache", "--ckpt_path", str(saved))
    assert resumed.trainer.global_step == 30
    rows = metrics(tmp_path)
    assert [r["step"] for r in rows] == [r["step"] for r in full_rows]
    assert rows == full_rows
    got = resumed.model.state_dict()
    assert all(torch.equal(got[k], full_weights[k]) for k in full_weights)

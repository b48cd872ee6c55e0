"""What `charlm fit` says it made, and the W&B run a user browses (read back from its offline file)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import torch
import wandb

from charlm.callbacks.run_summary import resume_command
from tests.cli_runs import small_run, with_callback
from tests.wandb_records import run_record


@pytest.fixture
def fit(charlm_main):
    """``charlm ARGS`` in this process (in tmp_path), finishing the W&B run it leaves open (the next would
    join it)."""
    def call(*args):
        try:
            return charlm_main(*args)
        finally:
            wandb.finish()
            wandb.teardown()

    return call

SMALL = ["--trainer.max_steps", "6", "--trainer.val_check_interval", "3", "--trainer.limit_val_batches", "2",
         "--data.eval_batch_size", "4"]


def summary(stdout: str) -> dict[str, str]:
    """The labelled lines of the summary fit printed last: {"best checkpoint": ..., "run folder": ..., ...}."""
    block = stdout.rsplit("\ncharlm: fit ", 1)[1]
    return {m[1]: m[2] for m in re.finditer(r"^  ([\w& ]+):\s+(.*)$", block, re.M)}


def test_fit_ends_naming_its_best_checkpoint_and_what_to_run_next(tmp_path, shakespeare_path, charlm_main, fit):
    out = fit(*small_run(shakespeare_path, *SMALL, "--trainer.logger.mode", "offline"))
    assert out.returncode == 0, out.stderr[-2000:]
    assert "\ncharlm: fit finished at step 6." in out.stdout
    said = summary(out.stdout)
    best = said["best checkpoint"].split(" (val bpc ")[0]
    score = float(said["best checkpoint"].split(" (val bpc ")[1].rstrip(")"))
    assert (tmp_path / best).is_file() and best.startswith("runs/shakespeare/version_0/checkpoints/best-")
    assert f"bpc{score:.4f}" in best  # the file the checkpoint callback rates best, with its score
    assert said["run folder"].startswith("runs/shakespeare/version_0 (metrics.csv, config.yaml, samples.jsonl")
    assert said["W&B run"].startswith("saved offline; upload it with: wandb sync runs/wandb/offline-run-")
    assert (tmp_path / said["W&B run"].rsplit(" ", 1)[1]).is_dir()
    assert said["serve it"] == f"charlm serve --ckpt_path {best}"
    sample = shlex.split(said["sample it"])  # the printed command runs as printed
    assert sample[:2] == ["charlm", "sample"]
    done = charlm_main(*sample[1:], "--length", "20")
    assert done.returncode == 0 and len(done.stdout) > 20, done.stderr
    assert out.stdout.count("wandb sync") == 1 and "wandb sync" not in out.stderr  # once, not twice


def test_an_interrupted_fit_ends_with_the_command_that_resumes_it(tmp_path, shakespeare_path, fit):
    args = small_run(shakespeare_path, *SMALL, "--trainer.logger.mode", "disabled")
    interrupt = with_callback("tests.helpers.InterruptAt", step=4)
    out = fit(*args, *interrupt)
    assert out.returncode == 1
    assert "\ncharlm: fit stopped at step 4 (Ctrl-C)." in out.stdout
    said = summary(out.stdout)
    assert said["best checkpoint"].startswith("runs/shakespeare/version_0/checkpoints/best-step3-")
    resume = shlex.split(said["resume"])
    saved = "runs/shakespeare/version_0/checkpoints/interrupted.ckpt"
    assert resume == ["charlm", *args, *interrupt, "--ckpt_path", saved]
    again = fit(*[a for a in resume[1:] if a not in interrupt])  # as printed, but for this test's interruption
    assert again.returncode == 0, again.stderr[-2000:]
    assert "\ncharlm: fit finished at step 6." in again.stdout


def test_the_resume_command_is_the_fit_command_with_its_checkpoint_replaced():
    argv = ["charlm", "fit", "--config", "my run.yaml", "--ckpt_path", "old.ckpt", "--ckpt_path=older.ckpt"]
    assert resume_command(Path("/elsewhere/interrupted.ckpt"), argv) == (
        "charlm fit --config 'my run.yaml' --ckpt_path /elsewhere/interrupted.ckpt")
    assert resume_command(Path("/x.ckpt"), ["python"]) == "charlm fit ... --ckpt_path /x.ckpt"


def test_the_wandb_run_reads_well(tmp_path, shakespeare_path, fit):
    out = fit(*small_run(shakespeare_path, *SMALL, "--trainer.logger.mode", "offline",
                                 "--trainer.log_every_n_steps", "1"))
    assert out.returncode == 0, out.stderr[-2000:]
    (run_dir,) = (tmp_path / "runs" / "wandb").glob("offline-run-*")
    run = run_record(run_dir)
    assert run["name"] == "shakespeare-lstm-1x64-v0" and run["tags"] == ["shakespeare", "lstm"]
    config = run["config"]
    # each setting once, nested as the config file nests it; nothing internal
    assert {"model", "data", "trainer"} <= set(config) and "lr" not in config and "cell" not in config
    assert config["model"]["lr"] == 0.003 and config["model"]["hidden_size"] == 64 and "vocab" not in config["model"]
    assert config["data"]["init_args"]["seq_len"] == 32 and "precision" in config["trainer"]
    assert not [key for key in config if key.startswith("_") and key != "_wandb"]
    lr_keys = {key for key in run["history_keys"] if key.startswith("lr-")}
    assert lr_keys == {"lr-AdamW"}  # one curve: both parameter groups share the rate
    assert "v_num" not in out.stdout or "v_num=0" in out.stdout


def test_the_progress_bar_shows_the_run_folders_version(tmp_path, shakespeare_path, fit):
    out = fit(*small_run(shakespeare_path, *SMALL, "--trainer.logger.mode", "offline"),
              "--trainer.enable_progress_bar", "true")
    assert out.returncode == 0, out.stderr[-2000:]
    versions = set(re.findall(r"v_num=(\w+)", out.stdout + out.stderr))
    assert versions == {"0"}, versions


def test_checkpoints_still_carry_the_wandb_run_id(tmp_path, shakespeare_path, fit):
    out = fit(*small_run(shakespeare_path, *SMALL, "--trainer.logger.mode", "offline"))
    assert out.returncode == 0
    (run_dir,) = (tmp_path / "runs" / "wandb").glob("offline-run-*")
    last = tmp_path / "runs/shakespeare/version_0/checkpoints/last.ckpt"
    assert torch.load(last, weights_only=True)["callbacks"]["RunConfig"]["wandb_run_id"] == run_dir.name[-8:]


def test_a_mistake_before_any_step_is_its_one_line_alone(tmp_path, shakespeare_path, fit):
    # Lightning finds this one as fit starts, after the data module is set up
    out = fit(*small_run(shakespeare_path, *SMALL, "--trainer.logger.mode", "disabled"),
              "--trainer.val_check_interval", "100000")
    assert out.returncode == 2 and "val_check_interval" in out.stderr
    assert "charlm: fit" not in out.stdout, out.stdout[-500:]

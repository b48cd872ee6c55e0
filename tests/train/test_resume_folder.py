"""A fit resumed from a checkpoint in its run folder continues that folder: one metrics.csv, one
samples.jsonl, one checkpoints folder whose "best" is the best of the whole run (through the real CLI)."""

from __future__ import annotations

import csv
import json
import shutil
import warnings
from pathlib import Path

import pytest
import torch

from tests.cli_runs import keeping_sigint, run_in, small_run, with_callback

CSV_ONLY = ["--trainer.logger", "charlm.train.csv_logger.ResumableCSVLogger",  # no W&B start-up
            "--trainer.logger.save_dir", "runs", "--trainer.logger.name", "null"]  # null: named after the corpus
COMMON = ["--trainer.max_steps", "40", "--trainer.val_check_interval", "10", "--trainer.limit_val_batches", "2",
          "--trainer.log_every_n_steps", "5", "--model.lr", "0.01", "--model.warmup_steps", "2", *CSV_ONLY]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def interrupted_fit(folder: Path, corpus: Path, step: int) -> Path:
    """A fit stopped by Ctrl-C before optimizer step ``step + 1``; returns its interrupted.ckpt."""
    with keeping_sigint(), pytest.raises(SystemExit):  # Lightning exits after its graceful Ctrl-C shutdown
        run_in(folder, small_run(corpus, *COMMON, *with_callback("tests.helpers.InterruptAt", step=step)))
    return folder / "runs" / "shakespeare" / "version_0" / "checkpoints" / "interrupted.ckpt"


def csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def column(rows: list[dict[str, str]], key: str) -> dict[int, float]:
    """{step: value} of one metric; fails on a step logged twice for it."""
    steps = [int(r["step"]) for r in rows if r.get(key)]
    assert steps == sorted(set(steps)), f"{key}: steps not strictly increasing: {steps}"
    return {int(r["step"]): float(r[key]) for r in rows if r.get(key)}


def test_resumed_fit_continues_its_folder_and_its_best_checkpoint(tmp_path, shakespeare_path):
    saved = interrupted_fit(tmp_path, shakespeare_path, step=25)  # after the validations at steps 10 and 20
    run = saved.parent.parent
    before = column(csv_rows(run / "metrics.csv"), "val/bpc")
    assert sorted(before) == [9, 19]  # Lightning logs the validation after step N as step N - 1

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        resumed = run_in(tmp_path, small_run(shakespeare_path, *COMMON, "--ckpt_path", str(saved),
                                             *with_callback("tests.helpers.Scramble")))
    messages = [str(w.message) for w in caught]
    assert not [m for m in messages if "dirpath has changed" in m or "will be deleted" in m], messages

    # one run folder: no version_1, the checkpoints written where the run's others are
    assert sorted(p.name for p in run.parent.iterdir()) == ["version_0"]
    dirpath = resumed.trainer.checkpoint_callback.dirpath  # relative to tmp_path
    assert (tmp_path / dirpath).resolve() == run / "checkpoints"

    # metrics.csv holds both parts: every metric's steps strictly increasing (nothing logged twice)
    rows = csv_rows(run / "metrics.csv")
    steps = [int(r["step"]) for r in rows]
    assert steps == sorted(steps) and steps[-1] == 39
    val = column(rows, "val/bpc")
    assert sorted(val) == [9, 19, 29, 39] and {s: val[s] for s in before} == before
    for key in ("train/loss", "lr-AdamW"):
        assert sorted(column(rows, key)) == list(range(4, 40, 5)), key

    # the resumed part did worse than before the interrupt, so a best of that part alone would be worse
    assert min(val[29], val[39]) > min(before.values())
    best_step = min(val, key=val.get) + 1  # the checkpoint's global step
    best = f"best-step{best_step}-bpc{val[best_step - 1]:.4f}.ckpt"
    assert sorted(p.name for p in (run / "checkpoints").glob("best-*.ckpt")) == [best]
    assert Path(resumed.trainer.checkpoint_callback.best_model_path).name == best
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 40

    # samples.jsonl: each validation's samples once; config.yaml kept, the resume's beside it
    sampled = [json.loads(line)["global_step"] for line in (run / "samples.jsonl").read_text().splitlines()]
    assert sampled == [10] * 3 + [20] * 3 + [30] * 3 + [40] * 3
    assert "ckpt_path: null" in (run / "config.yaml").read_text()
    assert f"ckpt_path: {saved}" in (run / "config-resume-step25.yaml").read_text()


def test_an_interrupted_and_resumed_run_records_what_an_uninterrupted_one_does(tmp_path, shakespeare_path):
    """Same metrics.csv rows at the same steps (Lightning alone logs every row after a Ctrl-C one step
    late, and skips one), same samples, same checkpoint names."""
    run_in(tmp_path / "full", small_run(shakespeare_path, *COMMON))
    saved = interrupted_fit(tmp_path / "cut", shakespeare_path, step=25)
    run_in(tmp_path / "cut", small_run(shakespeare_path, *COMMON, "--ckpt_path", str(saved)))

    full, cut = (tmp_path / part / "runs" / "shakespeare" for part in ("full", "cut"))
    assert sorted(p.name for p in cut.iterdir()) == ["version_0"]
    full, cut = full / "version_0", cut / "version_0"

    # train/bpc_epoch too: the checkpoint carries the epoch's sums so far
    assert csv_rows(cut / "metrics.csv") == csv_rows(full / "metrics.csv")
    assert (cut / "samples.jsonl").read_text() == (full / "samples.jsonl").read_text()
    names = sorted(p.name for p in (full / "checkpoints").iterdir())
    assert sorted(p.name for p in (cut / "checkpoints").iterdir()) == sorted([*names, "interrupted.ckpt"])


def test_going_back_to_an_earlier_checkpoint_replaces_the_later_records(tmp_path, shakespeare_path):
    """Resuming the run from its step-20 checkpoint after it reached step 40: the rows and samples of
    steps after 20 are replaced by the resumed fit's, not kept beside them."""
    saved = interrupted_fit(tmp_path, shakespeare_path, step=25)
    run = saved.parent.parent
    earlier = run / "checkpoints" / "step20.ckpt"
    shutil.copy(run / "checkpoints" / "last.ckpt", earlier)  # written at the validation after step 20
    assert torch.load(earlier, weights_only=True)["global_step"] == 20
    run_in(tmp_path, small_run(shakespeare_path, *COMMON, "--ckpt_path", str(saved)))
    rows, samples = csv_rows(run / "metrics.csv"), (run / "samples.jsonl").read_text()
    assert sorted(column(rows, "val/bpc")) == [9, 19, 29, 39]

    run_in(tmp_path, small_run(shakespeare_path, *COMMON, "--ckpt_path", str(earlier)))
    again = csv_rows(run / "metrics.csv")
    for key in ("val/bpc", "train/loss", "lr-AdamW"):
        column(again, key)  # no step twice
    assert again == rows
    assert (run / "samples.jsonl").read_text() == samples  # steps 30 and 40 once each, as before


def test_a_checkpoint_copied_elsewhere_starts_a_new_folder(tmp_path, shakespeare_path):
    saved = interrupted_fit(tmp_path, shakespeare_path, step=5)
    run = saved.parent.parent
    metrics = (run / "metrics.csv").read_bytes()
    copy = tmp_path / "elsewhere" / "resume.ckpt"
    copy.parent.mkdir()
    shutil.copy(saved, copy)

    with pytest.warns(UserWarning, match="dirpath has changed"):  # Lightning's: a new folder, a new "best"
        run_in(tmp_path, small_run(shakespeare_path, *COMMON, "--trainer.max_steps", "10", "--ckpt_path", str(copy)))
    assert sorted(p.name for p in run.parent.iterdir()) == ["version_0", "version_1"]
    assert (run / "metrics.csv").read_bytes() == metrics  # the first folder untouched
    fresh = run.parent / "version_1"
    assert (fresh / "checkpoints" / "last.ckpt").is_file()
    assert sorted(column(csv_rows(fresh / "metrics.csv"), "val/bpc")) == [9]

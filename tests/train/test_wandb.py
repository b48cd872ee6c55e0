"""Samples and metrics in a real (offline) W&B run, and sampling (and neuron pages) that leave training untouched."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from charlm.callbacks.sample_text import COLUMNS, SampleText
from tests.cli_runs import run_in, small_run, with_callback

TEMPERATURES = [0.5, 0.8, 1.0]


def table_rows(folder) -> tuple[list[str], list[list]]:
    files = sorted(folder.glob("runs/wandb/offline-run-*/files/media/table/samples_*.table.json"))
    assert files, "no W&B table files were written"
    tables = [json.loads(f.read_text()) for f in files]
    assert all(t["columns"] == tables[0]["columns"] for t in tables)
    return tables[0]["columns"], [row for t in tables for row in t["data"]]


@pytest.mark.slow
def test_offline_run_holds_a_growing_sample_table_config_and_metrics(tmp_path, shakespeare_path, capfd):
    args = small_run(shakespeare_path, "--trainer.max_steps", "60", "--trainer.val_check_interval", "20",
                     "--trainer.limit_val_batches", "3", "--trainer.log_every_n_steps", "10",
                     *with_callback("charlm.callbacks.TokensPerSecond", every_n_steps=10))
    run_in(tmp_path, args)
    out = capfd.readouterr()

    columns, rows = table_rows(tmp_path)
    assert columns == COLUMNS == ["global_step", "epoch", "val_bpc", "temperature", "prompt", "sample"]
    # one row per temperature per sampling event (after each of the 3 validations), nothing more
    assert sorted((r[0], r[3]) for r in rows) == sorted((s, t) for s in (20, 40, 60) for t in TEMPERATURES)
    assert all(r[2] is not None and 1 < r[2] < 6.1 and r[4] == "\n" and len(r[5]) > 200 for r in rows)
    for step, _, _, _, _, text in rows:  # printed on the console too
        assert f"----- step {step} (epoch 0, val bpc" in out.out and text[:80] in out.out

    run_dir = next(tmp_path.glob("runs/wandb/offline-run-*"))
    config = (run_dir / "files" / "charlm-config.yaml").read_text()
    assert "class_path: datamodules.ShakespeareDataModule" in config and "hidden_size: 64" in config
    assert f"wandb sync {run_dir.relative_to(tmp_path)}" in out.err + out.out  # how to upload it later

    with open(tmp_path / "runs/shakespeare/version_0/metrics.csv") as f:
        metrics = list(csv.DictReader(f))
    for key in ("train/bpc", "val/bpc", "lr-AdamW", "train/tokens_per_sec"):
        assert any(row.get(key) for row in metrics), key
    assert (tmp_path / "runs/shakespeare/version_0/config.yaml").is_file()
    assert len((tmp_path / "runs/shakespeare/version_0/samples.jsonl").read_text().splitlines()) == len(rows)

    # a second run in the same folder works and gets its own folders
    run_in(tmp_path, args)
    assert (tmp_path / "runs/shakespeare/version_1/config.yaml").is_file()
    assert len(list(tmp_path.glob("runs/wandb/offline-run-*"))) == 2


@pytest.mark.slow
def test_sampling_does_not_change_training(tmp_path, shakespeare_path):
    common = ["--trainer.max_steps", "30", "--trainer.val_check_interval", "10", "--trainer.limit_val_batches", "2",
              "--model.dropout", "0.3", "--model.num_layers", "2"]
    sampled = run_in(tmp_path / "a", small_run(shakespeare_path, *common,
                                               *with_callback("charlm.callbacks.SampleText", every_n_steps=3,
                                                              length=50, temperatures="[0.0,1.0,2.0]"),
                                               *with_callback("charlm.callbacks.VisualizeNeurons",
                                                              max_bytes=200)))
    assert sum(1 for _ in (tmp_path / "a").glob("runs/shakespeare/version_0/samples.jsonl")) == 1
    assert len(list((tmp_path / "a").glob("runs/shakespeare/version_0/neurons/step-*.html"))) == 3
    plain = run_in(tmp_path / "b", small_run(shakespeare_path, *common, "--trainer.callbacks=[]"))
    assert sum(isinstance(cb, SampleText) for cb in sampled.trainer.callbacks) == 2  # cli.yaml's and ours
    assert not any(isinstance(cb, SampleText) for cb in plain.trainer.callbacks)
    a, b = sampled.model.state_dict(), plain.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert sampled.model.model.training == plain.model.model.training

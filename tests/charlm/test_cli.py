"""The command line as a user meets it: help, config printing, and errors that name the flag."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.cli_runs import charlm
from tests.conftest import REPO


def test_fit_help_documents_every_model_argument(charlm_main):
    out = charlm_main("fit", "--help")
    assert out.returncode == 0, out.stderr
    for flag, words in [("--model.cell", "recurrent cell"), ("--model.hidden_size", "units per recurrent layer"),
                        ("--model.dropout", "dropout between stacked layers"), ("--model.grad_clip", "gradient norm")]:
        assert flag in out.stdout and words in out.stdout, flag
    data = charlm_main("fit", "--data.help", "ShakespeareDataModule")
    assert data.returncode == 0, data.stderr
    for words in ["local copy of ``input.txt``", "parallel streams per process", "truncated-BPTT window"]:
        assert words in data.stdout


def test_print_config_resolves_the_default_config():
    out = charlm("fit", "--config", "cli.yaml", "--model.cell", "gru", "--print_config")  # a real process, once
    assert out.returncode == 0, out.stderr
    assert "class_path: datamodules.ShakespeareDataModule" in out.stdout
    assert "cell: gru" in out.stdout


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--model.hidden_size", "0", "--model.hidden_size must be a positive integer, got 0"),
        ("--model.dropout", "1.5", r"--model.dropout must lie in [0, 1), got 1.5"),
        ("--model.cell", "transformer", "model.cell"),
        ("--model.lr", "-1", "--model.lr must be a positive number"),
    ],
)
def test_nonsense_hyperparameters_name_the_flag(flag, value, message, shakespeare_path, charlm_main):
    out = charlm_main("fit", "--config", REPO / "cli.yaml", "--data.path", shakespeare_path, flag, value,
                      "--trainer.max_steps", "1")
    assert out.returncode == 2
    assert message in out.stderr, out.stderr[-2000:]
    if value == "transformer":
        assert "lstm" in out.stderr  # the valid choices are listed


def test_console_script_is_installed():
    script = os.path.join(os.path.dirname(sys.executable), "charlm")
    out = subprocess.run([script, "validate", "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "--ckpt_path" in out.stdout


@pytest.mark.parametrize("name", ["Enwik8DataModule", "LinuxDataModule", "TextDataModule", "ShakespeareDataModule"])
def test_every_corpus_is_selectable_by_name(name, charlm_main):
    out = charlm_main("fit", "--config", REPO / "cli.yaml", "--data", name, "--print_config")
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"class_path: datamodules.{name.replace('DataModule', '').lower()}" in out.stdout.lower()

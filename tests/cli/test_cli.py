"""The command line as a user meets it: help, config printing, and errors that name the flag."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from charlm.cli.commands.fit import CharLMCLI
from charlm.cli.parser import load, summary
from charlm.cli.table import NAMES, TRAINING
from tests.cli_runs import assert_one_line, charlm, run_in, run_python, small_run
from tests.conftest import REPO

FIXTURE = REPO / "tests" / "fixtures" / "lstm_1x16_v0.ckpt"  # a checkpoint written by charlm (b452096)


def test_model_flags_in_fit_help_parse_into_the_model(charlm_main, shakespeare_path, tmp_path):
    out = charlm_main("fit", "--help")
    assert out.returncode == 0, out.stderr
    for flag, words in [("--model.cell", "recurrent cell"), ("--model.hidden_size", "units per recurrent layer"),
                        ("--model.dropout", "dropout between stacked layers"), ("--model.grad_clip", "gradient norm")]:
        assert flag in out.stdout and words in out.stdout, flag
    data = charlm_main("fit", "--data.help", "ShakespeareDataModule")
    assert data.returncode == 0, data.stderr
    for words in ["local copy of ``input.txt``", "parallel streams per process", "truncated-BPTT window"]:
        assert words in data.stdout
    # what the help documents is what the model gets: one step with each flag set away from its default
    cli = run_in(tmp_path / "run", small_run(shakespeare_path, "--model.cell", "gru", "--model.num_layers", "2",
                                             "--model.hidden_size", "24", "--model.dropout", "0.25",
                                             "--model.grad_clip", "0.5", "--trainer.max_steps", "1",
                                             "--trainer.limit_val_batches", "1", "--trainer.logger", "false",
                                             "--data.cache_dir", str(tmp_path / "cache")))
    rnns = [m for m in cli.model.modules() if isinstance(m, torch.nn.RNNBase)]
    assert [type(m) for m in rnns] == [torch.nn.GRU]
    assert (rnns[0].hidden_size, rnns[0].num_layers, rnns[0].dropout) == (24, 2, 0.25)
    assert cli.model.hparams.grad_clip == 0.5  # what configure_gradient_clipping clips to


def test_help_lists_every_command_of_the_table(charlm_main):
    assert set(CharLMCLI.subcommands()) == set(TRAINING)  # the table holds every LightningCLI command
    lines = {name: TRAINING.get(name) or summary(load(name)) for name in NAMES}
    for args in (["--help"], []):  # a bare `charlm` lists the commands too, then says one is missing
        out = charlm_main(*args)
        assert out.stdout.startswith("usage: charlm {" + ",".join(NAMES) + "}"), out.stdout[:200]
        listing = " ".join(out.stdout.split())  # argparse wraps lines
        for name, line in lines.items():
            assert f" {name} {line}" in listing, name
    assert_one_line(out, "give a command", ", ".join(NAMES), "charlm --help")


def test_checkpoint_commands_start_without_importing_lightning():
    """`charlm --help` and the checkpoint commands skip Lightning's import: half the start-up time."""
    for args, output in [(["--help"], "usage: charlm {fit,"),
                         (["score", "--ckpt_path", str(FIXTURE), "--text", "To be, or not to be"],
                          " bpc over 18 bytes")]:
        out = run_python("-X", "importtime", "-m", "charlm", *args, timeout=120)
        assert out.returncode == 0 and output in out.stdout, out.stderr[-2000:]
        imported = [line.rsplit("|", 1)[-1].strip() for line in out.stderr.splitlines() if "|" in line]
        assert "charlm.cli.parser" in imported  # -X importtime reports imports: the check can see them
        assert not [m for m in imported if m.split(".")[0] in ("lightning", "pytorch_lightning")], args


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

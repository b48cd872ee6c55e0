"""fit / validate / test as a careless user runs them: each mistake is one line naming the flag (exit 2).

Issue 10 items 15 (user OSErrors and damaged archives at the entry point), 17 (accelerator),
18 (jsonargparse's dumps), 19 (model size), 21 (CPU processes), 22 (library noise), 25 (predict,
--help), 26 (--optimizer), 27 (packaged defaults), 28 (jsonargparse's skip_none).
"""

from __future__ import annotations

import errno
import logging
import os
import warnings
from pathlib import Path

import pytest
import tomllib
import torch
from lightning.pytorch.utilities import rank_zero_info

from charlm.cli.commands.fit import DEFAULTS
from charlm.cli.exits import describe_os_error
from charlm.cli.quiet import quiet_library_noise
from charlm.model import CharRNN, CharRNNConfig, parameter_count
from tests.cli_runs import assert_one_line, charlm, run_python
from tests.conftest import REPO

TINY = ["--model.num_layers", "1", "--model.hidden_size", "32", "--model.embedding_dim", "8", "--data.batch_size", "4",
        "--data.seq_len", "16", "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


# --- 18: validation errors and parse errors ---------------------------------------------------
@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--data.batch_size", "0"], ["--data.batch_size must be a positive integer, got 0"]),
        (["--data.seq_len", "-5"], ["--data.seq_len must be a positive integer, got -5"]),
        (["--data.batch_size", "abc"], ["--data.batch_size", "expected int", "abc", "charlm fit --help"]),
        (["--trainer.max_stepz", "3"], ["unrecognized arguments", "did you mean --trainer.max_steps?"]),
        (["--model.cell", "transformer"], ["--model.cell", "rnn, gru, lstm", "transformer"]),
        (["--data", "Foo"], ["--data Foo: no such data module", "ShakespeareDataModule"]),
        (["--trainer.val_check_interval", "0"], ["--trainer.val_check_interval must be > 0", "got 0"]),
        (["--trainer.max_epochs", "-3"], ["--trainer: `max_epochs` must be a non-negative integer or -1"]),
        # issue 20, 14: a misspelt setting of a class, an abbreviation, a union of choices
        (["--data.pth", "x"], ["--data.pth: ShakespeareDataModule takes no setting 'pth'", "--data.path?"]),
        (["--data", "Enwik8DataModule", "--data.urll", "x"], ["Enwik8DataModule", "did you mean --data.url?"]),
        (["--trainer.max_step", "3"], ["unrecognized arguments: --trainer.max_step", "--trainer.max_steps?"]),
        (["--trainer.precision", "8"], ["--trainer.precision", "64, 32, 16", "16-mixed", "bf16-mixed", "got 8"]),
    ],
)
def test_bad_values_are_one_line_naming_the_flag(args, words, shakespeare_path, charlm_main):
    out = charlm_main("fit", "--data.path", shakespeare_path, *args, "--trainer.max_steps", "1")
    assert_one_line(out, *words)


def test_a_flag_is_never_taken_for_the_start_of_another(tiny_checkpoint, tmp_path, charlm_main):
    (tmp_path / "p.txt").write_text("To be")
    out = charlm_main("visualize", "--ckpt_path", tiny_checkpoint, "--text", "To be", "--out", tmp_path / "v.html")
    assert_one_line(out, "unrecognized arguments: --text", "did you mean --text_file?")
    assert not (tmp_path / "v.html").exists()


def test_a_damaged_archive_is_one_line(tmp_path, charlm_main):
    archive = tmp_path / "enwik8.zip"
    archive.write_bytes(bytes(range(256)) * 20)  # not a zip at all
    out = charlm_main("fit", "--data", "Enwik8DataModule", "--data.path", archive, "--data.sha256", "null")
    assert_one_line(out, str(archive), "truncated or corrupted", "--data.path")


def test_a_full_disk_while_preparing_is_one_line(tmp_path, shakespeare_path):
    """A real write failure: the file-size limit (RLIMIT_FSIZE) stops the 1.1 MB token file at 64 KB."""
    cache = tmp_path / "cache"
    out = charlm("fit", "--data.path", str(shakespeare_path), "--data.cache_dir", str(cache), "--trainer.logger",
                 "false", *TINY, cwd=tmp_path, disk_full_at=65536)
    assert_one_line(out, str(cache))
    assert not list(cache.rglob("meta.json"))  # nothing half-prepared passes for a prepared corpus


@pytest.mark.parametrize(
    ("err", "words"),
    [
        (OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "runs/last.ckpt"),
         ["runs/last.ckpt", "the disk is full", "Free some space", "--trainer.default_root_dir"]),
        (OSError(errno.EACCES, os.strerror(errno.EACCES), "runs"), ["permission denied: runs", "chmod"]),
        (OSError(errno.EROFS, os.strerror(errno.EROFS), "/mnt/ro/runs"), ["/mnt/ro/runs", "read-only", "writable"]),
    ],
)
def test_os_errors_a_user_can_act_on_are_described(err, words):
    line = describe_os_error(err)
    assert line is not None and "\n" not in line
    for word in words:
        assert word in line


def test_real_os_errors_name_their_file(tmp_path):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    with pytest.raises(NotADirectoryError) as through_a_file:
        (a_file / "runs").mkdir()
    assert describe_os_error(through_a_file.value).startswith(f"{a_file / 'runs'}: part of this path is a file")
    with pytest.raises(IsADirectoryError) as a_folder:
        open(tmp_path, "w")  # noqa: SIM115
    assert "is a folder, where a file was expected" in describe_os_error(a_folder.value)
    assert describe_os_error(OSError(errno.ECONNRESET, "reset")) is None  # not the user's to fix: a traceback


# --- 17, 21: devices ------------------------------------------------------------------------------
@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
@pytest.mark.parametrize("name", ["gpu", "cuda"])
def test_a_gpu_accelerator_without_a_gpu_is_one_line(name, shakespeare_path, charlm_main):
    out = charlm_main("fit", "--data.path", shakespeare_path, "--trainer.accelerator", name, "--trainer.max_steps", "1")
    assert_one_line(out, f"--trainer.accelerator {name}: no CUDA device is available", "--trainer.accelerator cpu")


@pytest.mark.gpu
def test_more_gpus_than_the_machine_has_is_one_line(shakespeare_path, charlm_main):
    many = torch.cuda.device_count() + 1
    out = charlm_main("fit", "--data.path", shakespeare_path, "--trainer.devices", many, "--trainer.max_steps", "1")
    assert_one_line(out, f"--trainer.devices {many}: this machine has {many - 1} CUDA device")


def test_more_cpu_processes_than_cores_are_noted(shakespeare_path, charlm_main):
    processes = (os.cpu_count() or 1) + 1
    # the bad batch size stops the run after the devices are checked, before any process starts
    out = charlm_main("fit", "--data.path", shakespeare_path, "--trainer.accelerator", "cpu", "--trainer.devices",
                      processes, "--data.batch_size", "0")
    note = [line for line in out.stderr.splitlines() if line.startswith("charlm: note:")]
    assert len(note) == 1 and f"starts {processes} training processes" in note[0]
    assert f"{os.cpu_count()} CPU core" in note[0]
    few = charlm_main("fit", "--data.path", shakespeare_path, "--trainer.accelerator", "cpu", "--trainer.devices", "1",
                      "--data.batch_size", "0")
    assert "charlm: note:" not in few.stderr


# --- 19: model size -------------------------------------------------------------------------------
@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("layers", [1, 3])
def test_parameter_count_is_exact(cell, layers):
    config = CharRNNConfig(vocab_size=65, cell=cell, num_layers=layers, hidden_size=24, embedding_dim=8)
    assert parameter_count(config) == sum(p.numel() for p in CharRNN(config).parameters())


@pytest.mark.parametrize(("flag", "value"), [("--model.hidden_size", "100000"), ("--model.num_layers", "100000")])
def test_a_huge_model_is_refused_before_allocating(flag, value, shakespeare_path, charlm_main):
    out = charlm_main("fit", "--data.path", shakespeare_path, flag, value, "--trainer.max_steps", "1")
    line = assert_one_line(out, f"{flag} {value}", "parameters", "GiB", "2^31")
    count = int(line.split(" has ")[1].split(" parameters")[0].replace(",", ""))
    assert count > 2**31
    with pytest.raises(ValueError, match="parameters"):  # also where a checkpoint's hyperparameters build one
        CharRNN(CharRNNConfig(vocab_size=65, num_layers=2, hidden_size=100_000, embedding_dim=64))


# --- 22: library noise ----------------------------------------------------------------------------
def test_library_noise_is_silenced_and_nothing_else(caplog):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_library_noise()
        warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated, use `isinstance(treespec, TreeSpec)`",
                      FutureWarning, stacklevel=1)
        warnings.warn("something the user should see", UserWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["something the user should see"]
    with caplog.at_level(logging.INFO):
        rank_zero_info("💡 Tip: For seamless cloud logging and experiment tracking, try installing litlogger")
        rank_zero_info("💡 Tip: For seamless cloud uploads and versioning, try installing [litmodels]")
        rank_zero_info("GPU available: False, used: False")
    assert "litlogger" not in caplog.text and "litmodels" not in caplog.text and "GPU available" in caplog.text


def test_first_screen_of_a_fit_has_no_library_noise(tmp_path, shakespeare_path):
    """A real run: no LeafSpec, litlogger or jsonargparse deprecation (``skip_none`` would be an error)."""
    env = {"WANDB_MODE": "offline", "JSONARGPARSE_DEPRECATION_WARNINGS": "all"}  # not once per kind
    out = run_python("-W", "error::DeprecationWarning:charlm.train.run_record", "-m", "charlm", "fit",
                     "--data.path", str(shakespeare_path), *TINY, "--trainer.max_steps", "2",
                     "--trainer.limit_val_batches", "2", "--trainer.callbacks", "[]", cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    for noise in ("LeafSpec", "litlogger", "Traceback", "deprecated"):
        assert noise not in out.stderr + out.stdout, noise
    assert list(tmp_path.glob("runs/shakespeare/version_0/config.yaml"))  # RunConfig's dump ran


# --- 25, 26: the commands and options a LightningCLI user expects ------------------------------------
def test_predict_is_gone_and_help_lists_every_command(charlm_main):
    out = charlm_main("predict")
    assert_one_line(out, "no command 'predict'", "sample")
    help_text = " ".join(charlm_main("--help").stdout.split())  # argparse wraps lines
    assert "predict" not in help_text
    for command in ("charlm sample", "charlm visualize", "charlm score", "charlm classify", "charlm fit"):
        assert command in help_text


@pytest.mark.parametrize("flag", ["--optimizer", "--lr_scheduler"])
def test_optimizer_flags_are_refused_naming_the_model_flags(flag, shakespeare_path, charlm_main):
    out = charlm_main("fit", "--data.path", shakespeare_path, flag, "SGD", "--trainer.max_steps", "1")
    assert_one_line(out, f"{flag} is not available", "AdamW", "--model.lr", "--model.warmup_steps",
                    "--model.lr_schedule")


# --- 27: the default run is installed with the package ---------------------------------------------
def test_fit_without_a_config_reads_the_packaged_defaults(charlm_main, tmp_path):
    assert Path.cwd() == tmp_path and not (tmp_path / "cli.yaml").exists()  # not the repository
    out = charlm_main("fit", "--print_config")
    assert out.returncode == 0, out.stderr
    for line in ("class_path: datamodules.ShakespeareDataModule", "hidden_size: 256", "max_epochs: 10",
                 "class_path: lightning.pytorch.callbacks.ModelCheckpoint",
                 "class_path: charlm.train.wandb_logger.WandbLogger"):
        assert line in out.stdout, line
    with_cli_yaml = charlm_main("fit", "--config", REPO / "cli.yaml", "--print_config")
    assert with_cli_yaml.stdout == out.stdout  # cli.yaml adds nothing: one source of truth
    package_data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert DEFAULTS.name in package_data["charlm"] and DEFAULTS.parent.name == "charlm" and DEFAULTS.is_file()


# --- a --config file that is not a YAML mapping of settings --------------------------------------
@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"trainer: [\n", ["--config bad.yaml: not valid YAML", "line 2"]),
        (b"\xff\xfe", ["--config bad.yaml: not UTF-8 text", "byte 0xff"]),
        (b"hello\n", ["--config bad.yaml", "not a mapping of settings", "trainer:"]),
        (b"# only a comment\n", ["--config bad.yaml: holds no settings", "leave --config out"]),
    ],
    ids=["syntax", "not-utf8", "scalar", "empty"],
)
@pytest.mark.parametrize("command", ["fit", "sample"])
def test_a_config_file_that_is_not_yaml_settings_is_one_line_naming_it(content, words, command, tmp_path, charlm_main):
    (tmp_path / "bad.yaml").write_bytes(content)
    assert_one_line(charlm_main(command, "--config", "bad.yaml"), *words)

"""``fit/validate/test --ckpt_path <a file charlm did not write>``: one line and exit 2, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from charlm.checkpoint import check_ckpt_path
from tests.cli_runs import assert_one_line, small_run

COMMANDS = ["fit", "validate", "test"]


def _bad_checkpoints(folder: Path, good: Path) -> dict[str, tuple[Path, str]]:
    """{kind: (file, what the message must say)}"""
    folder.mkdir(exist_ok=True)
    truncated = folder / "truncated.ckpt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    text = folder / "notes.ckpt"
    text.write_text("not a checkpoint at all\n")
    state_dict = folder / "state_dict.pt"
    torch.save(torch.nn.LSTM(4, 8).state_dict(), state_dict)
    lightning = folder / "other_model.ckpt"  # what Lightning writes for a model that is not charlm's
    torch.save({"epoch": 0, "global_step": 3, "pytorch-lightning_version": "2.6.6",
                "state_dict": {"layer.weight": torch.ones(2, 2)}, "hyper_parameters": {"lr": 0.1}, "loops": {},
                "optimizer_states": [], "lr_schedulers": []}, lightning)
    return {
        "truncated": (truncated, "is not a readable checkpoint (truncated or corrupted?)"),
        "text": (text, "is not a checkpoint (torch.save writes a zip archive; this file starts with b'not '"),
        "state dict only": (state_dict, ("is not a charlm checkpoint (it has no vocabulary and model weights; "
                                         "it is a bare state dict)")),
        "another Lightning model": (lightning, ("is not a charlm checkpoint (it has no vocabulary and model weights; "
                                                "it is a Lightning checkpoint of another model)")),
        "missing": (folder / "no-such.ckpt", "does not exist"),
        "a folder": (folder, "does not exist (or is not a file)"),
    }


@pytest.mark.parametrize("command", COMMANDS)
def test_a_file_charlm_did_not_write_is_refused_in_one_line(command, charlm_main, tiny_checkpoint, tmp_path,
                                                            shakespeare_path):
    for kind, (path, says) in _bad_checkpoints(tmp_path / "bad", tiny_checkpoint).items():
        done = charlm_main(*small_run(shakespeare_path, "--ckpt_path", path, cmd=command))
        assert done.returncode == 2, (kind, done.stderr[-2000:])
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, (kind, done.stderr)
        assert done.stderr.startswith(f"charlm: error: --ckpt_path: {path} {says}"), (kind, done.stderr)
    assert not (tmp_path / "runs").exists()  # refused before any run folder or data


def test_fit_refuses_a_weights_only_checkpoint_that_validate_accepts(charlm_main, tiny_checkpoint, tmp_path,
                                                                     shakespeare_path):
    ckpt = torch.load(tiny_checkpoint, weights_only=True)
    weights_only = tmp_path / "weights.ckpt"  # as ModelCheckpoint(save_weights_only=True) writes it
    torch.save({k: v for k, v in ckpt.items() if k not in ("optimizer_states", "lr_schedulers", "loops")}, weights_only)
    done = charlm_main(*small_run(shakespeare_path, "--ckpt_path", weights_only))
    assert done.returncode == 2
    assert done.stderr == (f"charlm: error: --ckpt_path: {weights_only} holds model weights only "
                           "(ModelCheckpoint(save_weights_only=True)), so `fit` cannot resume from it; "
                           "`validate`, `test` and `sample` can use it.\n")
    check_ckpt_path(weights_only, "validate")  # no error: evaluating needs only the weights


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("name", ["last", "best"])
def test_lightnings_last_and_best_are_refused_naming_a_real_file(command, name, charlm_main, tmp_path,
                                                                  shakespeare_path):
    """Each charlm run gets a new version_N folder, so "last" would find nothing there and `test`
    would quietly score an untrained model (test/bpc ~6.03, exit 0, before this check)."""
    earlier = tmp_path / "runs" / "shakespeare" / "version_0" / "checkpoints" / "last.ckpt"
    earlier.parent.mkdir(parents=True)
    earlier.touch()
    done = charlm_main(*small_run(shakespeare_path, "--ckpt_path", name, cmd=command))
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.startswith(f"charlm: error: --ckpt_path {name}: a new {command} has no checkpoints"), done.stderr
    assert "--ckpt_path runs/shakespeare/version_0/checkpoints/last.ckpt" in done.stderr, done.stderr


@pytest.mark.parametrize("command", ["validate", "test"])
def test_validate_and_test_without_a_checkpoint_are_refused(command, charlm_main, tmp_path, shakespeare_path):
    """They scored the untrained model (val bpc ~6.0, about log2 of the vocabulary) with exit 0 and no word."""
    earlier = tmp_path / "runs" / "shakespeare" / "version_0" / "checkpoints" / "last.ckpt"
    earlier.parent.mkdir(parents=True)
    earlier.touch()
    done = charlm_main(*small_run(shakespeare_path, cmd=command))
    assert_one_line(done, f"`charlm {command}` scores a trained model", "--ckpt_path runs/shakespeare/version_0/"
                    "checkpoints/last.ckpt", "untrained", "--model.init_from")
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["shakespeare"]  # refused before any run


def test_a_resume_with_other_batches_is_refused_naming_both_values(charlm_main, tiny_checkpoint, tmp_path,
                                                                   shakespeare_path):
    """A resume with another --data.batch_size restarted the hidden state it carries (its batch dimension no
    longer fits) and took its count of batches done in the epoch for another stretch of the corpus."""
    assert torch.load(tiny_checkpoint, weights_only=True)["charlm"]["batching"] == {"batch_size": 16, "seq_len": 32}
    done = charlm_main(*small_run(shakespeare_path, "--data.batch_size", "8", "--ckpt_path", tiny_checkpoint))
    line = assert_one_line(done, f"--ckpt_path {tiny_checkpoint} was trained with --data.batch_size 16, and this fit "
                           "asks for --data.batch_size 8", "Resume with --data.batch_size 16",
                           f"--model.init_from {tiny_checkpoint}")
    assert "seq_len" not in line  # only what differs
    done = charlm_main(*small_run(shakespeare_path, "--data.batch_size", "8", "--data.seq_len", "64",
                                  "--ckpt_path", tiny_checkpoint))
    assert_one_line(done, "trained with --data.batch_size 16 --data.seq_len 32, and this fit asks for "
                    "--data.batch_size 8 --data.seq_len 64")
    assert not (tmp_path / "runs").exists()  # refused before any run folder or data

"""Every path a command writes, against every file the same command reads: never written over (links and hard
links included), with --overwrite or not; an existing file is replaced only when asked."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.cli_runs import assert_one_line
from tests.conftest import REPO

FIXTURE = REPO / "tests" / "fixtures" / "lstm_1x16_v0.ckpt"  # a 1 x 16 LSTM on Tiny Shakespeare's head

# (command, its output flag, {input flag: file name}, the other arguments it needs)
WRITERS = [
    ("visualize", "--out", {"--ckpt_path": "model.ckpt", "--text_file": "passage.txt"}, []),
    ("export", "--output", {"--ckpt_path": "model.ckpt"}, ["--format", "torchscript"]),
]
CASES = [(command, out, flag, name, extra) for command, out, inputs, extra in WRITERS for flag, name in inputs.items()]
ALIASES: dict[str, Callable[[Path, Path], None]] = {
    "same name": lambda victim, alias: None,
    "symlink": lambda victim, alias: alias.symlink_to(victim),
    "hard link": lambda victim, alias: os.link(victim, alias),
}


def inputs_in(folder: Path) -> dict[str, Path]:
    shutil.copy(FIXTURE, folder / "model.ckpt")
    (folder / "passage.txt").write_text("First Citizen:\nBefore we proceed any further, hear me speak.\n")
    return {"model.ckpt": folder / "model.ckpt", "passage.txt": folder / "passage.txt"}


def arguments(command: str, inputs: dict[str, str], extra: list[str]) -> list[str]:
    return [command, *(a for flag, name in inputs.items() for a in (flag, name)), *extra]


@pytest.mark.parametrize("overwrite", [False, True], ids=["", "--overwrite"])
@pytest.mark.parametrize("alias", ALIASES)
@pytest.mark.parametrize(("command", "out", "flag", "name", "extra"), CASES,
                         ids=[f"{command}-{out}-over-{flag}" for command, out, flag, _, _ in CASES])
def test_an_output_is_never_a_file_the_command_reads(command, out, flag, name, extra, alias, overwrite, tmp_path,
                                                     charlm_main):
    files = inputs_in(tmp_path)
    victim = files[name]
    before = victim.read_bytes()
    target = tmp_path / name if alias == "same name" else tmp_path / f"alias-{name}"
    ALIASES[alias](victim, target)
    inputs = dict(next(i for c, _, i, _ in WRITERS if c == command))
    done = charlm_main(*arguments(command, inputs, extra), out, target, *(["--overwrite"] if overwrite else []))
    assert_one_line(done, f"{out} {target} is the file this command reads as {flag}")
    assert victim.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted({"model.ckpt", "passage.txt", target.name})


@pytest.mark.parametrize(("command", "out", "inputs", "extra"), WRITERS, ids=[w[0] for w in WRITERS])
def test_an_existing_file_is_replaced_only_when_asked(command, out, inputs, extra, tmp_path, charlm_main):
    inputs_in(tmp_path)
    notes = tmp_path / "notes.txt"
    notes.write_text("keep me")
    assert_one_line(charlm_main(*arguments(command, inputs, extra), out, notes), f"{out}: {notes} already exists",
                    "--overwrite")
    assert notes.read_text() == "keep me"
    done = charlm_main(*arguments(command, inputs, extra), out, notes, "--overwrite")
    assert done.returncode == 0, done.stderr
    assert notes.read_bytes() != b"keep me"


def test_plot_metrics_never_writes_over_the_metrics_it_reads(tmp_path):
    spec = importlib.util.spec_from_file_location("plot_metrics", REPO / "scripts" / "plot_metrics.py")
    plot_metrics = sys.modules["plot_metrics"] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plot_metrics)
    metrics = tmp_path / "metrics.csv"
    metrics.write_text("epoch,step,train/bpc,val/bpc\n0,9,4.0,\n0,9,,3.9\n0,19,3.5,\n0,19,,3.4\n")
    before = metrics.read_bytes()
    for overwrite in (False, True):
        with pytest.raises(ValueError, match="is the file this command reads as run"):
            plot_metrics.plot(str(tmp_path), out=str(metrics), overwrite=overwrite)
    assert metrics.read_bytes() == before
    (tmp_path / "mine.png").write_bytes(b"keep me")
    with pytest.raises(ValueError, match="already exists"):
        plot_metrics.plot(str(tmp_path), out=str(tmp_path / "mine.png"))
    assert plot_metrics.plot(str(tmp_path)).read_bytes()[:4] == b"\x89PNG"
    assert plot_metrics.plot(str(tmp_path)).name == "bpc.png"  # its own default file is redrawn


@pytest.mark.skipif(not Path("/sys/kernel").is_dir(), reason="needs Linux's /sys, read-only even for root")
@pytest.mark.parametrize(("command", "out", "inputs", "extra"), WRITERS, ids=[w[0] for w in WRITERS])
def test_a_folder_it_cannot_write_is_named_with_the_flag_not_a_temp_file(command, out, inputs, extra, tmp_path,
                                                                         charlm_main):
    inputs_in(tmp_path)
    target = "/sys/kernel/out.file"
    line = assert_one_line(charlm_main(*arguments(command, inputs, extra), out, target),
                           f"{out}: permission denied: {target}", f"give {out} a file in another folder")
    assert ".tmp" not in line and "--trainer" not in line and "--data" not in line

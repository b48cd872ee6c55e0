"""`charlm score` / `charlm classify`: compression tells Shakespeare from Python source."""

import os
import shutil
from pathlib import Path

import pytest

from datamodules.io.vocab import Vocabulary, drop_unknown
from tests.cli_runs import assert_one_line, charlm, checkpoint_dir, run_in, small_run
from tests.conftest import REPO

STDLIB = Path(os.__file__).parent
FIXTURE = REPO / "tests" / "fixtures" / "lstm_1x16_v0.ckpt"  # a 1x16 LSTM on the head of Tiny Shakespeare


@pytest.fixture(scope="session")
def python_checkpoint(tmp_path_factory) -> Path:
    """A small LSTM trained on Python's own standard library, files a* to m* only."""
    tmp = tmp_path_factory.mktemp("python")
    cli = run_in(tmp, small_run(STDLIB / "os.py", "--data", "TextDataModule", "--data.path", f"{STDLIB}/[a-m]*.py",
                                "--data.cache_dir", str(tmp / "cache"), "--trainer.max_steps", "300",
                                "--trainer.limit_val_batches", "5", "--model.lr", "0.005"))
    return checkpoint_dir(tmp, cli) / "last.ckpt"


def run(*args: str, stdin: bytes | None = None):
    """``python -m charlm ARGS`` fed ``stdin``; stdout and stderr as text."""
    out = charlm(*args, input=stdin, text=False, timeout=120)
    out.stdout, out.stderr = out.stdout.decode(), out.stderr.decode()
    return out


@pytest.mark.slow
def test_classify_tells_shakespeare_from_python_on_held_out_text(tiny_checkpoint, python_checkpoint, tmp_path,
                                                                 shakespeare_path):
    models = [str(tiny_checkpoint), str(python_checkpoint)]
    # held out: the last 2,000 bytes of Tiny Shakespeare (its test split), and stdlib files the model never saw
    passages = {str(tiny_checkpoint): shakespeare_path.read_bytes()[-2000:]}
    for name in ("random.py", "shutil.py", "textwrap.py"):
        passages[f"{name}"] = (STDLIB / name).read_bytes()[:2000]
    for source, text in passages.items():
        out = run("classify", "--ckpt_path", *models, "--unknown", "skip", stdin=text)
        assert out.returncode == 0, out.stderr
        winner = out.stdout.splitlines()[0]
        expected = str(tiny_checkpoint) if source == str(tiny_checkpoint) else str(python_checkpoint)
        assert winner.startswith(f"most likely: {expected} ("), (source, out.stdout)
        assert "(+" in out.stdout  # the margin is shown


@pytest.mark.slow
def test_score_and_its_bad_inputs(tiny_checkpoint, python_checkpoint, tmp_path):
    out = run("score", "--ckpt_path", str(tiny_checkpoint), "--text", "ROMEO: What say you?")
    assert out.returncode == 0 and " bpc over 19 bytes" in out.stdout
    refused = run("score", "--ckpt_path", str(tiny_checkpoint), "--text", "x = {1: 2}")
    assert refused.returncode == 2 and "'{' (0x7b)" in refused.stderr and "--unknown skip" in refused.stderr
    empty = run("score", "--ckpt_path", str(tiny_checkpoint), "--text", "")
    assert empty.returncode == 2 and "nothing to score" in empty.stderr
    one = run("classify", "--ckpt_path", str(tiny_checkpoint), "--text", "hello there")
    assert one.returncode == 2 and "at least two checkpoints" in one.stderr
    # different vocabularies: with --unknown skip both models score the same remaining bytes
    mixed = run("classify", "--ckpt_path", str(tiny_checkpoint), str(python_checkpoint), "--unknown", "skip",
                "--text", "def f(x):\n    return {x: 1}  # To be, or not to be\n")
    assert mixed.returncode == 0 and "skipped" in mixed.stderr


def test_classify_takes_several_paths_after_one_flag_and_reads_stdin(tmp_path):
    twin = tmp_path / "twin.ckpt"
    shutil.copyfile(FIXTURE, twin)
    text = b"First Citizen:\nBefore we proceed any further, hear me speak.\n"
    out = run("classify", "--ckpt_path", str(FIXTURE), str(twin), "--device", "cpu", stdin=text)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith(f"most likely: {FIXTURE} (") and f"over {len(text) - 1:,} bytes" in lines[0]
    assert lines[1].startswith(f"  {twin}: ") and "(+0.0000," in lines[1]  # the same weights: the same bpc
    score = run("score", "--ckpt_path", str(twin), "--text_file", "-", stdin=text)
    assert score.returncode == 0 and score.stdout.split()[0] == lines[0].split("(")[1].split()[0]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["classify", "--text", "hi"], ["required", "--ckpt_path", "charlm classify --help"]),
        (["classify", "--ckpt_path"], ["--ckpt_path", "expected at least one argument"]),
        (["score", "--ckpt_path", str(FIXTURE), "--text", "hi", "--unknown", "maybe"],
         ["--unknown", "one of error, skip", "maybe"]),
        (["score", "--ckpt_path", str(FIXTURE), "--txt", "hi"], ["--txt", "did you mean --text?"]),
    ],
    ids=["no-ckpt", "ckpt-without-paths", "bad-unknown", "misspelt"],
)
def test_a_bad_command_line_is_one_line_naming_the_flag(args, words):
    assert_one_line(run(*args), *words)


def test_drop_unknown_refuses_or_skips_what_any_vocabulary_lacks(capsys):
    letters, digits = Vocabulary.from_bytes(b"abc "), Vocabulary.from_bytes(b"ab 12")
    assert drop_unknown(b"ab ba", {"x": letters, "y": digits}, "error") == b"ab ba"  # nothing unknown
    with pytest.raises(ValueError, match=r"^y: the text contains the characters 'c' \(0x63\).*--unknown skip"):
        drop_unknown(b"abc", {"x": letters, "y": digits}, "error")
    with pytest.raises(ValueError, match=r"^x: the text contains the characters '1' \(0x31\)"):
        drop_unknown(b"c1", {"x": letters, "y": digits}, "error")  # y lacks c too: the first model is named
    assert drop_unknown(b"abc 12 ba", {"x": letters, "y": digits}, "skip") == b"ab  ba"  # c (y), 1 and 2 (x)
    assert "skipped 3 bytes (3 distinct values) that x, y never saw" in capsys.readouterr().err
    with pytest.raises(ValueError, match="Nothing is left"):
        drop_unknown(b"c1", {"x": letters, "y": digits}, "skip")

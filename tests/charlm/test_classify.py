"""`charlm score` / `charlm classify`: compression tells Shakespeare from Python source."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli_runs import checkpoint_dir, run_in, small_run
from tests.conftest import REPO

STDLIB = Path(os.__file__).parent


@pytest.fixture(scope="session")
def python_checkpoint(tmp_path_factory) -> Path:
    """A small LSTM trained on Python's own standard library, files a* to m* only."""
    tmp = tmp_path_factory.mktemp("python")
    cli = run_in(tmp, small_run(STDLIB / "os.py", "--data", "TextDataModule", "--data.path", f"{STDLIB}/[a-m]*.py",
                                "--data.cache_dir", str(tmp / "cache"), "--trainer.max_steps", "300",
                                "--trainer.limit_val_batches", "5", "--model.lr", "0.005"))
    return checkpoint_dir(tmp, cli) / "last.ckpt"


def charlm(*args, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "charlm", *args], cwd=REPO, input=stdin, capture_output=True, timeout=120)


@pytest.mark.slow
def test_classify_tells_shakespeare_from_python_on_held_out_text(tiny_checkpoint, python_checkpoint, tmp_path,
                                                                 shakespeare_path):
    models = [str(tiny_checkpoint), str(python_checkpoint)]
    # held out: the last 2,000 bytes of Tiny Shakespeare (its test split), and stdlib files the model never saw
    passages = {str(tiny_checkpoint): shakespeare_path.read_bytes()[-2000:]}
    for name in ("random.py", "shutil.py", "textwrap.py"):
        passages[f"{name}"] = (STDLIB / name).read_bytes()[:2000]
    for source, text in passages.items():
        out = charlm("classify", "--ckpt_path", *models, "--unknown", "skip", stdin=text)
        assert out.returncode == 0, out.stderr.decode()
        winner = out.stdout.decode().splitlines()[0]
        expected = str(tiny_checkpoint) if source == str(tiny_checkpoint) else str(python_checkpoint)
        assert winner.startswith(f"most likely: {expected} ("), (source, out.stdout.decode())
        assert "(+" in out.stdout.decode()  # the margin is shown


@pytest.mark.slow
def test_score_and_its_bad_inputs(tiny_checkpoint, python_checkpoint, tmp_path):
    out = charlm("score", "--ckpt_path", str(tiny_checkpoint), "--text", "ROMEO: What say you?")
    assert out.returncode == 0 and " bpc over 19 bytes" in out.stdout.decode()
    refused = charlm("score", "--ckpt_path", str(tiny_checkpoint), "--text", "x = {1: 2}")
    assert refused.returncode == 2 and "'{' (0x7b)" in refused.stderr.decode() and "--unknown skip" in refused.stderr.decode()
    empty = charlm("score", "--ckpt_path", str(tiny_checkpoint), "--text", "")
    assert empty.returncode == 2 and "nothing to score" in empty.stderr.decode()
    one = charlm("classify", "--ckpt_path", str(tiny_checkpoint), "--text", "hello there")
    assert one.returncode == 2 and "at least two checkpoints" in one.stderr.decode()
    # different vocabularies: with --unknown skip both models score the same remaining bytes
    mixed = charlm("classify", "--ckpt_path", str(tiny_checkpoint), str(python_checkpoint), "--unknown", "skip",
                   "--text", "def f(x):\n    return {x: 1}  # To be, or not to be\n")
    assert mixed.returncode == 0 and "skipped" in mixed.stderr.decode()

"""Checkpoints to serve, and a real ``charlm serve`` on 127.0.0.1 (a subprocess, or uvicorn in a thread)."""

from __future__ import annotations

import contextlib
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from tests.cli_runs import start_python
from tests.conftest import REPO

pytest.importorskip("starlette", reason="charlm serve's extra is not installed (pip install -e '.[serve]')")
pytest.importorskip("uvicorn", reason="charlm serve's extra is not installed (pip install -e '.[serve]')")

SHAKESPEARE_CKPT = REPO / "tests" / "fixtures" / "lstm_1x16_v0.ckpt"  # a 1 x 16 LSTM of Tiny Shakespeare's bytes
CODE_BYTES = bytes(range(32, 127)) + b"\n\t"  # a "model of code": every printable ASCII byte


def write_checkpoint(path: Path, symbols: bytes, seed: int, **shape) -> Path:
    """A charlm checkpoint of an untrained CharRNN of ``shape`` over the bytes in ``symbols``."""
    from charlm.checkpoint import save_model_checkpoint
    from charlm.model import CharRNN, CharRNNConfig
    from datamodules.io.vocab import Vocabulary

    torch.manual_seed(seed)
    vocab = Vocabulary.from_bytes(symbols)
    return save_model_checkpoint(path, CharRNN(CharRNNConfig(vocab_size=len(vocab), **shape)), vocab)


@pytest.fixture(scope="session")
def code_ckpt(tmp_path_factory) -> Path:
    """An untrained 1 x 32 GRU over printable ASCII."""
    return write_checkpoint(tmp_path_factory.mktemp("code") / "code.ckpt", CODE_BYTES, 1, cell="gru", num_layers=1,
                            hidden_size=32, embedding_dim=8)


@pytest.fixture(scope="session")
def slow_ckpt(tmp_path_factory) -> Path:
    """An untrained 2 x 512 LSTM: ~1 ms a byte on a CPU, so 10,000 bytes take seconds (a stream still runs
    when the test acts on it)."""
    return write_checkpoint(tmp_path_factory.mktemp("slow") / "slow.ckpt", CODE_BYTES, 2, num_layers=2,
                            hidden_size=512, embedding_dim=64)


@contextlib.contextmanager
def serving(*args: str, log: Path | None = None) -> Iterator[tuple[str, subprocess.Popen]]:
    """``python -m charlm serve ARGS --port 0``: (its URL, the process), ended after the block. Its stderr goes
    to ``log`` if given (a file a test can read as it grows: an unread pipe would fill and stall the server)."""
    stderr = subprocess.PIPE if log is None else log.open("w")
    proc = start_python("-m", "charlm", "serve", *args, "--port", "0", stdout=subprocess.PIPE,
                        stderr=stderr, text=True, env={"OMP_NUM_THREADS": "1"})
    try:
        url = None
        for line in proc.stdout:
            if "open http://" in line:
                url = line.split("open ", 1)[1].split()[0]
                break
        assert url is not None, proc.stderr.read() if log is None else log.read_text()
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if log is not None:
            stderr.close()


@pytest.fixture(scope="module")
def server(code_ckpt, slow_ckpt) -> Iterator[str]:
    """One server for a module: model 0 the Shakespeare fixture, 1 the code model, 2 the slow model;
    at most 2 generations at once."""
    with serving("--ckpt_path", str(SHAKESPEARE_CKPT), str(code_ckpt), str(slow_ckpt),
                 "--max_generations", "2") as (url, _):
        yield url


@contextlib.contextmanager
def in_process(*paths: Path) -> Iterator[str]:
    """The app on uvicorn in a thread of this process (a test can watch what the process does)."""
    import uvicorn

    from charlm.cli.commands.serve import bind, url_of
    from charlm.serve.app import build_app
    from charlm.serve.models import load_all

    app = build_app(load_all([str(p) for p in paths], torch.device("cpu")))
    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started:
            thread.join(0.05)
            assert thread.is_alive(), "the server thread ended before it started"
        yield url_of(sock)
    finally:
        server.should_exit = True
        thread.join(20)
        sock.close()

"""Shared fixtures: the real Tiny Shakespeare, an isolated cache, and a loopback HTTP server."""

from __future__ import annotations

import functools
import http.server
import os
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

# W&B runs made by tests stay on this machine, even where credentials exist
os.environ["WANDB_MODE"] = "offline"
os.environ["WANDB_SILENT"] = "true"

# Under pytest-xdist (`-n 2`, README), one thread per worker and per process it starts: two workers with two
# threads each on 2 cores run many times slower than one alone (oversubscribed OpenMP threads spin)
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
SHAKESPEARE = Path(os.environ.get("CHARLM_SHAKESPEARE",
                                  REPO.parent / "shared" / "corpora" / "tinyshakespeare" / "input.txt"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_gpu = pytest.mark.skip(reason=f"needs a CUDA device: {no_cuda_reason()}")
    for item in items:
        # the marker, not item.keywords: those hold every parent's name too (the folder tests/gpu/)
        if item.get_closest_marker("gpu") is not None and not torch.cuda.is_available():
            item.add_marker(skip_gpu)


def no_cuda_reason() -> str:
    from charlm.devices import no_cuda_reason

    return no_cuda_reason()


# A test body that runs on the CPU here and in CI, and on a GPU where there is one:
# @pytest.mark.parametrize("device", CPU_AND_CUDA); the cuda case is marked gpu (`pytest -m gpu`).
CPU_AND_CUDA = [pytest.param("cpu", id="cpu"), pytest.param("cuda", id="cuda", marks=pytest.mark.gpu)]


def needs_gpus(count: int) -> pytest.MarkDecorator:
    """Skip, saying why, on a machine with fewer than ``count`` CUDA devices (mark the test gpu too)."""
    found = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return pytest.mark.skipif(found < count, reason=f"needs {count} CUDA devices, this machine has {found}")


@pytest.fixture
def shakespeare_path() -> Path:
    if not SHAKESPEARE.is_file():
        pytest.skip(f"the real Tiny Shakespeare is not at {SHAKESPEARE} (set CHARLM_SHAKESPEARE)")
    return SHAKESPEARE


# what a process launcher tells its processes; Lightning's DDP sets these in its own process too
LAUNCH_VARIABLES = ("LOCAL_RANK", "RANK", "GROUP_RANK", "NODE_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR",
                    "MASTER_PORT")


@pytest.fixture(autouse=True)
def no_launcher_left_behind() -> Iterator[None]:
    """Each test leaves the launch variables as it found them: an in-process DDP fit (tests/gpu/test_device_ddp.py
    on the CPU) sets LOCAL_RANK, MASTER_PORT and NODE_RANK for its own processes, and a later DDP fit started
    from this process would take them for a launcher's and wait forever for ranks nobody starts (under
    pytest-xdist, where the order of tests differs, it did). Only these: W&B keeps its service's address in
    the environment, and that must stay."""
    saved = {name: os.environ.get(name) for name in LAUNCH_VARIABLES}
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own CHARLM_CACHE, so nothing touches ~/.cache/charlm."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("CHARLM_CACHE", str(cache))
    return cache


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


class _TruncatingHandler(_QuietHandler):
    """Announces the full Content-Length, then sends only half the body and hangs up."""

    def do_GET(self) -> None:
        data = Path(self.translate_path(self.path)).read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2])


def _serve(folder: Path, handler: type) -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """(folder, base URL) of a real HTTP server on 127.0.0.1 serving that folder."""
    folder = tmp_path / "www"
    folder.mkdir()
    yield from ((folder, url) for url in _serve(folder, _QuietHandler))


@pytest.fixture
def truncating_http_root(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    folder = tmp_path / "www-truncating"
    folder.mkdir()
    yield from ((folder, url) for url in _serve(folder, _TruncatingHandler))


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """Tiny models run ~4x faster on one thread than on a shared, oversubscribed 2-core CPU
    (``pytestmark = pytest.mark.usefixtures("one_torch_thread")`` in a test module)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --- a trained model and the entry point in this process (the tests of charlm/) ---------------------------

@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A small LSTM trained for 300 steps on the real Tiny Shakespeare (once per test session)."""
    from tests.cli_runs import checkpoint_dir, run_in, small_run

    if not SHAKESPEARE.is_file():
        pytest.skip(f"the real Tiny Shakespeare is not at {SHAKESPEARE}")
    tmp = tmp_path_factory.mktemp("tiny")
    cli = run_in(tmp, small_run(SHAKESPEARE, "--trainer.max_steps", "300", "--trainer.limit_val_batches", "5",
                                "--model.lr", "0.005", "--data.cache_dir", str(tmp / "cache")))
    return checkpoint_dir(tmp, cli) / "last.ckpt"


@dataclass
class Finished:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def charlm_main(monkeypatch, capsys, tmp_path) -> Callable[..., Finished]:
    """Run the ``charlm`` entry point (``charlm.__main__.run``) in this process, in ``tmp_path``.

    The same code path as ``python -m charlm ...`` (errors become one line and exit status 2),
    without paying five seconds of interpreter and Lightning start-up per call.
    """
    from charlm.__main__ import run

    monkeypatch.chdir(tmp_path)

    def call(*args) -> Finished:
        monkeypatch.setattr(sys, "argv", ["charlm", *map(str, args)])
        capsys.readouterr()
        try:
            run()
            code = 0
        except SystemExit as done:
            code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
        out = capsys.readouterr()
        return Finished(code, out.out, out.err)

    return call

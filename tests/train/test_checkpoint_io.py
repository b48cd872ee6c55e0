"""Checkpoints are written atomically: a kill -9 or a full disk mid-save leaves the previous file whole."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import AsyncCheckpointIO, TorchCheckpointIO

from charlm.train.checkpoint_io import AtomicCheckpointIO, _atomic_link_checkpoint, use_atomic_checkpoints
from datamodules.io.atomic_files import remove_stale_temp_files
from datamodules.io.atomic_files import temp_name as temp_path
from tests.cli_runs import checkpoint_dir, keeping_sigint, run_in, run_python, small_run, start_python, with_callback

# Saves {"version": v, "state_dict": 4 tensors filled with v} over the same file, v = 0, 1, 2, ...,
# printing v after each save; argv: path, MB per version, the CheckpointIO class ("module:Class").
SAVE_FOREVER = textwrap.dedent("""
    import importlib, itertools, sys, torch
    path, megabytes, (module, name) = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(":")
    io = getattr(importlib.import_module(module), name)()
    for version in itertools.count():
        n = megabytes * 2**20 // 4 // 4  # float32 elements per tensor
        state_dict = {f"w{i}": torch.full((n,), float(version)) for i in range(4)}
        io.save_checkpoint({"version": version, "state_dict": state_dict}, path)
        print(version, flush=True)
""")

# Saves over an existing checkpoint (argv[1]), on a disk that is full past a file size (disk_full_at).
SAVE_PAST_LIMIT = textwrap.dedent("""
    import sys, torch
    from charlm.train.checkpoint_io import AtomicCheckpointIO
    try:
        AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.ones(2**22)}}, sys.argv[1])  # 16 MB
    except OSError as err:
        print(err.errno, err.filename, err.strerror, sep="\\n")
""")


@pytest.fixture
def other_filesystem_tmpdir(tmp_path) -> Iterator[Path]:
    """A TMPDIR on another filesystem than tmp_path where there is one (/dev/shm), as on clusters."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and shm.stat().st_dev != tmp_path.stat().st_dev:
        folder = Path(tempfile.mkdtemp(dir=shm, prefix="charlm-test-"))
        yield folder
        shutil.rmtree(folder, ignore_errors=True)
    else:
        (tmp_path / "TMPDIR").mkdir()
        yield tmp_path / "TMPDIR"


def test_kill_9_mid_save_leaves_a_complete_checkpoint_and_the_next_save_removes_the_temp_file(
        tmp_path, other_filesystem_tmpdir):
    path = tmp_path / "ckpts" / "last.ckpt"
    writer = start_python("-c", SAVE_FOREVER, str(path), "128", "charlm.train.checkpoint_io:AtomicCheckpointIO",
                          stdout=subprocess.PIPE, text=True, env={"TMPDIR": str(other_filesystem_tmpdir)})
    try:
        assert writer.stdout.readline().strip() == "0"  # a first good save
        complete = path.stat().st_size
        tmp = temp_path(path, writer.pid)
        # wait until the next save is under way: a growing temp file (ours) or a shrunken last.ckpt
        # (Lightning's copy from a TMPDIR on another filesystem)
        deadline = time.monotonic() + 120
        while not ((tmp.exists() and tmp.stat().st_size > 2**20) or path.stat().st_size < complete):
            assert writer.poll() is None, "the writer died on its own"
            assert time.monotonic() < deadline, "no save got under way within 120 s"
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()
    finally:
        writer.kill()
        writer.wait()
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["version"] in (0, 1)  # the last complete version
    for tensor in ckpt["state_dict"].values():
        assert tensor.numel() == 128 * 2**20 // 16 and bool((tensor == ckpt["version"]).all())
    assert tmp.exists(), "killed between saves, not during one: nothing was tested"
    assert list(other_filesystem_tmpdir.iterdir()) == []

    # the killed writer's temp file goes at the next save into that folder; the checkpoint stays
    before = path.read_bytes()
    AtomicCheckpointIO().save_checkpoint({"other": 1}, path.with_name("other.ckpt"))
    assert not tmp.exists()
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt", "other.ckpt"]


def test_a_temp_file_of_a_live_process_or_another_host_is_kept(tmp_path):
    alive = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        theirs = temp_path(tmp_path / "last.ckpt", alive.pid)
        elsewhere = tmp_path / ".last.ckpt.1@some-other-node.tmp"
        theirs.write_bytes(b"partial")
        elsewhere.write_bytes(b"partial")
        assert remove_stale_temp_files(tmp_path) == []
    finally:
        alive.communicate(b"")
    assert remove_stale_temp_files(tmp_path) == [theirs]  # its writer is gone now
    assert elsewhere.exists()


def test_a_full_disk_leaves_the_previous_checkpoint_byte_identical(tmp_path):
    path = tmp_path / "best.ckpt"
    AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.arange(1000.0)}}, path)
    before = path.read_bytes()
    done = run_python("-c", SAVE_PAST_LIMIT, str(path), disk_full_at=4 * 2**20)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines() == [str(errno.EFBIG), str(path),
                                        "File too large; the previous best.ckpt is unchanged"]
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["best.ckpt"]  # no temp file left


_file_events: dict[str, list] | None = None  # filled by the audit hook while a test listens


def _audit(event: str, args: tuple) -> None:
    # see Python's audit events table: open() gives (path, mode, flags), os.open() (path, None, flags);
    # os.rename() and os.replace() both give "os.rename" (src, dst, src_dir_fd, dst_dir_fd)
    if _file_events is None:
        return
    if event == "open" and isinstance(args[0], (str, os.PathLike)):
        mode, flags = args[1], args[2]
        if (mode and any(c in mode for c in "wax+")) or (mode is None and flags & (os.O_WRONLY | os.O_RDWR)):
            _file_events["written"].append(Path(os.fsdecode(args[0])).absolute())
    elif event == "os.rename":
        _file_events["renamed"].append(tuple(Path(os.fsdecode(p)).absolute() for p in args[:2]))
    elif event == "os.remove":
        _file_events["removed"].append(Path(os.fsdecode(args[0])).absolute())


@pytest.fixture
def file_events():
    """The files this process opens for writing ("written"), renames ("renamed": (src, dst)) and
    removes ("removed") during the test: an audit hook sees the real calls, nothing is mocked."""
    global _file_events
    if not getattr(sys, "_charlm_file_audit", False):
        sys.addaudithook(_audit)  # hooks cannot be removed: one, installed once, idle when no test listens
        sys._charlm_file_audit = True
    _file_events = {"written": [], "renamed": [], "removed": []}
    try:
        yield _file_events
    finally:
        _file_events = None


def test_every_checkpoint_of_a_fit_is_written_atomically_and_never_in_tmpdir(tmp_path, shakespeare_path, monkeypatch,
                                                                             file_events):
    tmpdir = tmp_path / "TMPDIR"
    tmpdir.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmpdir))
    monkeypatch.setattr(tempfile, "tempdir", str(tmpdir))  # where Lightning/fsspec put their temp files
    record = tmp_path / "io.json"
    args = ["--trainer.max_steps", "8", "--trainer.val_check_interval", "3", "--trainer.limit_val_batches", "2",
            *with_callback("tests.helpers.RecordCheckpointIO", path=record)]
    linked = tmp_path / "linked"  # a second ModelCheckpoint whose last.ckpt is a link to its best
    cli = run_in(tmp_path / "fit", small_run(shakespeare_path, *args, *with_callback(
        "lightning.pytorch.callbacks.ModelCheckpoint", dirpath=linked, save_last="link")))  # the latest, no monitor
    folder = checkpoint_dir(tmp_path / "fit", cli).absolute()
    seen = json.loads(record.read_text())
    assert seen["class"] == "AtomicCheckpointIO"
    written = {p.name for p in folder.iterdir()}
    assert "last.ckpt" in written and any(name.startswith("best-") for name in written)
    assert written <= {Path(p).name for p in seen["saved"]}

    # Ctrl-C: interrupted.ckpt goes through it too (InterruptAt raises KeyboardInterrupt at step 5)
    with keeping_sigint(), pytest.raises(SystemExit):
        run_in(tmp_path / "cut",
               small_run(shakespeare_path, *args, *with_callback("tests.helpers.InterruptAt", step=5)))
    interrupted = next((tmp_path / "cut").rglob("interrupted.ckpt"))
    assert interrupted.name in {Path(p).name for p in json.loads(record.read_text())["saved"]}
    assert torch.load(interrupted, weights_only=True)["global_step"] == 5

    # each checkpoint came from a temp file in its own folder (Lightning's came from TMPDIR), never
    # written under its final name; nothing was written in TMPDIR itself (W&B uses folders in it)
    ckpts = [p.absolute() for p in [*folder.iterdir(), interrupted]]
    for ckpt in ckpts:
        sources = [src for src, dst in file_events["renamed"] if dst == ckpt]
        assert sources, ckpt
        assert all(src.parent == ckpt.parent and src.name.endswith(".tmp") for src in sources), (ckpt, sources)
        assert ckpt not in file_events["written"]
    assert [p for p in file_events["written"] if p.parent == tmpdir] == []

    # save_last="link": last.ckpt is re-pointed by renaming a new link over it, never deleted first
    last = (linked / "last.ckpt").absolute()
    assert last.is_symlink() and last.resolve().parent == last.parent and last.resolve().is_file()
    assert last not in file_events["removed"]
    assert [src.parent for src, dst in file_events["renamed"] if dst == last] == [last.parent] * 2  # two validations


class OwnCheckpointIO(TorchCheckpointIO):
    """A user's own way of storing checkpoints."""


@pytest.mark.parametrize(("plugins", "expected"), [
    (None, "AtomicCheckpointIO"),
    ([TorchCheckpointIO()], "AtomicCheckpointIO"),
    ([AsyncCheckpointIO()], "AsyncCheckpointIO(AtomicCheckpointIO)"),  # saves in a thread, through ours
    ([OwnCheckpointIO()], "OwnCheckpointIO"),  # the user's choice is kept (with a warning)
])
def test_the_default_checkpoint_io_is_replaced_wherever_it_sits(plugins, expected, tmp_path):
    trainer = L.Trainer(plugins=plugins, accelerator="cpu", logger=False, default_root_dir=tmp_path,
                        callbacks=[ModelCheckpoint(dirpath=tmp_path, save_last="link")])
    if expected == "OwnCheckpointIO":
        with pytest.warns(UserWarning, match="checkpoints are saved by your OwnCheckpointIO, not atomically"):
            use_atomic_checkpoints(trainer)
    else:
        use_atomic_checkpoints(trainer)
    io = trainer.strategy.checkpoint_io
    inner = getattr(io, "checkpoint_io", None)
    assert (f"{type(io).__name__}({type(inner).__name__})" if inner else type(io).__name__) == expected
    assert trainer.checkpoint_callback._link_checkpoint is _atomic_link_checkpoint


def test_a_failed_interrupted_checkpoint_is_reported_and_ctrl_c_still_ends_the_run(tmp_path):
    from lightning.pytorch.demos.boring_classes import BoringModel

    from charlm.callbacks import InterruptCheckpoint
    from tests.helpers import InterruptAt

    (tmp_path / "blocker").write_text("a file where the checkpoint's folder would go")
    trainer = L.Trainer(default_root_dir=tmp_path, max_steps=5, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[InterruptCheckpoint(filename="blocker/interrupted"), InterruptAt(step=2)])
    use_atomic_checkpoints(trainer)
    with (keeping_sigint(), pytest.warns(UserWarning, match=r"charlm: could not save .*blocker/interrupted\.ckpt"),
          pytest.raises(SystemExit)):  # Lightning's end of a Ctrl-C, not the OSError of the save
        trainer.fit(BoringModel())

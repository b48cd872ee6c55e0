"""The prepared-data cache against damage, full disks, killed runs and parallel runs, all for real:
bytes changed on disk, a file size limit (RLIMIT_FSIZE) in a subprocess, processes killed by the
kernel mid-write, and two processes started together."""

from __future__ import annotations

import io
import json
import multiprocessing
import re
import signal
import subprocess
import sys
import tarfile
import zlib
from pathlib import Path

import pytest

from datamodules import LinuxDataModule, TextDataModule
from datamodules.io.atomic_files import temp_name
from datamodules.io.prepare import META, TOKENS, VOCAB, is_prepared, load_tokens, prepared_problem
from datamodules.io.vocab import Vocabulary
from tests.cli_runs import run_python, start_python
from tests.datamodules.workers import prepare_tarball_at_once

TEXT = b"".join(b"Line %d: the quick brown fox jumps over the lazy dog.\n" % i for i in range(4000))  # 220 KB
SMALL = {"batch_size": 2, "seq_len": 16, "eval_batch_size": 2}


def text_module(tmp_path: Path, name: str = "corpus.txt", data: bytes = TEXT) -> TextDataModule:
    """A module on ``tmp_path/name`` (written once: the cache key changes with the file's mtime)."""
    if not (tmp_path / name).exists():
        (tmp_path / name).write_bytes(data)
    return TextDataModule(path=str(tmp_path / name), cache_dir=str(tmp_path / "cache"), **SMALL)


def corpus_bytes(dm) -> bytes:
    dm.setup("fit")
    return b"".join(dm.vocab.decode(split.tolist()) for split in dm.splits.values())


def kernel_tarball(path: Path, files: int = 8, size: int = 40_000) -> Path:
    with tarfile.open(path, "w") as archive:
        for i in range(files):
            data = (b"int f%d(void) { return %d; }\n" % (i, i)) * (size // 30)
            info = tarfile.TarInfo(f"linux/kernel/f{i}.c")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def leftovers(cache: Path) -> list[Path]:
    return [p for p in cache.rglob("*") if p.name.endswith(".tmp") or p.name.startswith(".spool-")]


# --- damage on disk is found by the checksums in meta.json, and the folder is prepared again -------
def zero_tokens(folder: Path) -> None:
    with open(folder / TOKENS, "r+b") as f:
        f.seek(1000)
        f.write(bytes(100_000))


def ff_tokens(folder: Path) -> None:
    with open(folder / TOKENS, "r+b") as f:
        f.seek(5000)
        f.write(b"\xff" * 64)


def break_vocab(folder: Path) -> None:
    (folder / VOCAB).write_text((folder / VOCAB).read_text().replace(",", " ", 1))  # "Expecting ',' delimiter"


def old_meta(folder: Path) -> None:  # as charlm wrote it before the checksums
    meta = json.loads((folder / META).read_text())
    (folder / META).write_text(json.dumps({k: meta[k] for k in ("source", "num_tokens", "vocab_size")}))


@pytest.mark.parametrize(("damage", "reason"), [
    (zero_tokens, "tokens.u8 that does not match its checksum"),
    (ff_tokens, "tokens.u8 that does not match its checksum"),
    (break_vocab, "vocab.json that does not match its checksum"),
    (old_meta, "prepared by an older charlm"),
])
def test_damaged_preparation_is_redone_saying_why(tmp_path, capsys, damage, reason):
    dm = text_module(tmp_path)
    dm.prepare_data()
    damage(dm.prepared_dir)
    assert not is_prepared(dm.prepared_dir)
    capsys.readouterr()
    assert corpus_bytes(text_module(tmp_path)) == TEXT  # a fresh module, as the next run
    notes = re.findall(r"charlm: .*preparing it again\.", capsys.readouterr().err)
    assert len(notes) == 1 and str(dm.prepared_dir) in notes[0] and reason in notes[0]


def test_token_ids_outside_the_vocabulary_never_load(tmp_path):
    """Even with a checksum that matches (forged here), an id >= vocab size is refused by name."""
    dm = text_module(tmp_path)
    dm.prepare_data()
    folder = dm.prepared_dir
    ff_tokens(folder)
    meta = json.loads((folder / META).read_text())
    meta["tokens_crc32"] = zlib.crc32((folder / TOKENS).read_bytes())
    (folder / META).write_text(json.dumps(meta))
    assert prepared_problem(folder) == f"holds token id 255, outside its {meta['vocab_size']}-symbol vocabulary"
    with pytest.raises(FileNotFoundError, match=r"outside its .*-symbol vocabulary"):
        load_tokens(folder)


def test_broken_vocab_file_names_itself(tmp_path):
    (tmp_path / "vocab.json").write_text('{"symbols": [10 32]}')
    with pytest.raises(ValueError, match=f"{tmp_path / 'vocab.json'} is not a readable vocabulary"):
        Vocabulary.load(tmp_path / "vocab.json")


# --- disk full: a clear error, nothing half-written, an earlier preparation untouched -------------
# The subprocesses call what the data modules' prepare_data() calls (without importing Lightning)
# on the folders those modules name, on a disk full past 100 KB per file (disk_full_at).
DISK_FULL = """
import sys
from pathlib import Path
from datamodules.common.errors import CacheWriteError
from datamodules.io.prepare import file_chunks, prepare
from datamodules.sources.files import prepare_tarball
text, text_folder, tarball, tar_folder = map(Path, sys.argv[1:])
for run in (lambda: prepare(text_folder, file_chunks(text), str(text)),
            lambda: prepare_tarball(tar_folder, tarball, [".c", ".h"])):
    try:
        run()
        print("prepared")
    except CacheWriteError as err:
        print("CacheWriteError:", err)
"""


def test_disk_full_while_preparing(tmp_path):
    good = text_module(tmp_path, "small.txt", TEXT[:30_000])
    good.prepare_data()
    before = {p.name: p.read_bytes() for p in good.prepared_dir.iterdir() if p.is_file()}
    big = text_module(tmp_path, "big.txt")
    tarball = kernel_tarball(tmp_path / "linux.tar")
    linux = LinuxDataModule(path=str(tarball), cache_dir=str(tmp_path / "cache"))
    args = [tmp_path / "big.txt", big.prepared_dir, tarball, linux.prepared_dir]
    out = run_python("-c", DISK_FULL, *map(str, args), disk_full_at=100_000, timeout=120)
    errors = [line for line in out.stdout.splitlines() if line.startswith("CacheWriteError:")]
    assert len(errors) == 2, out.stdout + out.stderr
    for line in errors:
        assert str(tmp_path / "cache" / "prepared") in line and "File too large" in line
        assert "Free some space" in line and "--data.cache_dir or $CHARLM_CACHE" in line
    assert ".spool-" in errors[1]  # the tarball's members did not fit in the spool
    assert leftovers(tmp_path / "cache") == []
    assert [p.parent for p in (tmp_path / "cache").rglob(META)] == [good.prepared_dir]
    assert {p.name: p.read_bytes() for p in good.prepared_dir.iterdir() if p.is_file()} == before
    assert corpus_bytes(text_module(tmp_path, "small.txt")) == TEXT[:30_000]


# --- a run killed while preparing: the next preparation removes what it left ----------------------
KILLED = """
import signal, sys
from pathlib import Path
signal.signal(signal.SIGXFSZ, signal.SIG_DFL)  # Python ignores it; by default the kernel kills the process
from datamodules.io.prepare import file_chunks, prepare
from datamodules.sources.files import prepare_tarball
kind, path, folder = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
if kind == "text":
    prepare(folder, file_chunks(path), str(path))
else:
    prepare_tarball(folder, path, [".c", ".h"])
"""


@pytest.mark.parametrize("kind", ["text", "linux"])
def test_leftovers_of_a_killed_run_are_removed(tmp_path, kind):
    if kind == "text":
        dm = text_module(tmp_path)
    else:
        dm = LinuxDataModule(path=str(kernel_tarball(tmp_path / "linux.tar")), cache_dir=str(tmp_path / "cache"),
                             **SMALL)
    folder = dm.prepared_dir
    killed = start_python("-c", KILLED, kind, dm.corpus.source, str(folder), disk_full_at=100_000,  # killed past it
                          stderr=subprocess.PIPE, text=True)
    _, stderr = killed.communicate(timeout=120)
    assert killed.returncode == -signal.SIGXFSZ, stderr
    expected = f".spool-{killed.pid}-" if kind == "linux" else temp_name(folder / "tokens.u8", killed.pid).name
    left = leftovers(tmp_path / "cache")
    assert [p for p in left if p.name.startswith(expected)], left  # its pid is in the name

    live = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        keep = [temp_name(folder / "tokens.u8", live.pid), folder / ".tokens.u8.tmp",
                folder / f"notes.{killed.pid}.tmp", temp_name(folder.parent / "other" / "meta.json", live.pid)]
        stale = [temp_name(folder.parent / "other" / "vocab.json", killed.pid)]
        for p in keep + stale:
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(b"x")
        dm.prepare_data()
        assert is_prepared(folder)
        assert sorted(leftovers(tmp_path / "cache")) == sorted(keep)
    finally:
        live.communicate(b"")


# --- two runs on one tarball: one reads and prepares, the other waits and uses it -----------------
def test_parallel_runs_read_the_tarball_once(tmp_path):
    tarball = kernel_tarball(tmp_path / "linux.tar", files=40, size=200_000)  # 8 MB of sources
    folder = LinuxDataModule(path=str(tarball), cache_dir=str(tmp_path / "cache")).prepared_dir
    spawn = multiprocessing.get_context("spawn")
    barrier, results = spawn.Barrier(2), spawn.Queue()
    children = [spawn.Process(target=prepare_tarball_at_once, args=(folder, tarball, barrier, results))
                for _ in range(2)]
    for child in children:
        child.start()
    spooled = [results.get(timeout=120) for _ in children]
    for child in children:
        child.join(timeout=60)
    assert spooled.count(True) == 1 and spooled.count(False) == 1, spooled  # exactly one read the tarball
    assert [child.exitcode for child in children] == [0, 0]
    dm = LinuxDataModule(path=str(tarball), cache_dir=str(tmp_path / "cache"), **SMALL)
    with tarfile.open(tarball) as archive:
        assert len(corpus_bytes(dm)) == sum(m.size for m in archive.getmembers())

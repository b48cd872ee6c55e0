"""What users give the data modules by mistake: linked folders, sizes the corpus cannot serve, their
own file checked against the standard checksum."""

from __future__ import annotations

import os
import subprocess
import zipfile
from pathlib import Path

import pytest
import torch

from datamodules import Enwik8DataModule, LinuxDataModule, ShakespeareDataModule, TextDataModule
from datamodules.batches.streams import EvalStreams
from datamodules.io.fetch import ChecksumMismatchError
from datamodules.sources.files import expand_paths

SMALL = {"batch_size": 2, "seq_len": 16, "eval_batch_size": 2}


def corpus_bytes(dm) -> bytes:
    dm.setup("fit")
    return b"".join(dm.vocab.decode(split.tolist()) for split in dm.splits.values())


# --- item 5: every real file once, whatever links the folders hold ------------------------------
@pytest.fixture
def linked_tree(tmp_path: Path) -> Path:
    """d/a.txt, d/sub/b.txt, d/.hidden/h.txt, d/self -> . (a cycle), d/lib64 -> sub, d/hard.txt = a.txt."""
    d = tmp_path / "d"
    (d / "sub").mkdir(parents=True)
    (d / ".hidden").mkdir()
    (d / "a.txt").write_text("alpha\n" * 100)
    (d / "sub" / "b.txt").write_text("beta\n" * 100)
    (d / ".hidden" / "h.txt").write_text("hidden\n")
    (d / "self").symlink_to(".", target_is_directory=True)
    (d / "lib64").symlink_to("sub", target_is_directory=True)
    os.link(d / "a.txt", d / "hard.txt")
    return d


def test_glob_visits_each_real_file_once(linked_tree: Path):
    d = linked_tree
    assert expand_paths(f"{d}/**/*.txt").files == [d / "a.txt", d / "sub" / "b.txt"]
    assert expand_paths(f"{d}/**").files == [d / "a.txt", d / "sub" / "b.txt"]
    assert expand_paths(f"{d}/*/b.txt").files == [d / "lib64" / "b.txt"]  # one of the two names, once
    assert expand_paths(f"{d}/.*/*.txt").files == [d / ".hidden" / "h.txt"]  # a pattern with a dot matches dot names
    assert expand_paths(str(d)).files == [d / "a.txt", d / "sub" / "b.txt"]  # a hidden folder is not walked into...
    assert expand_paths(str(d), skip_folders=()).files == [d / ".hidden" / "h.txt", d / "a.txt", d / "sub" / "b.txt"]


def test_linked_folders_do_not_repeat_the_corpus(linked_tree: Path, tmp_path: Path):
    dm = TextDataModule(path=f"{linked_tree}/**/*.txt", cache_dir=str(tmp_path / "c"), **SMALL)
    assert corpus_bytes(dm) == b"alpha\n" * 100 + b"beta\n" * 100


# --- issue 20 item 11: a folder walk skips version control and caches, and says so -----------------
SOURCES = {"README.md": "# repo\n", "src/a.py": "def a():\n    return 1\n" * 50, "src/b.py": "B = 2\n" * 40}


@pytest.fixture
def git_repo(tmp_path: Path) -> Path:
    """A real git repository with its sources committed (git keeps text of its own under .git/: config, hooks,
    logs), a __pycache__ and a node_modules holding text too."""
    repo = tmp_path / "repo"
    for name, text in SOURCES.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    for args in (["init", "-q"], ["add", "."], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one"]):
        subprocess.run(["git", "-C", str(repo), *args], check=True, env=env, capture_output=True)
    (repo / "src" / "__pycache__").mkdir()
    (repo / "src" / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"\xa7\r\r\n\0\0\0\0" + b"code" * 100)
    (repo / "node_modules" / "pad").mkdir(parents=True)
    (repo / "node_modules" / "pad" / "index.js").write_text("module.exports = (s) => s;\n")
    return repo


def sources_text(repo: Path) -> bytes:
    return b"".join((repo / name).read_bytes() for name in sorted(SOURCES))  # in path order


def skip_notes(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if "skip_folders" in line]


def test_a_git_repository_trains_on_its_sources_not_on_git(git_repo: Path, tmp_path: Path, capsys):
    assert len([p for p in (git_repo / ".git").rglob("*") if p.is_file()]) > 10  # git's own files are there
    dm = TextDataModule(path=str(git_repo), cache_dir=str(tmp_path / "c"), **SMALL)
    assert corpus_bytes(dm) == sources_text(git_repo)
    notes = skip_notes(capsys)
    assert len(notes) == 1, notes
    note = notes[0]
    assert note.startswith(f"charlm: --data.path {git_repo}: skipped ") and " in 3 folders " in note
    assert ".git (" in note and "node_modules (1)" in note and "src/__pycache__ (1)" in note
    assert "--data.skip_folders '[]'" in note and "name such a folder itself as --data.path" in note
    # as the note says: all folders, or one named itself
    with pytest.warns(UserWarning, match="binary files"):  # git's index and objects, the .pyc
        everything = corpus_bytes(TextDataModule(path=str(git_repo), skip_folders=(), cache_dir=str(tmp_path / "c"),
                                                 **SMALL))
    assert b"[core]" in everything and b"module.exports" in everything and len(everything) > len(sources_text(git_repo))
    capsys.readouterr()
    with pytest.warns(UserWarning, match="binary files"):
        git_only = corpus_bytes(TextDataModule(path=str(git_repo / ".git"), cache_dir=str(tmp_path / "c"), **SMALL))
    assert b"[core]" in git_only and not skip_notes(capsys)


def test_a_glob_skips_them_too_unless_it_names_them(git_repo: Path, capsys):
    assert expand_paths(f"{git_repo}/**/*.js").files == []
    notes = skip_notes(capsys)
    assert expand_paths(f"{git_repo}/**/*.js").skipped == {git_repo / "node_modules": 1}
    assert expand_paths(f"{git_repo}/node_modules/**/*.js").files == [git_repo / "node_modules" / "pad" / "index.js"]
    assert expand_paths(f"{git_repo}/**/*.py").skipped == {}  # no .py file in them: nothing to say
    assert not notes  # expand_paths says nothing itself: its callers do, once


def test_a_linux_tree_skips_them_and_says_so(tmp_path: Path, capsys):
    tree = tmp_path / "linux"
    for name, text in {"kernel/fork.c": "int fork;\n", ".pc/old.c": "int old;\n", "include/a.h": "#define A\n"}.items():
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_text(text)
    dm = LinuxDataModule(path=str(tree), cache_dir=str(tmp_path / "c"), batch_size=1, seq_len=4, eval_batch_size=1,
                         val_fraction=0.1, test_fraction=0.1)
    dm.setup("fit")
    assert dm.vocab.decode(torch.cat(list(dm.splits.values())).tolist()) == b"#define A\nint fork;\n"
    notes = skip_notes(capsys)
    assert len(notes) == 1 and "skipped 1 file in 1 folder " in notes[0] and ".pc (1)" in notes[0], notes


# --- item 19: sizes are checked against the splits before anything is allocated -----------------
def test_seq_len_beyond_the_corpus_is_refused_in_setup(tmp_path: Path):
    (tmp_path / "c.txt").write_bytes(b"some text, a few kilobytes of it\n" * 300)  # 9,900 bytes
    dm = TextDataModule(path=str(tmp_path / "c.txt"), cache_dir=str(tmp_path / "c"), seq_len=20_000_000)
    with pytest.raises(ValueError, match=r"--data\.seq_len 20000000") as caught:
        dm.setup("fit")
    message = str(caught.value)
    assert "--data.seq_len 20000000" in message and "--data.batch_size 64" in message
    assert "9,900 bytes: train 8,910, val 495, test 495" in message and "\n" not in message
    assert not dm.splits  # refused before any stream was cut


def test_eval_streams_never_pad_past_the_split():
    tokens = torch.arange(1000, dtype=torch.uint8)
    streams = EvalStreams(tokens, num_streams=4, seq_len=20_000_000)
    assert streams.shape[0] * streams.shape[1] < 2 * len(tokens) and len(streams) == 1  # the padded grid batches tile
    assert streams.num_predictions == 999
    streams = EvalStreams(tokens, num_streams=4, seq_len=100)  # an ordinary window pads less than one window
    assert streams.shape == (4, 300) and streams.num_predictions == 999


def test_eval_batch_size_larger_than_the_validation_split_names_that_flag(tmp_path: Path):
    (tmp_path / "c.txt").write_bytes(b"x" * 2000)  # val and test: 100 bytes each
    dm = TextDataModule(path=str(tmp_path / "c.txt"), cache_dir=str(tmp_path / "c"), batch_size=1, seq_len=8,
                        eval_batch_size=500)
    with pytest.raises(ValueError, match=r"validation split \(100 bytes\).*Lower --data.eval_batch_size, or use a "
                                         r"corpus of at least 10,0\d\d bytes"):
        dm.setup("fit")


# --- item 20: a corpus too small says so; the user's own file is never "deleted" -----------------
@pytest.mark.parametrize("size", [1, 20])
def test_a_tiny_corpus_says_it_is_too_small(tmp_path: Path, size: int):
    (tmp_path / "tiny.txt").write_bytes(b"a" * size)
    dm = TextDataModule(path=str(tmp_path / "tiny.txt"), cache_dir=str(tmp_path / "c"))
    with pytest.raises(ValueError, match="too small") as caught:
        dm.setup("fit")
    message = str(caught.value)
    assert f"tiny.txt has only {size} byte" in message and "too small" in message
    assert "needs at least 30 bytes even with the smallest settings" in message
    assert "eval_batch_size" not in message


def test_own_zip_against_the_standard_checksum_is_not_deleted(tmp_path: Path):
    own = tmp_path / "my_own.zip"
    with zipfile.ZipFile(own, "w") as z:
        z.writestr("enwik8", b"my own wikipedia dump\n" * 1000)
    dm = Enwik8DataModule(path=str(own), cache_dir=str(tmp_path / "c"))  # the default sha256: the real enwik8
    with pytest.raises(ChecksumMismatchError) as caught:
        dm.prepare_data()
    message = str(caught.value)
    assert "not the standard enwik8" in message and "--data.sha256 null" in message
    assert "delete" not in message.lower() and own.is_file()
    Enwik8DataModule(path=str(own), sha256=None, cache_dir=str(tmp_path / "c"), **SMALL).prepare_data()  # as told


def test_shakespeare_local_copy_is_used_as_is(tmp_path: Path):
    (tmp_path / "input.txt").write_bytes(b"not shakespeare at all\n" * 200)
    dm = ShakespeareDataModule(path=str(tmp_path / "input.txt"), cache_dir=str(tmp_path / "c"), **SMALL)
    assert corpus_bytes(dm) == b"not shakespeare at all\n" * 200  # a local copy is not checked against the sha256


# --- file names that are not UTF-8 (a Latin-1 name from an old archive) --------------------------
def test_a_file_name_that_is_not_utf8_is_read(tmp_path: Path):
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / os.fsdecode(b"caf\xe9.txt")).write_bytes(b"latin-1 name\n" * 200)
    dm = TextDataModule(path=f"{folder}/*", cache_dir=str(tmp_path / "c"), **SMALL)
    assert corpus_bytes(dm) == b"latin-1 name\n" * 200


# --- a cache_dir that is (or lies under) a file -------------------------------------------------
def test_a_cache_dir_that_is_a_file_says_so(tmp_path: Path):
    (tmp_path / "c.txt").write_bytes(b"some text\n" * 500)
    (tmp_path / "afile").write_bytes(b"")
    dm = TextDataModule(path=str(tmp_path / "c.txt"), cache_dir=str(tmp_path / "afile"), **SMALL)
    with pytest.raises(Exception, match="is a file, not a folder") as caught:
        dm.prepare_data()
    message = str(caught.value)
    assert f"{tmp_path / 'afile'} is a file, not a folder" in message and "--data.cache_dir" in message
    assert "writable" not in message


# --- a binary file given as text: the message names a few bytes, not all 200 -----------------------
def test_unknown_bytes_are_named_briefly():
    from datamodules.io.vocab import Vocabulary

    vocab = Vocabulary(tuple(sorted(b"abc \n")))
    for data in (bytes(range(256)), "".join(map(chr, range(0x400, 0x500))).encode()):  # bytes / characters
        with pytest.raises(ValueError, match="more") as caught:
            vocab.encode(data)
        message = str(caught.value)
        assert len(message) < 400 and "more" in message, message

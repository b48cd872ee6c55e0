"""What users give the data modules by mistake: linked folders, sizes the corpus cannot serve, their
own file checked against the standard checksum."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import pytest
import torch

from datamodules import Enwik8DataModule, ShakespeareDataModule, TextDataModule
from datamodules.fetch import ChecksumMismatchError
from datamodules.sources import expand_paths
from datamodules.streams import EvalStreams

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
    assert expand_paths(f"{d}/**/*.txt") == [d / "a.txt", d / "sub" / "b.txt"]
    assert expand_paths(f"{d}/**") == [d / "a.txt", d / "sub" / "b.txt"]
    assert expand_paths(f"{d}/*/b.txt") == [d / "lib64" / "b.txt"]  # one of the two names, once
    assert expand_paths(f"{d}/.*/*.txt") == [d / ".hidden" / "h.txt"]  # a pattern with a dot matches dot names
    assert expand_paths(str(d)) == [d / ".hidden" / "h.txt", d / "a.txt", d / "sub" / "b.txt"]


def test_linked_folders_do_not_repeat_the_corpus(linked_tree: Path, tmp_path: Path):
    dm = TextDataModule(path=f"{linked_tree}/**/*.txt", cache_dir=str(tmp_path / "c"), **SMALL)
    assert corpus_bytes(dm) == b"alpha\n" * 100 + b"beta\n" * 100


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
    from datamodules.vocab import Vocabulary

    vocab = Vocabulary(tuple(sorted(b"abc \n")))
    for data in (bytes(range(256)), "".join(map(chr, range(0x400, 0x500))).encode()):  # bytes / characters
        with pytest.raises(ValueError, match="more") as caught:
            vocab.encode(data)
        message = str(caught.value)
        assert len(message) < 400 and "more" in message, message

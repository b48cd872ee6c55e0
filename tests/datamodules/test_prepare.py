import json

import numpy as np
import pytest

from datamodules.io.prepare import META, TOKENS, file_chunks, is_prepared, load_tokens, prepare
from datamodules.io.vocab import Vocabulary


def test_prepares_tokens_vocab_and_meta(tmp_path):
    text = b"hello world\n" * 1000
    (tmp_path / "in.txt").write_bytes(text)
    folder = tmp_path / "prepared"
    prepare(folder, file_chunks(tmp_path / "in.txt", chunk_size=777), "in.txt", len(text))
    assert is_prepared(folder)
    tokens, vocab = load_tokens(folder)
    assert vocab == Vocabulary.from_bytes(text)
    assert np.array_equal(tokens, vocab.encode(text))
    assert json.loads((folder / META).read_text())["num_tokens"] == len(text)


def test_interrupted_preparation_is_never_taken_as_valid(tmp_path):
    folder = tmp_path / "prepared"
    calls = {"n": 0}

    def flaky():
        calls["n"] += 1
        yield b"abc" * 100
        if calls["n"] == 2:  # dies half way through writing the token file
            raise KeyboardInterrupt
        yield b"def" * 100

    with pytest.raises(KeyboardInterrupt):
        prepare(folder, flaky, "flaky", None)
    assert not is_prepared(folder)
    assert not (folder / TOKENS).exists() and not list(folder.glob(".*.tmp"))
    with pytest.raises(FileNotFoundError, match="prepare_data"):
        load_tokens(folder)
    prepare(folder, flaky, "flaky", None)  # a later run starts over and succeeds
    tokens, vocab = load_tokens(folder)
    assert vocab.decode(tokens) == b"abc" * 100 + b"def" * 100


def test_truncated_token_file_is_not_valid(tmp_path):
    folder = tmp_path / "prepared"
    prepare(folder, lambda: [b"some text"], "x", None)
    with open(folder / TOKENS, "r+b") as f:
        f.truncate(4)
    assert not is_prepared(folder)


def test_empty_corpus_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match=r"empty\.txt is empty"):
        prepare(tmp_path / "p", list, "empty.txt", 0)

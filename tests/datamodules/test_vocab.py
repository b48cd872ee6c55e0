import numpy as np
import pytest

from datamodules.io.vocab import Vocabulary


def test_round_trip_of_utf8_text(tmp_path):
    text = "ROMEO: ¿Qué? naïve — 東京\n".encode()
    vocab = Vocabulary.from_bytes(text)
    ids = vocab.encode(text)
    assert ids.dtype == np.uint8 and ids.max() == len(vocab) - 1
    assert vocab.decode(ids) == text
    vocab.save(tmp_path / "vocab.json")
    assert Vocabulary.load(tmp_path / "vocab.json") == vocab


def test_symbols_are_sorted_bytes_that_occur():
    vocab = Vocabulary.from_bytes(b"cabbage")
    assert vocab.symbols == tuple(sorted(set(b"cabbage")))
    assert len(vocab) == 5  # a b c e g


def test_unknown_bytes_are_named():
    vocab = Vocabulary.from_bytes(b"abc")
    with pytest.raises(ValueError, match=r"characters 'z' \(0x7a\), which"):
        vocab.encode(b"abz")
    with pytest.raises(ValueError, match=r"'€' \(U\+20AC, bytes e2 82 ac\)"):
        vocab.encode("ab€".encode())
    with pytest.raises(ValueError, match=r"bytes 0xff"):
        vocab.encode(b"ab\xff")
    assert vocab.missing_bytes(b"a\nz") == [0x0A, 0x7A]


def test_invalid_symbols_rejected():
    with pytest.raises(ValueError, match="empty"):
        Vocabulary(())
    with pytest.raises(ValueError, match="ascending"):
        Vocabulary((3, 1))


def test_the_lookup_table_is_built_once_and_read_only():
    vocab = Vocabulary.from_bytes(b"abc\n")
    table = vocab.byte_to_id
    assert vocab.byte_to_id is table and table[ord("a")] == 1 and table[ord("x")] == -1
    with pytest.raises(ValueError, match="read-only"):
        table[ord("x")] = 0  # every caller shares it: one that wrote into it would change the others' ids

"""Byte-level vocabulary: the bytes that occur in a corpus, numbered in ascending byte order.

Token id ``i`` stands for byte ``symbols[i]``. Tiny Shakespeare has 65 symbols, enwik8 205. Every
id fits in a uint8, so prepared corpora are one byte per token.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Literal

import numpy as np

from datamodules.io.cache_files import atomic_write


@dataclass(frozen=True)
class Vocabulary:
    """The byte values of a corpus; token id = index into ``symbols``."""

    symbols: tuple[int, ...]

    def __post_init__(self) -> None:
        symbols = tuple(int(s) for s in self.symbols)
        if not symbols:
            raise ValueError("A vocabulary needs at least one symbol; the corpus is empty.")
        if any(not 0 <= s <= 255 for s in symbols) or list(symbols) != sorted(set(symbols)):
            raise ValueError(f"Vocabulary symbols must be distinct byte values 0..255 in ascending order, "
                             f"got {symbols}")
        object.__setattr__(self, "symbols", symbols)

    @classmethod
    def from_byte_counts(cls, counts: np.ndarray) -> Vocabulary:
        """The vocabulary of the bytes whose count is non-zero; ``counts`` has shape (256,)."""
        return cls(tuple(int(b) for b in np.flatnonzero(counts)))

    @classmethod
    def from_bytes(cls, data: bytes) -> Vocabulary:
        return cls.from_byte_counts(np.bincount(np.frombuffer(data, dtype=np.uint8), minlength=256))

    def __len__(self) -> int:
        return len(self.symbols)

    @cached_property  # built once per vocabulary (read-only), not at every lookup
    def byte_to_id(self) -> np.ndarray:
        """Lookup table of shape (256,): token id of each byte, -1 for bytes outside the vocabulary."""
        table = np.full(256, -1, dtype=np.int16)
        table[list(self.symbols)] = np.arange(len(self.symbols), dtype=np.int16)
        table.flags.writeable = False
        return table

    def missing_bytes(self, data: bytes) -> list[int]:
        """The distinct byte values of ``data`` that this vocabulary lacks, ascending."""
        present = np.flatnonzero(np.bincount(np.frombuffer(data, dtype=np.uint8), minlength=256))
        return present[self.byte_to_id[present] < 0].tolist()

    def describe_missing(self, data: bytes) -> str:
        """Name what ``data`` holds outside the vocabulary: characters if it is UTF-8, else bytes."""
        missing = set(self.missing_bytes(data))
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return "the bytes " + _first_few([describe_byte(b) for b in sorted(missing)])
        chars = dict.fromkeys(c for c in text if missing.intersection(c.encode()))
        return "the characters " + _first_few([
            f"{c!r} (U+{ord(c):04X}, bytes {c.encode().hex(' ')})" if ord(c) > 127 else describe_byte(ord(c))
            for c in chars
        ])

    def encode(self, data: bytes) -> np.ndarray:
        """Bytes -> uint8 token ids of shape (len(data),). Raises ValueError naming unknown bytes."""
        ids = self.byte_to_id[np.frombuffer(data, dtype=np.uint8)]
        if len(ids) and ids.min() < 0:
            raise ValueError(
                f"The text contains {self.describe_missing(data)}, which the model's vocabulary lacks "
                f"(it never saw them in training). Known symbols: {self.printable()}"
            )
        return ids.astype(np.uint8)

    def decode(self, ids: Iterable[int]) -> bytes:
        """Token ids -> the bytes they stand for."""
        return bytes(self.symbols[int(i)] for i in ids)

    def printable(self) -> str:
        """All symbols as one readable string (control bytes escaped), for error messages."""
        return "".join(describe_byte(s) if s < 32 or s > 126 else chr(s) for s in self.symbols)

    def to_json(self) -> str:
        return json.dumps({"symbols": list(self.symbols)})

    @classmethod
    def from_json(cls, text: str) -> Vocabulary:
        """Parse ``{"symbols": [...]}``; any malformed text is a ValueError."""
        try:
            return cls(tuple(json.loads(text)["symbols"]))
        except (KeyError, TypeError) as err:
            raise ValueError(f"not a vocabulary: {type(err).__name__}: {err}") from None

    def save(self, path: Path) -> None:
        """Write ``vocab.json`` atomically (temp file, fsync, rename; the temp file never stays behind)."""
        atomic_write(Path(path), self.to_json().encode())

    @classmethod
    def load(cls, path: Path) -> Vocabulary:
        """Read a ``vocab.json``; a damaged one is a ValueError naming the file."""
        try:
            return cls.from_json(Path(path).read_bytes().decode())
        except ValueError as err:  # also JSONDecodeError, UnicodeDecodeError
            raise ValueError(f"{path} is not a readable vocabulary ({err}); delete it and run again.") from None


def skip_unknown(data: bytes, vocabs: Mapping[str, Vocabulary]) -> tuple[bytes, dict[str, Vocabulary]]:
    """``data`` without every byte that any of ``vocabs`` lacks (so all models read the same bytes),
    and the vocabularies, by name, that lacked some (empty: ``data`` is returned as it is)."""
    missing = {name: vocab for name, vocab in vocabs.items() if vocab.missing_bytes(data)}
    if not missing:
        return data, {}
    known = np.logical_and.reduce([vocab.byte_to_id >= 0 for vocab in missing.values()])  # (256,): in every one
    array = np.frombuffer(data, dtype=np.uint8)
    return array[known[array]].tobytes(), missing  # one table lookup: a 1 MB text takes milliseconds


def drop_unknown(data: bytes, vocabs: Mapping[str, Vocabulary], unknown: Literal["error", "skip"]) -> bytes:
    """Apply the ``--unknown`` policy to the bytes of ``data`` that some vocabulary lacks.

    ``vocabs`` maps a name the user knows (the checkpoint's path, or its flag) to that model's
    vocabulary. ``error`` refuses the text, naming the first model and the bytes it never saw;
    ``skip`` removes every byte that any of them lacks, so that all models read the same bytes,
    and says on stderr how many went.
    """
    kept, missing = skip_unknown(data, vocabs)
    if not missing:
        return data
    if unknown == "error":
        name, vocab = next(iter(missing.items()))
        raise ValueError(f"{name}: the text contains {vocab.describe_missing(data)}, which this model never saw; "
                         f"use --unknown skip to leave them out.")
    print(f"note: skipped {len(data) - len(kept)} bytes ({len(set(data) - set(kept))} distinct values) that "
          f"{', '.join(missing)} never saw", file=sys.stderr)
    if len(kept) < 2:
        raise ValueError("Nothing is left after skipping the unknown bytes.")
    return kept


def _first_few(names: list[str], shown: int = 8) -> str:
    """'a, b, c' or, for a binary file's hundreds, 'a, b, ... and 192 more' (one readable line)."""
    if len(names) <= shown:
        return ", ".join(names)
    return ", ".join(names[:shown]) + f", ... and {len(names) - shown} more"


def describe_byte(b: int) -> str:
    """A byte as a reader wants it named: ``'a' (0x61)`` if printable ASCII, else ``0x0a``."""
    return f"{chr(b)!r} (0x{b:02x})" if 32 <= b <= 126 else f"0x{b:02x}"

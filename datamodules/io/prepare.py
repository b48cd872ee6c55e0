"""Turning a corpus into a cached uint8 token file plus ``vocab.json``, once, atomically.

A prepared folder holds ``tokens.u8`` (one token id per byte of the corpus), ``vocab.json`` and,
written last, ``meta.json``, which records the token count and a CRC-32 of each of the other two.
The folder counts as prepared only when both files match what ``meta.json`` says and every token
id lies inside the vocabulary, so a preparation killed half way (Ctrl-C, disk full, power loss)
or a file damaged on disk later is never trained on: the next run prepares it again, saying why.
The check reads the token file once per process (0.06-0.09 s per 100 MB: docs/benchmarks.md). Two passes
stream over the source in chunks (count bytes, then map them to ids), so a corpus larger than RAM
is never loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
from tqdm.auto import tqdm

from datamodules.common.errors import DISK_FULL, ChecksumMismatchError, cache_write_error
from datamodules.io.atomic_files import atomic_replace
from datamodules.io.cache_files import atomic_write, folder_lock, sweep_cache_folders
from datamodules.io.vocab import Vocabulary

TOKENS = "tokens.u8"
VOCAB = "vocab.json"
META = "meta.json"
FORMAT = 2  # 2: meta.json holds CRC-32s of tokens.u8 and vocab.json (1 had only the token count)
_READ = 16 << 20

ChunkSource = Callable[[], Iterable[bytes]]
"""A function that, each time it is called, streams the corpus again as byte chunks."""

# folders this process has verified, with the files' stat signature then: a folder is read in full
# once per process, not at every is_prepared() (prepare_data, setup, vocab and load_tokens all ask)
_verified: dict[Path, tuple] = {}


def _signature(folder: Path) -> tuple:
    stats = [os.stat(folder / name) for name in (TOKENS, VOCAB, META)]
    return tuple((s.st_ino, s.st_size, s.st_mtime_ns, s.st_ctime_ns) for s in stats)


def scan_tokens(path: Path) -> tuple[int, int]:
    """(CRC-32, largest byte) of a token file, read in 16 MB blocks."""
    crc, largest = 0, 0
    buffer = bytearray(_READ)
    with open(path, "rb") as f:
        while n := f.readinto(buffer):
            block = memoryview(buffer)[:n]
            crc = zlib.crc32(block, crc)
            largest = max(largest, int(np.frombuffer(block, dtype=np.uint8).max()))
    return crc, largest


def prepared_problem(folder: Path) -> str | None:
    """None if ``folder`` holds a complete, intact preparation; else what is wrong with it."""
    try:
        signature = _signature(folder)
    except OSError:
        return "is not prepared"
    if _verified.get(folder.resolve()) == signature:
        return None
    try:
        meta = json.loads((folder / META).read_text())
        vocab_bytes = (folder / VOCAB).read_bytes()
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return f"has an unreadable {META}"
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        return "was prepared by an older charlm, without checksums"
    if os.stat(folder / TOKENS).st_size != meta.get("num_tokens"):
        return f"has a {TOKENS} of the wrong size (not {meta.get('num_tokens')} bytes)"
    if zlib.crc32(vocab_bytes) != meta.get("vocab_crc32"):
        return f"has a {VOCAB} that does not match its checksum in {META} (changed or damaged on disk)"
    try:
        vocab_size = len(Vocabulary.from_json(vocab_bytes.decode()))
    except ValueError:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return f"has an unreadable {VOCAB}"
    if vocab_size != meta.get("vocab_size"):
        return f"has a {VOCAB} of {vocab_size} symbols where {META} says {meta.get('vocab_size')}"
    crc, largest = scan_tokens(folder / TOKENS)
    if crc != meta.get("tokens_crc32"):
        return f"has a {TOKENS} that does not match its checksum in {META} (changed or damaged on disk)"
    if largest >= vocab_size:
        # only reachable if a bug wrote it or the checksum was forged: never let such an id reach the model
        return f"holds token id {largest}, outside its {vocab_size}-symbol vocabulary"
    _verified[folder.resolve()] = signature
    return None


def is_prepared(folder: Path) -> bool:
    """Whether ``folder`` holds a complete, intact preparation (see ``prepared_problem``)."""
    return prepared_problem(folder) is None


def prepare(
    folder: Path,
    chunks: ChunkSource,
    source: str,
    total_bytes: int | None = None,
    sha256: str | None = None,
    mismatch_hint: str = "Check where it came from.",
) -> None:
    """Prepare ``folder`` from the byte chunks ``chunks()`` yields, unless it already is prepared.

    Args:
        folder: where ``tokens.u8``, ``vocab.json`` and ``meta.json`` go.
        chunks: streams the corpus as byte chunks; called twice (count, then encode).
        source: what the corpus is (a path or URL), for messages and ``meta.json``.
        total_bytes: the corpus size if known, for the progress bars.
        sha256: if given, the corpus bytes must hash to this, or nothing is written.
        mismatch_hint: what the user should do when the sha256 differs (the end of the message).
    """
    with folder_lock(folder):
        if not start_preparing(folder):
            return
        counts = np.zeros(256, dtype=np.int64)
        digest = hashlib.sha256()
        with tqdm(total=total_bytes, unit="B", unit_scale=True, desc="Counting bytes") as bar:
            for chunk in chunks():
                counts += byte_counts(chunk)
                if sha256 is not None:
                    digest.update(chunk)
                bar.update(len(chunk))
        if sha256 is not None and digest.hexdigest() != sha256:
            raise ChecksumMismatchError(
                f"The corpus {source} has sha256 {digest.hexdigest()}, but {sha256} was expected; "
                f"it was not used." + (f" {mismatch_hint}" if mismatch_hint else "")
            )
        num_tokens = int(counts.sum())
        if num_tokens == 0:
            raise ValueError(f"The corpus {source} is empty: there is nothing to train on. Check the file or folder.")
        vocab = Vocabulary.from_byte_counts(counts)
        table = vocab.byte_to_id.astype(np.uint8)  # every byte of the corpus is in the vocabulary

        tokens_crc = _write_tokens(folder, chunks, table, num_tokens, source)
        finish_preparing(folder, vocab, num_tokens, tokens_crc, source)


def start_preparing(folder: Path) -> bool:
    """Under ``folder``'s lock: False if it is prepared already; else clear it for a new preparation
    (saying why, if a broken one was there) and return True."""
    problem = prepared_problem(folder)
    if problem is None:
        return False
    if (folder / META).exists():
        print(f"charlm: the prepared corpus in {folder} {problem}; preparing it again.", file=sys.stderr)
    sweep_cache_folders(folder)
    for stale in (META, TOKENS, VOCAB):  # META first: the folder stops counting as prepared at once
        (folder / stale).unlink(missing_ok=True)
    return True


def finish_preparing(folder: Path, vocab: Vocabulary, num_tokens: int, tokens_crc: int, source: str) -> None:
    """Under ``folder``'s lock, once ``tokens.u8`` is in place: write ``vocab.json``, then ``meta.json``,
    which marks the folder complete."""
    vocab_bytes = vocab.to_json().encode()
    atomic_write(folder / VOCAB, vocab_bytes)
    meta = {"format": FORMAT, "source": source, "num_tokens": num_tokens, "vocab_size": len(vocab),
            "tokens_crc32": tokens_crc, "vocab_crc32": zlib.crc32(vocab_bytes)}
    atomic_write(folder / META, json.dumps(meta, indent=2).encode())  # last: marks the folder complete
    _verified[folder.resolve()] = _signature(folder)  # what was just written needs no second read


def _write_tokens(folder: Path, chunks: ChunkSource, table: np.ndarray, num_tokens: int, source: str) -> int:
    """Encode the corpus into ``tokens.u8`` (atomically: temp file, fsync, rename); return its CRC-32."""
    crc = 0

    def encode(out: BinaryIO) -> None:
        nonlocal crc
        with tqdm(total=num_tokens, unit="B", unit_scale=True, desc="Encoding") as bar:
            for chunk in chunks():
                ids = table[np.frombuffer(chunk, dtype=np.uint8)].tobytes()
                crc = zlib.crc32(ids, crc)
                out.write(ids)
                bar.update(len(chunk))
        if out.tell() != num_tokens:
            raise RuntimeError(f"The corpus {source} changed while it was being prepared; run again.")

    write_tokens_file(folder, encode)
    return crc


def write_tokens_file(folder: Path, write: Callable[[BinaryIO], None], readable: bool = False) -> None:
    """``folder``'s ``tokens.u8`` replaced by what ``write(file)`` writes (datamodules.io.atomic_files; ``readable``:
    it reads back what it wrote). A full disk or an unwritable folder is a CacheWriteError naming the file; other
    errors (reading the source inside ``write``) pass unchanged."""
    try:
        atomic_replace(folder / TOKENS, write, readable=readable)
    except OSError as err:
        if isinstance(err, PermissionError) or err.errno in DISK_FULL:
            raise cache_write_error(folder / TOKENS, err) from None
        raise


def byte_counts(chunk: bytes, block: int = 1 << 20) -> np.ndarray:
    """How often each byte value occurs, shape (256,); in blocks, since bincount widens its input
    to int64 (a 16 MB chunk would cost 128 MB at once)."""
    data = np.frombuffer(chunk, dtype=np.uint8)
    counts = np.zeros(256, dtype=np.int64)
    for start in range(0, len(data), block):
        counts += np.bincount(data[start : start + block], minlength=256)
    return counts


def file_chunks(path: Path, chunk_size: int = 16 << 20) -> ChunkSource:
    """A ChunkSource reading one file in chunks of ``chunk_size`` bytes."""

    def read() -> Iterator[bytes]:
        with open(path, "rb") as f:
            while chunk := f.read(chunk_size):
                yield chunk

    return read


def load_tokens(folder: Path) -> tuple[np.memmap, Vocabulary]:
    """Memory-map a prepared folder's tokens (shape (N,), uint8) and load its vocabulary."""
    problem = prepared_problem(folder)
    if problem is not None:
        raise FileNotFoundError(f"{folder} {problem}: it holds no usable prepared corpus; call the data "
                                f"module's prepare_data() first.")
    # mode "c": copy-on-write, so torch.from_numpy gets a writable view without touching the file
    return np.memmap(folder / TOKENS, dtype=np.uint8, mode="c"), Vocabulary.load(folder / VOCAB)

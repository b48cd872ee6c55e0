"""Turning a corpus into a cached uint8 token file plus ``vocab.json``, once, atomically.

A prepared folder holds ``tokens.u8`` (one token id per byte of the corpus), ``vocab.json`` and,
written last, ``meta.json``. The folder counts as prepared only when ``meta.json`` exists and the
token file has exactly the size it records, so a preparation killed half way (Ctrl-C, disk full,
power loss) is never taken as valid: the next run starts it again. Two passes stream over the
source in chunks (count bytes, then map them to ids), so a corpus larger than RAM is never loaded.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from datamodules.fetch import ChecksumMismatchError
from datamodules.vocab import Vocabulary

TOKENS = "tokens.u8"
VOCAB = "vocab.json"
META = "meta.json"

ChunkSource = Callable[[], Iterable[bytes]]
"""A function that, each time it is called, streams the corpus again as byte chunks."""


def is_prepared(folder: Path) -> bool:
    meta_path, tokens_path = folder / META, folder / TOKENS
    if not (meta_path.is_file() and tokens_path.is_file() and (folder / VOCAB).is_file()):
        return False
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return tokens_path.stat().st_size == meta.get("num_tokens")


@contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    """Serialise preparation of one folder across processes (DDP ranks, two terminals)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def prepare(
    folder: Path, chunks: ChunkSource, source: str, total_bytes: int | None = None, sha256: str | None = None
) -> None:
    """Prepare ``folder`` from the byte chunks ``chunks()`` yields, unless it already is prepared.

    Args:
        folder: where ``tokens.u8``, ``vocab.json`` and ``meta.json`` go.
        chunks: streams the corpus as byte chunks; called twice (count, then encode).
        source: what the corpus is (a path or URL), for messages and ``meta.json``.
        total_bytes: the corpus size if known, for the progress bars.
        sha256: if given, the corpus bytes must hash to this, or nothing is written.
    """
    with _folder_lock(folder):
        if is_prepared(folder):
            return
        for stale in (META, TOKENS, VOCAB):  # an earlier, interrupted attempt
            (folder / stale).unlink(missing_ok=True)

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
                f"The corpus {source} has sha256 {digest.hexdigest()}, but {sha256} was expected; it was not "
                f"used. Delete it and run again (or check the mirror / local copy)."
            )
        num_tokens = int(counts.sum())
        if num_tokens == 0:
            raise ValueError(f"The corpus {source} is empty: there is nothing to train on. Check the file or folder.")
        vocab = Vocabulary.from_byte_counts(counts)
        table = vocab.byte_to_id.astype(np.uint8)  # every byte of the corpus is in the vocabulary

        tmp = folder / f".{TOKENS}.{os.getpid()}.tmp"
        try:
            with open(tmp, "wb") as out, tqdm(total=num_tokens, unit="B", unit_scale=True, desc="Encoding") as bar:
                for chunk in chunks():
                    out.write(table[np.frombuffer(chunk, dtype=np.uint8)].tobytes())
                    bar.update(len(chunk))
                out.flush()
                os.fsync(out.fileno())
            if tmp.stat().st_size != num_tokens:
                raise RuntimeError(f"The corpus {source} changed while it was being prepared; run again.")
            os.replace(tmp, folder / TOKENS)
        finally:
            tmp.unlink(missing_ok=True)
        vocab.save(folder / VOCAB)
        meta = {"source": source, "num_tokens": num_tokens, "vocab_size": len(vocab)}
        tmp_meta = folder / f".{META}.{os.getpid()}.tmp"
        tmp_meta.write_text(json.dumps(meta, indent=2))
        os.replace(tmp_meta, folder / META)  # last: marks the folder complete


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
    if not is_prepared(folder):
        raise FileNotFoundError(f"{folder} holds no prepared corpus; call the data module's prepare_data() first.")
    # mode "c": copy-on-write, so torch.from_numpy gets a writable view without touching the file
    return np.memmap(folder / TOKENS, dtype=np.uint8, mode="c"), Vocabulary.load(folder / VOCAB)

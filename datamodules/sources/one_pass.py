"""Preparing a corpus that can be read only once: a stream from the Hugging Face hub.

``prepare`` (datamodules.io.prepare) reads its source twice, counting bytes and then encoding them,
which needs a copy on disk to read again. Here the bytes go once, as they arrive, into the temp
token file while they are counted; the vocabulary then maps them to ids in place, in 16 MB blocks,
and the file is renamed into place. Disk used: the token file, nothing else. An error or Ctrl-C
anywhere on the way removes the temp file (datamodules.io.atomic_files); the folder stays unprepared.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from tqdm.auto import tqdm

from datamodules.io.cache_files import folder_lock
from datamodules.io.prepare import ChunkSource, byte_counts, finish_preparing, start_preparing, write_tokens_file
from datamodules.io.vocab import Vocabulary

_BLOCK = 16 << 20


@dataclass(frozen=True)
class StreamedCorpus:
    """A corpus read in one pass, as it arrives."""

    chunks: ChunkSource  # streams the raw bytes; called once per preparation
    source: str  # what it is, for messages and meta.json
    key: str  # the prepared folder's name; changes whenever the content (or the slice) does
    size: int | None = None  # the bytes to expect, when known (--data.max_bytes): the progress bar's total

    def prepare(self, folder: Path) -> None:
        """Prepare ``folder`` in one pass over the stream, unless it is prepared already."""
        prepare_one_pass(folder, self.chunks(), self.source, self.size)


def prepare_one_pass(folder: Path, chunks: Iterable[bytes], source: str, total_bytes: int | None = None) -> None:
    """Prepare ``folder`` (``tokens.u8``, ``vocab.json``, ``meta.json``) from ``chunks``, read once."""
    with folder_lock(folder):
        if not start_preparing(folder):
            return
        result: dict[str, object] = {}

        def write(out: BinaryIO) -> None:
            counts = np.zeros(256, dtype=np.int64)
            with tqdm(total=total_bytes, unit="B", unit_scale=True, desc=f"Streaming {source}") as bar:
                for chunk in chunks:
                    counts += byte_counts(chunk)
                    out.write(chunk)
                    bar.update(len(chunk))
                if bar.total != bar.n:  # the stream ended below the limit, or no total was known
                    bar.total = bar.n
                    bar.refresh()
            num_tokens = out.tell()
            if num_tokens == 0:
                raise ValueError(f"The corpus {source} is empty: there is nothing to train on. Check the dataset, "
                                 f"its --data.split and --data.text_column.")
            vocab = Vocabulary.from_byte_counts(counts)
            out.flush()
            result.update(vocab=vocab, num_tokens=num_tokens, crc=_encode_in_place(out, vocab, num_tokens))

        write_tokens_file(folder, write, readable=True)
        finish_preparing(folder, result["vocab"], result["num_tokens"], result["crc"], source)


def _encode_in_place(out: BinaryIO, vocab: Vocabulary, num_tokens: int) -> int:
    """Map the raw bytes in ``out`` (flushed) to token ids, block by block, in place; return their CRC-32."""
    table = vocab.byte_to_id.astype(np.uint8)  # (256,): every byte of the corpus is in the vocabulary
    fd, crc = out.fileno(), 0
    with tqdm(total=num_tokens, unit="B", unit_scale=True, desc="Encoding") as bar:
        for offset in range(0, num_tokens, _BLOCK):
            raw = os.pread(fd, min(_BLOCK, num_tokens - offset), offset)
            ids = table[np.frombuffer(raw, dtype=np.uint8)].tobytes()
            crc = zlib.crc32(ids, crc)
            view = memoryview(ids)
            while view:  # pwrite may write less than asked
                view = view[os.pwrite(fd, view, offset + len(ids) - len(view)):]
            bar.update(len(raw))
    return crc

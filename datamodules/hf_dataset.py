"""A Hugging Face ``datasets`` dataset as a corpus: one text column, rows joined by a separator.

Loaded whole (``datasets`` downloads it and converts it to Arrow in its cache, then charlm copies
the text into its token file) or, with ``streaming``, read as it downloads and written to the token
file in one pass (datamodules.one_pass): no Arrow copy, and with ``--data.max_bytes`` only the
slice taken is ever fetched. Both give the same bytes, so the same token file. A request that cannot
be resolved now (offline, data files moved) falls back on the copy prepared before
(datamodules.dataset_index).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from datamodules.base import Corpus
from datamodules.byte_limit import ByteLimit
from datamodules.compat import dataset_fingerprint
from datamodules.errors import CorpusUnavailableError
from datamodules.one_pass import StreamedCorpus
from datamodules.sources import coalesce

_ROWS_PER_BATCH = 1000
_STREAM_CHUNK = 1 << 20  # written (and shown on the progress bar) per MB as the stream arrives
DEFAULT_TEXT_COLUMN = "text"


class DatasetUnresolvedError(FileNotFoundError):
    """``datasets`` could not find, load or start streaming the dataset; ``reason`` is its error, in brief."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class DatasetSpec:
    """What the ``--data.dataset*`` flags ask for (see TextDataModule)."""

    dataset: str
    config: str | None
    data_files: str | list[str] | None
    split: str
    text_column: str
    separator: str  # between rows
    streaming: bool
    max_bytes: int | None
    max_bytes_shown: int | str | None  # as the user wrote it, for the message when the corpus is cut

    @property
    def source(self) -> str:
        return f"{self.dataset}[{self.split}].{self.text_column}"

    def settings_key(self) -> str:
        """What, besides the data, decides the bytes, for the prepared folder's name: the separator's hash,
        as charlm named it before there were other settings (so a corpus prepared then keeps its folder),
        then, only when they differ from the defaults, a hash of the text column and the slice (another
        field, so never equal to a separator's hash): a slice or another column is never taken for the
        corpus prepared before."""
        key = hashlib.sha256(self.separator.encode()).hexdigest()[:8]
        settings = {"text_column": self.text_column} if self.text_column != DEFAULT_TEXT_COLUMN else {}
        if self.max_bytes is not None:
            settings["max_bytes"] = self.max_bytes
        return f"{key}-{hashlib.sha256(json.dumps(settings).encode()).hexdigest()[:8]}" if settings else key


def dataset_corpus(spec: DatasetSpec) -> Corpus | StreamedCorpus:
    """The corpus ``spec`` names: loaded into the Arrow cache, or streamed (``spec.streaming``)."""
    import datasets  # only needed for this source

    limit = None if spec.max_bytes is None else ByteLimit(spec.max_bytes, spec.source, spec.max_bytes_shown)

    def chunks(batches: Iterable[dict[str, list[Any]]], size: int | None = None) -> Iterable[bytes]:
        joined = coalesce(_row_bytes(batches, spec), *([size] if size else []))
        return joined if limit is None else limit.cut(joined)

    if spec.streaming:
        try:
            builder = datasets.load_dataset_builder(spec.dataset, spec.config, data_files=spec.data_files)
            ds = builder.as_streaming_dataset(split=spec.split)
        except Exception as err:  # noqa: BLE001 — datasets raises many kinds for "cannot get it"
            raise DatasetUnresolvedError(
                f"--data.dataset: could not stream {spec.dataset!r} (--data.streaming true, config {spec.config!r}, "
                f"split {spec.split!r}): {_first_line(err)}. A hub id needs the network; offline, give a folder of "
                f"data files, or a builder such as parquet or json with --data.data_files.", _first_line(err)
            ) from None
        _check_column(spec, ds.column_names)  # None: not known before the first rows (checked there)
        # the builder's identity is what names its Arrow cache: the data files (their mtimes, or the hub revision)
        identity = [builder.name, builder.config_id, builder.hash, str(builder.info.version), spec.split]
        key = hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:16]
        return StreamedCorpus(lambda: chunks(_read_or_fail(ds.iter(batch_size=_ROWS_PER_BATCH), spec), _STREAM_CHUNK),
                              spec.source, f"dataset-stream-{key}-{spec.settings_key()}", spec.max_bytes)
    try:
        ds = datasets.load_dataset(spec.dataset, spec.config, data_files=spec.data_files, split=spec.split)
    except Exception as err:  # noqa: BLE001 — datasets raises many kinds for "cannot get it"
        raise DatasetUnresolvedError(
            f"--data.dataset: could not load {spec.dataset!r} (config {spec.config!r}, split {spec.split!r}): "
            f"{_first_line(err)}. A hub dataset needs the network the first time (afterwards it is cached); "
            f"offline, point --data.dataset at a builder such as parquet or text with --data.data_files, or use "
            f"--data.path.", _first_line(err)
        ) from None
    _check_column(spec, ds.column_names)
    # max_bytes: an upper bound, the progress bars' total
    return Corpus(lambda: chunks(ds.iter(batch_size=_ROWS_PER_BATCH)), spec.source, spec.max_bytes,
                  f"dataset-{dataset_fingerprint(ds)}-{spec.settings_key()}")


def _check_column(spec: DatasetSpec, columns: list[str] | None) -> None:
    if columns is not None and spec.text_column not in columns:
        raise ValueError(f"--data.text_column: {spec.dataset!r} has no column {spec.text_column!r}; "
                         f"its columns are {columns}.")


def _row_bytes(batches: Iterable[dict[str, list[Any]]], spec: DatasetSpec) -> Iterator[bytes]:
    """Each row's text as UTF-8, with the separator between rows (None counts as empty text)."""
    separator, first = spec.separator.encode(), True
    for batch in batches:
        _check_column(spec, list(batch))
        for text in batch[spec.text_column]:
            if not first:
                yield separator
            first = False
            yield (text or "").encode()


def _read_or_fail(batches: Iterator[dict], spec: DatasetSpec) -> Iterator[dict]:
    """``batches``, with a failure of the stream itself (the network, a damaged data file) worded in one line."""
    rows = 0
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except Exception as err:  # noqa: BLE001 — whatever the stream raised, the run cannot go on
            raise CorpusUnavailableError(
                f"--data.dataset: streaming {spec.dataset!r} failed after {rows:,} rows: {_first_line(err)}. "
                f"Nothing was kept; run again (the stream starts from the beginning)."
            ) from None
        rows += len(next(iter(batch.values()), []))
        yield batch


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0].rstrip('.') if lines else ''}"  # the caller ends the sentence

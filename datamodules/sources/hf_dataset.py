"""A Hugging Face ``datasets`` dataset as a corpus: one text column, rows joined by a separator.

Loaded whole (``datasets`` downloads it and converts it to Arrow in its cache, then charlm copies
the text into its token file) or, with ``streaming``, read as it downloads and written to the token
file in one pass (datamodules.sources.one_pass): no Arrow copy, and with ``--data.max_bytes`` only the
slice taken is ever fetched. Both give the same bytes, so the same token file. A request that cannot
be resolved now (offline, data files moved) falls back on the copy prepared before
(datamodules.sources.dataset_index). A flag that names what is not there (a text column that is missing or not
text, a configuration or split, data files that match nothing, a builder such as parquet given none) is
refused in one line naming it, before the model is built.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from datamodules.common.compat import dataset_fingerprint, packaged_builders
from datamodules.common.errors import CorpusUnavailableError
from datamodules.sources.byte_limit import ByteLimit
from datamodules.sources.corpus import Corpus
from datamodules.sources.files import coalesce
from datamodules.sources.one_pass import StreamedCorpus

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


def check_flag_types(dataset: object, config: object, data_files: object, split: object, text_column: object) -> None:
    """Refuse a ``--data.dataset*`` value of the wrong type now (from Python, or a YAML ``text_column: 3``), naming
    its flag: passed on, it would fail deep in ``datasets`` or while preparing, far from the flag."""
    names = {"dataset": (dataset, "a hub id, a folder or a builder such as parquet"),
             "text_column": (text_column, "the name of a column"), "split": (split, "the name of a split, e.g. train")}
    if config is not None:
        names["dataset_config"] = (config, "the name of a configuration")
    for flag, (value, expected) in names.items():
        if not isinstance(value, str) or not value:
            raise ValueError(f"--data.{flag}: expected {expected} (a string), got {_shown(value)}.")
    files = [data_files] if isinstance(data_files, str) else data_files
    if data_files is not None and not (isinstance(files, list) and files and all(isinstance(f, str) and f
                                                                                  for f in files)):
        raise ValueError(f"--data.data_files: expected a file, a glob or a list of them, got {_shown(data_files)}.")


def _shown(value: object) -> str:
    return f"{value!r} ({type(value).__name__})"


def dataset_corpus(spec: DatasetSpec) -> Corpus | StreamedCorpus:
    """The corpus ``spec`` names: loaded into the Arrow cache, or streamed (``spec.streaming``)."""
    import datasets  # only needed for this source

    _check_builder_has_files(spec)
    limit = None if spec.max_bytes is None else ByteLimit(spec.max_bytes, spec.source, spec.max_bytes_shown)

    def chunks(batches: Iterable[dict[str, list[Any]]], size: int | None = None) -> Iterable[bytes]:
        joined = coalesce(_row_bytes(batches, spec), *([size] if size else []))
        return joined if limit is None else limit.cut(joined)

    if spec.streaming:
        builder = None  # (set once resolved: a failure after that is worded with its splits)
        try:
            builder = datasets.load_dataset_builder(spec.dataset, spec.config, data_files=spec.data_files)
            ds = builder.as_streaming_dataset(split=spec.split)
        except Exception as err:  # noqa: BLE001 — datasets raises many kinds for "cannot get it"
            _raise_if_flag_at_fault(spec, err, builder)
            raise DatasetUnresolvedError(
                f"--data.dataset: could not stream {spec.dataset!r} (--data.streaming true, config {spec.config!r}, "
                f"split {spec.split!r}): {_first_line(err)}. A hub id needs the network; offline, give a folder of "
                f"data files, or a builder such as parquet or json with --data.data_files.", _first_line(err)
            ) from None
        _check_column(spec, ds.column_names, ds.features)  # None: not known before the first rows (checked there)
        # the builder's identity is what names its Arrow cache: the data files (their mtimes, or the hub revision)
        identity = [builder.name, builder.config_id, builder.hash, str(builder.info.version), spec.split]
        key = hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:16]
        return StreamedCorpus(lambda: chunks(_read_or_fail(ds.iter(batch_size=_ROWS_PER_BATCH), spec), _STREAM_CHUNK),
                              spec.source, f"dataset-stream-{key}-{spec.settings_key()}", spec.max_bytes)
    try:
        ds = datasets.load_dataset(spec.dataset, spec.config, data_files=spec.data_files, split=spec.split)
    except Exception as err:  # noqa: BLE001 — datasets raises many kinds for "cannot get it"
        _raise_if_flag_at_fault(spec, err)
        raise DatasetUnresolvedError(
            f"--data.dataset: could not load {spec.dataset!r} (config {spec.config!r}, split {spec.split!r}): "
            f"{_first_line(err)}. A hub dataset needs the network the first time (afterwards it is cached); "
            f"offline, point --data.dataset at a builder such as parquet or text with --data.data_files, or use "
            f"--data.path.", _first_line(err)
        ) from None
    _check_column(spec, ds.column_names, ds.features)
    # max_bytes: an upper bound, the progress bars' total
    return Corpus(lambda: chunks(ds.iter(batch_size=_ROWS_PER_BATCH)), spec.source, spec.max_bytes,
                  f"dataset-{dataset_fingerprint(ds)}-{spec.settings_key()}")


def _check_builder_has_files(spec: DatasetSpec) -> None:
    """A packaged builder (parquet, csv, json, text, ...) without ``data_files`` reads every file of its kind in
    the current folder, and where there is none the error blames the network: refuse it, naming the flag."""
    if spec.dataset in packaged_builders() and not spec.data_files:
        raise ValueError(
            f"--data.dataset {spec.dataset} reads local files: give them with --data.data_files (a file, a glob such "
            f"as 'data/*.{spec.dataset}', or a list); without it datasets would read whatever files the current folder "
            f"({os.getcwd()}) holds. For a folder of your own named {spec.dataset}, write ./{spec.dataset}."
        )


def _raise_if_flag_at_fault(spec: DatasetSpec, err: Exception, builder: Any = None) -> None:
    """When ``datasets`` failed because a flag names what is not there, say so, naming the flag: local data files
    that match nothing (a DatasetUnresolvedError still: the copy prepared before, if any, is used) or a split the
    dataset does not have (a ValueError). ``builder``: the one already resolved, if the failure came after it."""
    unmatched = _unmatched_data_files(spec)
    if unmatched:
        pattern, base = unmatched
        where = f" (relative to {base})" if not os.path.isabs(pattern) else ""
        reason = f"FileNotFoundError: {pattern} matches no file"
        raise DatasetUnresolvedError(f"--data.data_files: {pattern}{where} matches no file; check the path or "
                                     f"glob", reason) from None
    if not isinstance(err, ValueError):  # datasets words an unknown config or split so; others: not these flags
        return
    _check_config(spec)
    splits = _splits_of(spec, builder)
    asked = [part.split("[", 1)[0].strip() for part in spec.split.split("+")]  # "train[:10%]+test" reads two
    if splits and any(name not in splits for name in asked):
        raise ValueError(f"--data.split: {spec.dataset!r} has no split {spec.split!r}; its splits are {splits} "
                         f"(charlm cuts its own train/val/test from the one split it reads, so the default, train, "
                         f"is usually the one to give).") from None


def _unmatched_data_files(spec: DatasetSpec) -> tuple[str, str] | None:
    """The first local data file or glob that matches no file, and the folder it is relative to; None if all
    match (or they are not local: a URL, or files inside a hub dataset)."""
    if spec.dataset in packaged_builders():
        base = os.getcwd()  # what datasets resolves a packaged builder's relative data files against
    elif os.path.isdir(spec.dataset):
        base = spec.dataset  # a local folder's own files
    else:
        return None
    files = [spec.data_files] if isinstance(spec.data_files, str) else list(spec.data_files or [])
    for pattern in files:
        if "://" not in pattern and not glob.glob(os.path.join(base, pattern), recursive=True):
            return pattern, base
    return None


def _check_config(spec: DatasetSpec) -> None:
    """A configuration the dataset does not have, or none where it has several: a ValueError naming the flag."""
    import datasets

    try:
        names = datasets.get_dataset_config_names(spec.dataset, data_files=spec.data_files)
    except Exception:  # noqa: BLE001 — the configurations cannot be listed; the caller words the original error
        return
    if spec.config is None and len(names) > 1:
        raise ValueError(f"--data.dataset_config: {spec.dataset!r} has several configurations, {names}; choose one "
                         f"with --data.dataset_config.") from None
    if spec.config is not None and names and spec.config not in names:
        raise ValueError(f"--data.dataset_config: {spec.dataset!r} has no configuration {spec.config!r}; its "
                         f"configurations are {names}.") from None


def _splits_of(spec: DatasetSpec, builder: Any = None) -> list[str] | None:
    """The split names the dataset has (None if they cannot be had without the network or at all)."""
    import datasets

    try:
        builder = builder or datasets.load_dataset_builder(spec.dataset, spec.config, data_files=spec.data_files)
    except Exception:  # noqa: BLE001 — the split cannot be checked; the caller words the original error
        return None
    names = builder.config.data_files or builder.info.splits  # the data files by split, or the card's splits
    return list(names) if names else None


def _check_column(spec: DatasetSpec, columns: list[str] | None, features: Any = None) -> None:
    """The text column exists and (where ``features`` says) holds strings."""
    if columns is not None and spec.text_column not in columns:
        raise ValueError(f"--data.text_column: {spec.dataset!r} has no column {spec.text_column!r}; "
                         f"its columns are {columns}.")
    feature = features.get(spec.text_column) if features else None
    if feature is not None and getattr(feature, "dtype", None) not in ("string", "large_string"):
        raise _not_text(spec, getattr(feature, "dtype", None) or type(feature).__name__, list(features))


def _not_text(spec: DatasetSpec, kind: str, columns: list[str]) -> ValueError:
    return ValueError(f"--data.text_column: column {spec.text_column!r} of {spec.dataset!r} holds {kind} values, not "
                     f"text; name a column of strings: its columns are {columns}.")


def _row_bytes(batches: Iterable[dict[str, list[Any]]], spec: DatasetSpec) -> Iterator[bytes]:
    """Each row's text as UTF-8, with the separator between rows (None counts as empty text)."""
    separator, first = spec.separator.encode(), True
    for batch in batches:
        _check_column(spec, list(batch))
        for text in batch[spec.text_column]:
            if not isinstance(text, str) and text is not None:  # a stream whose features were not known up front
                raise _not_text(spec, type(text).__name__, list(batch))
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

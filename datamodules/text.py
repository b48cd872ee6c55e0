"""Your own text: a file, a folder, a glob of files, or a Hugging Face dataset.

Files are concatenated in path order and split contiguously (train first, then val, then test).
Binary files (a NUL byte in their first 8000 bytes, git's rule) are skipped by default with a
warning that names them; ``binary: error`` refuses them instead, ``binary: include`` keeps them. A
folder walk does not enter version control or caches (``skip_folders``: .git and every other hidden
folder, __pycache__, node_modules), saying on stderr which held files.
Inputs larger than memory are fine: they are streamed twice in chunks and memory-mapped. A
dataset can be streamed instead of downloaded whole (datamodules.sources.hf_dataset), and ``max_bytes``
takes a slice from the start of any corpus (datamodules.sources.byte_limit). A dataset that cannot be resolved
now (offline, its data files moved) is read from the copy prepared before (datamodules.sources.dataset_index).
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Iterator
from typing import Literal

from datamodules.base import CharDataModule
from datamodules.common.errors import check_string_list
from datamodules.common.rank_zero import rank_zero_note
from datamodules.io.prepare import ChunkSource
from datamodules.sources.byte_limit import ByteLimit, parse_byte_size
from datamodules.sources.corpus import Corpus
from datamodules.sources.dataset_index import PreparedCopy, recall, record
from datamodules.sources.files import SKIP_FOLDERS, coalesce, expand_paths, files_chunks, text_files
from datamodules.sources.hf_dataset import (
    DEFAULT_TEXT_COLUMN,
    DatasetSpec,
    DatasetUnresolvedError,
    check_flag_types,
    dataset_corpus,
)
from datamodules.sources.one_pass import StreamedCorpus


class TextDataModule(CharDataModule):
    """Any text you bring: ``path`` (file, folder or glob) or ``dataset`` (Hugging Face ``datasets``)."""

    def __init__(
        self,
        path: str | None = None,
        extensions: list[str] | None = None,
        binary: Literal["skip", "error", "include"] = "skip",
        skip_folders: tuple[str, ...] = SKIP_FOLDERS,
        dataset: str | None = None,
        dataset_config: str | None = None,
        data_files: str | list[str] | None = None,
        split: str = "train",
        text_column: str = DEFAULT_TEXT_COLUMN,
        separator: str | None = None,
        streaming: bool = False,
        max_bytes: int | str | None = None,
        **kwargs,
    ) -> None:
        """
        Args:
            path: a text file, a folder (read recursively) or a glob such as "src/**/*.py".
            extensions: with a folder or glob, keep only files whose names end so (e.g. [.py]).
            binary: what to do with binary files found in a folder or glob: skip, error or include.
            skip_folders: folders a folder or ** does not enter, by name (patterns): version control (.git, .hg,
                .svn), environments and caches (.venv, __pycache__, node_modules): every hidden folder and those
                two; '[]' enters them all. Said on stderr when they held files. A folder named itself is read.
            dataset: a Hugging Face dataset instead of files: a hub id, or a builder such as
                "text" or "parquet" together with data_files.
            dataset_config: the dataset's configuration name, if it has several.
            data_files: local files for a builder dataset ("parquet", "text", "json", ...).
            split: which split of the dataset to read; charlm cuts its own train/val/test from it.
            text_column: the dataset column holding the text.
            separator: put between files / dataset rows (default: nothing between files, a
                newline between dataset rows).
            streaming: read the dataset as it downloads and write the token file in one pass, with
                no Arrow copy in the datasets cache (half the disk); the same token file either way.
            max_bytes: take only the corpus's first bytes, e.g. 5000000, 5MB, 1.5GB or 64KiB: cut at
                the last whole UTF-8 character within the limit; a stream is read no further.
        """
        super().__init__(**kwargs)
        if (path is None) == (dataset is None):
            raise ValueError("Give exactly one of --data.path (files) and --data.dataset (a Hugging Face dataset).")
        if dataset is not None:
            check_flag_types(dataset, dataset_config, data_files, split, text_column)
        else:
            _check_file_flag_types(path, extensions, binary, skip_folders)
        if separator is not None and not isinstance(separator, str):
            raise ValueError(f"--data.separator: expected a string, got {separator!r} ({type(separator).__name__}).")
        self.path, self.extensions, self.binary, self.skip_folders = path, extensions, binary, tuple(skip_folders)
        self.dataset, self.dataset_config, self.data_files = dataset, dataset_config, data_files
        self.split, self.text_column, self.separator = split, text_column, separator
        if streaming and dataset is None:
            raise ValueError("--data.streaming applies to --data.dataset; files (--data.path) are read as streams "
                             "already. Drop --data.streaming, or use --data.max_bytes to take a slice of them.")
        self.streaming, self.max_bytes_shown = streaming, max_bytes
        self.max_bytes = parse_byte_size(max_bytes)
        self._recorded = False  # the dataset index names this request's folder (datamodules.sources.dataset_index)

    def _corpus(self) -> Corpus | StreamedCorpus | PreparedCopy:
        return self._files_corpus() if self.path is not None else self._dataset_corpus()

    def prepare_data(self) -> None:
        """Prepare the corpus once; for a dataset, note which folder this request went into (for offline runs)."""
        super().prepare_data()
        # once per data module: prepare_data runs several times a process (vocab, the Trainer, each setup)
        if self.dataset is not None and not self._recorded and not isinstance(self.corpus, PreparedCopy):
            record(self.cache_dir, self._dataset_spec(), self.corpus.key)
            self._recorded = True

    def _files_corpus(self) -> Corpus:
        found = expand_paths(self.path, self.extensions, self.skip_folders)
        if note := found.skipped_note(self.path):
            rank_zero_note(note)
        paths = found.files
        if not paths:
            raise FileNotFoundError(
                f"--data.path: {self.path} matches no files"
                + (f" ending in {', '.join(self.extensions)}" if self.extensions else "") + "."
            )
        if self.binary != "include":
            paths, binary = text_files(paths)
            if binary and self.binary == "error":
                raise ValueError(f"--data.path: {len(binary)} binary files, e.g. {binary[0]}; use --data.binary skip.")
            if binary:
                names = ", ".join(str(p) for p in binary[:5]) + (", ..." if len(binary) > 5 else "")
                warnings.warn(f"Skipped {len(binary)} binary files under {self.path}: {names}", stacklevel=2)
            if not paths:
                raise ValueError(f"--data.path: {self.path} holds only binary files; nothing to train on.")
        listing = hashlib.sha256((self.separator or "").encode())
        if self.max_bytes is not None:  # (without it, the keys of earlier caches stay as they were)
            listing.update(f"max_bytes={self.max_bytes}\n".encode())
        for p in paths:
            stat = p.stat()
            # os.fsencode: a name that is not UTF-8 (b"caf\xe9.txt") round-trips to its own bytes
            listing.update(os.fsencode(p.resolve()) + f"\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        chunks = files_chunks(paths)
        if self.separator:
            chunks = _joined([files_chunks([p]) for p in paths], self.separator.encode())
        size = sum(p.stat().st_size for p in paths) + len((self.separator or "").encode()) * (len(paths) - 1)
        if self.max_bytes is not None:
            chunks = _limited(chunks, ByteLimit(self.max_bytes, self.path, self.max_bytes_shown))
            size = min(size, self.max_bytes)
        return Corpus(chunks, self.path, size, f"text-{listing.hexdigest()[:16]}")

    def _dataset_spec(self) -> DatasetSpec:
        return DatasetSpec(
            self.dataset, self.dataset_config, self.data_files, self.split, self.text_column,
            "\n" if self.separator is None else self.separator, self.streaming, self.max_bytes, self.max_bytes_shown,
        )

    def _dataset_corpus(self) -> Corpus | StreamedCorpus | PreparedCopy:
        spec = self._dataset_spec()
        try:
            return dataset_corpus(spec)
        except DatasetUnresolvedError as err:
            copy = recall(self.cache_dir, spec, err)
            if copy is None:
                raise DatasetUnresolvedError(f"{str(err).rstrip('.')}; and no copy prepared before with these "
                                             f"--data flags is in {self.cache_dir} to fall back on.",
                                             err.reason) from None
            return copy


def _check_file_flag_types(path: object, extensions: object, binary: object, skip_folders: object) -> None:
    """Refuse a file flag of the wrong type now, naming it (from Python: the CLI checks types itself): a string
    for a list would be taken letter by letter (extensions="py" keeps names ending in p or y)."""
    if not isinstance(path, str) or not path:
        raise ValueError(f"--data.path: expected a file, folder or glob (a string), got {path!r}.")
    check_string_list("--data.extensions", extensions, ".py")
    check_string_list("--data.skip_folders", skip_folders, ".git")
    if binary not in ("skip", "error", "include"):
        raise ValueError(f"--data.binary: expected skip, error or include, got {binary!r}.")


def _limited(chunks: ChunkSource, limit: ByteLimit) -> ChunkSource:
    """``chunks`` cut at ``limit`` (datamodules.sources.byte_limit), on every call."""
    return lambda: limit.cut(chunks())


def _joined(sources: list, separator: bytes):
    def read() -> Iterator[bytes]:
        for i, source in enumerate(sources):
            if i:
                yield separator
            yield from source()

    return lambda: coalesce(read())

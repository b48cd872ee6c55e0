"""Your own text: a file, a folder, a glob of files, or a Hugging Face dataset.

Files are concatenated in path order and split contiguously (train first, then val, then test).
Binary files (a NUL byte in their first 8000 bytes, git's rule) are skipped by default with a
warning that names them; ``binary: error`` refuses them instead, ``binary: include`` keeps them.
Inputs larger than memory are fine: they are streamed twice in chunks and memory-mapped.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Iterator
from typing import Literal

from datamodules.base import CharDataModule, Corpus
from datamodules.compat import dataset_fingerprint
from datamodules.sources import coalesce, expand_paths, files_chunks, text_files


class TextDataModule(CharDataModule):
    """Any text you bring: ``path`` (file, folder or glob) or ``dataset`` (Hugging Face ``datasets``)."""

    def __init__(
        self,
        path: str | None = None,
        extensions: list[str] | None = None,
        binary: Literal["skip", "error", "include"] = "skip",
        dataset: str | None = None,
        dataset_config: str | None = None,
        data_files: str | list[str] | None = None,
        split: str = "train",
        text_column: str = "text",
        separator: str | None = None,
        **kwargs,
    ) -> None:
        """
        Args:
            path: a text file, a folder (read recursively) or a glob such as "src/**/*.py".
            extensions: with a folder or glob, keep only files whose names end so (e.g. [.py]).
            binary: what to do with binary files found in a folder or glob: skip, error or include.
            dataset: a Hugging Face dataset instead of files: a hub id, or a builder such as
                "text" or "parquet" together with data_files.
            dataset_config: the dataset's configuration name, if it has several.
            data_files: local files for a builder dataset ("parquet", "text", "json", ...).
            split: which split of the dataset to read; charlm cuts its own train/val/test from it.
            text_column: the dataset column holding the text.
            separator: put between files / dataset rows (default: nothing between files, a
                newline between dataset rows).
        """
        super().__init__(**kwargs)
        if (path is None) == (dataset is None):
            raise ValueError("Give exactly one of --data.path (files) and --data.dataset (a Hugging Face dataset).")
        self.path, self.extensions, self.binary = path, extensions, binary
        self.dataset, self.dataset_config, self.data_files = dataset, dataset_config, data_files
        self.split, self.text_column, self.separator = split, text_column, separator

    def _corpus(self) -> Corpus:
        return self._files_corpus() if self.path is not None else self._dataset_corpus()

    def _files_corpus(self) -> Corpus:
        paths = expand_paths(self.path, self.extensions)
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
        for p in paths:
            stat = p.stat()
            # os.fsencode: a name that is not UTF-8 (b"caf\xe9.txt") round-trips to its own bytes
            listing.update(os.fsencode(p.resolve()) + f"\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        chunks = files_chunks(paths)
        if self.separator:
            chunks = _joined([files_chunks([p]) for p in paths], self.separator.encode())
        size = sum(p.stat().st_size for p in paths) + len((self.separator or "").encode()) * (len(paths) - 1)
        return Corpus(chunks, self.path, size, f"text-{listing.hexdigest()[:16]}")

    def _dataset_corpus(self) -> Corpus:
        import datasets  # only needed for this source

        try:
            ds = datasets.load_dataset(self.dataset, self.dataset_config, data_files=self.data_files, split=self.split)
        except Exception as err:  # noqa: BLE001 — datasets raises many kinds for "cannot get it"
            raise FileNotFoundError(
                f"--data.dataset: could not load {self.dataset!r} (config {self.dataset_config!r}, split "
                f"{self.split!r}): {type(err).__name__}: {err}\nA hub dataset needs the network the first time "
                f"(afterwards it is cached); offline, point --data.dataset at a builder such as parquet or text "
                f"with --data.data_files, or use --data.path."
            ) from None
        if self.text_column not in ds.column_names:
            raise ValueError(f"--data.text_column: {self.dataset!r} has no column {self.text_column!r}; "
                             f"its columns are {ds.column_names}.")
        separator = ("\n" if self.separator is None else self.separator).encode()

        def rows() -> Iterator[bytes]:
            first = True
            for batch in ds.iter(batch_size=1000):
                for text in batch[self.text_column]:
                    if not first:
                        yield separator
                    first = False
                    yield (text or "").encode()

        return Corpus(lambda: coalesce(rows()), f"{self.dataset}[{self.split}].{self.text_column}", None,
                      f"dataset-{dataset_fingerprint(ds)}-{hashlib.sha256(separator).hexdigest()[:8]}")


def _joined(sources: list, separator: bytes):
    def read() -> Iterator[bytes]:
        for i, source in enumerate(sources):
            if i:
                yield separator
            yield from source()

    return lambda: coalesce(read())

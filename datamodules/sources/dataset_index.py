"""Which prepared folder a ``--data.dataset`` request went into, for the runs that cannot resolve it again.

A dataset's prepared folder is named after what ``datasets`` resolves the request to (the loaded
dataset's fingerprint, or a streaming builder's hash of its data files or hub revision). Offline
(``HF_DATASETS_OFFLINE=1``, no network), with the data files moved away, or with the Arrow cache
deleted, that resolution fails although the token file is on disk: a streamed hub corpus leaves
nothing in the ``datasets`` cache to resolve it from. So every run that resolves a request records
request -> folder in ``<cache>/datasets-index.json`` (written atomically, under a lock: the index is
whole or as it was), and a run that cannot resolve it trains on that folder, saying so.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from datamodules.common.errors import CacheWriteError, CorpusUnavailableError
from datamodules.common.rank_zero import rank_zero_note
from datamodules.io.cache_files import atomic_write, folder_lock
from datamodules.io.prepare import META, is_prepared
from datamodules.sources.hf_dataset import DatasetSpec, DatasetUnresolvedError

INDEX = "datasets-index.json"


@dataclass(frozen=True)
class PreparedCopy:
    """A corpus known only by the folder it was prepared into before (the request cannot be resolved now)."""

    source: str
    key: str  # the prepared folder's name, from the index
    unresolved: str  # why the request could not be resolved: the message of that error

    def prepare(self, folder: Path) -> None:
        """Only reached if the folder stopped counting as prepared since it was recalled: there is nothing to
        prepare it from."""
        raise CorpusUnavailableError(f"{self.unresolved.rstrip('.')}; and the copy prepared before in {folder} "
                                     f"is now incomplete or damaged. Run again where the dataset can be read.")


def request(spec: DatasetSpec, dataset: str | None = None) -> str:
    """The flags that decide the corpus, as one string (the index's key). ``dataset``: the name to
    record under (default: its absolute path if it is a local folder or file now, else as written)."""
    if dataset is None:
        dataset = os.path.abspath(spec.dataset) if os.path.exists(spec.dataset) else spec.dataset
    files = [spec.data_files] if isinstance(spec.data_files, str) else list(spec.data_files or [])
    relative = any("://" not in f and not os.path.isabs(f) for f in files)
    fields = {"dataset": dataset, "config": spec.config, "data_files": spec.data_files, "split": spec.split,
              "text_column": spec.text_column, "separator": spec.separator, "max_bytes": spec.max_bytes,
              "streaming": spec.streaming,
              "cwd": os.getcwd() if relative else None}  # relative data files mean other files elsewhere
    return json.dumps(fields, sort_keys=True)


def record(cache_dir: Path, spec: DatasetSpec, key: str) -> None:
    """Note that ``spec`` was prepared into ``cache_dir/prepared/key``; no write if the index says so already."""
    path, entry = cache_dir / INDEX, request(spec)
    if _read(path).get(entry) == key:  # the usual case: every run after the first
        return
    try:
        with folder_lock(cache_dir):  # two runs at once: neither loses the other's entry
            index = _read(path)
            index[entry] = key
            atomic_write(path, json.dumps(index, indent=1, sort_keys=True).encode())
    except CacheWriteError:  # a read-only cache prepared by someone else: train on it, only without this note
        pass


def recall(cache_dir: Path, spec: DatasetSpec, unresolved: DatasetUnresolvedError) -> PreparedCopy | None:
    """The copy prepared before for ``spec``, if the index names one and it is intact; says on stderr
    (one line) that it is used and may be stale. ``unresolved``: why ``spec`` could not be resolved."""
    index = _read(cache_dir / INDEX)
    for name in dict.fromkeys((os.path.abspath(spec.dataset), spec.dataset)):  # a moved folder, or a hub id
        key = index.get(request(spec, name))
        folder = cache_dir / "prepared" / str(key)
        if key is not None and is_prepared(folder):
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime((folder / META).stat().st_mtime))
            rank_zero_note(f"charlm: --data.dataset {spec.dataset!r} cannot be read now ({unresolved.reason}); "
                           f"training on the copy prepared on {when} in {folder}, which may be stale.")
            return PreparedCopy(spec.source, key, str(unresolved))
    return None


def _read(path: Path) -> dict[str, str]:
    try:
        index = json.loads(path.read_text())
    except (OSError, ValueError):  # none yet (or unreadable: it is rebuilt entry by entry)
        return {}
    return index if isinstance(index, dict) else {}


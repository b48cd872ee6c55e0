"""Read what a W&B run recorded, from its local ``run-<id>.wandb`` file, with wandb's own record schema.

The file is W&B's transaction log: a 7-byte header (``:W&B``, a magic number, a version), then LevelDB's log
format (32 KiB blocks of chunks, each with a 7-byte header: checksum, length, type), whose payloads are
``wandb_internal_pb2.Record`` messages: the run itself (name, tags), config updates, history rows, ...
(wandb >= 0.19 no longer ships a Python reader of it.)
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from wandb.proto import wandb_internal_pb2

BLOCK = 32 * 1024
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path) -> Iterator[Any]:
    """The ``Record`` messages of a ``.wandb`` file, in order."""
    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    pos, pending = 7, b""
    while pos + 7 <= len(data):
        if BLOCK - pos % BLOCK < 7:  # a block's tail too short for a header is padding
            pos += BLOCK - pos % BLOCK
            continue
        _, length, kind = struct.unpack_from("<IHB", data, pos)
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind in (FULL, FIRST):
            pending = chunk
        elif kind in (MIDDLE, LAST):
            pending += chunk
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            yield record


def run_record(run_dir: Path) -> dict[str, Any]:
    """What a user browses of an offline run: its name and tags, its config (merged updates, values decoded
    from JSON) and the metric keys of its history."""
    (file,) = run_dir.glob("run-*.wandb")
    run: dict[str, Any] = {"name": None, "tags": [], "config": {}, "history_keys": set()}
    for record in records(file):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run["name"], run["tags"] = record.run.display_name, list(record.run.tags)
        elif kind == "config":
            for item in record.config.update:
                run["config"][item.key] = json.loads(item.value_json)
        elif kind == "history":
            run["history_keys"] |= {item.key or "/".join(item.nested_key) for item in record.history.item}
    return run

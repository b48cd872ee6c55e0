"""A resumed fit continues its run folder, so one run's records are not split in two.

``fit --ckpt_path runs/shakespeare/version_0/checkpoints/interrupted.ckpt`` would otherwise log to
a new ``version_1``: a second metrics.csv, samples.jsonl and neurons/, and a second checkpoints
folder, where Lightning's ModelCheckpoint forgets the best score so far ("The dirpath has changed")
and can name a worse checkpoint "best". Here the CSV logger is given that run's version, so its
folder and the checkpoints' folder are the same as before, and ``continue_from_step`` (charlm's
ResumableCSVLogger) so that its metrics.csv is continued, not deleted. The version comes from the path
alone, so every DDP process picks the same one. The folder's lock is taken here, before anything is
prepared: a folder another process is writing is refused (``charlm.run_lock``).
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import torch

from charlm.compat import entry_is
from charlm.csv_logger import ResumableCSVLogger
from charlm.run_folders import loggers_of
from charlm.run_lock import hold
from datamodules.rank_zero import is_rank_zero, rank_zero_note


def run_version(ckpt_path: str | Path, save_dir: str | Path, name: str | None) -> int | None:
    """N when ``ckpt_path`` is ``<save_dir>/<name>/version_<N>/checkpoints/<file>`` (resolved paths:
    ``runs`` and ``./runs/`` are the same folder), else None."""
    ckpt = Path(ckpt_path).expanduser().resolve()
    runs = (Path(save_dir or ".").expanduser() / (name or "")).resolve()
    folder = ckpt.parent.parent  # version_N
    match = re.fullmatch(r"version_(\d+)", folder.name)
    if ckpt.parent.name != "checkpoints" or folder.parent != runs or match is None:
        return None
    return int(match.group(1))


def checkpoint_step(ckpt_path: str | Path) -> int:
    """The checkpoint's global step (memory-mapped: the weights are not read)."""
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True, mmap=True)
    return int(ckpt.get("global_step", 0))


def continue_run_folder(config: Any) -> Path | None:
    """For ``fit --ckpt_path FILE`` with FILE in a run's own ``checkpoints/`` folder: set each
    ResumableCSVLogger without a ``version`` of its own to that run's, to continue from the
    checkpoint's step. Returns the run folder continued, or None (a new ``version_N``, as before:
    a checkpoint copied elsewhere, another corpus's, another ``default_root_dir``)."""
    ckpt_path = config.get("ckpt_path")
    if not ckpt_path or not Path(ckpt_path).is_file():
        return None  # none, or "last"/"hpc": Lightning looks for those in a new folder
    continued = None
    for logger in loggers_of(config.trainer):
        args = logger.init_args
        if not entry_is(logger, ResumableCSVLogger) or args.get("version") is not None:
            continue  # Lightning's own CSVLogger would delete metrics.csv; a version the user chose wins
        version = run_version(ckpt_path, args.get("save_dir") or ".", args.get("name"))
        if version is None:
            continue
        continued = Path(args.get("save_dir") or ".") / (args.get("name") or "") / f"version_{version}"
        if is_rank_zero():  # before anything is prepared or any logger starts (the CSV logger keeps it, then)
            hold(continued)
        args.version, args.continue_from_step = version, checkpoint_step(ckpt_path)
        rank_zero_note(f"charlm: continuing the run in {continued} from step {args.continue_from_step} "
                       f"(metrics.csv, samples, neuron pages and checkpoints go on in that folder).")
    if continued is not None:
        # ModelCheckpoint's note on setup; here the folder is meant to be in use
        warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
    return continued

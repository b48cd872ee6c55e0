"""Lightning's CSVLogger, able to continue a run's ``metrics.csv`` when a fit resumes in its folder.

Lightning's writer deletes the ``metrics.csv`` it finds in its folder ("Previous log files in this
directory will be deleted"), so a resumed fit that continues its run folder (``charlm.train.run_folder``)
would lose every row logged before the interrupt. This one keeps them, adopts the file's header,
and drops the rows logged after the checkpoint was written (the resumed fit logs those steps again).
Every rewrite of the file is atomic: a temp file in the same folder, fsynced, renamed over it. The logger
holds its run folder's lock while it writes (charlm.train.run_folder: one writer per run folder).
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger as _LightningCSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.utilities import rank_zero_only

from charlm.compat import csv_experiment, is_local_path
from charlm.train.run_folder import LOCK_NAME, hold, release
from datamodules.io.atomic_files import write_atomically


def _step(row: dict[str, str]) -> int | None:
    try:
        return int(float(row.get("step") or ""))
    except ValueError:
        return None


def _only_the_lock(folder: str) -> bool:
    """Whether ``folder`` holds nothing but the lock its writer took (charlm.train.run_folder)."""
    return is_local_path(folder) and os.path.isdir(folder) and os.listdir(folder) == [LOCK_NAME]


def write_rows_atomically(path: Path, fieldnames: list[str], rows: list[dict[str, Any]]) -> None:
    """Replace the CSV file ``path`` by ``fieldnames`` and ``rows``; a kill mid-write leaves the old file whole.

    Fields outside ``fieldnames`` are left out; a None (DictReader's value for the missing fields of a
    row cut short by a kill) is written empty."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=fieldnames)
    writer.writeheader()
    writer.writerows({k: ("" if v is None else v) for k, v in row.items() if k in fieldnames} for row in rows)
    write_atomically(path, lambda file: file.write(text.getvalue().encode("utf-8")))


class ContinuingWriter(ExperimentWriter):
    """Lightning's metrics writer; with ``continue_from_step`` it continues an existing ``metrics.csv``.

    It overrides two private hooks of Lightning's writer by name (tested in tests/core/test_compat.py)."""

    def __init__(self, log_dir: str, continue_from_step: int | None = None) -> None:
        self.continue_from_step = continue_from_step
        super().__init__(log_dir=log_dir)  # calls _check_log_dir_exists

    def _check_log_dir_exists(self) -> None:
        if self.continue_from_step is None:
            if not _only_the_lock(self.log_dir):  # else Lightning warns of "previous log files" in a new folder
                super()._check_log_dir_exists()  # a new run: Lightning's (an old metrics.csv is replaced)
        elif os.path.isfile(self.metrics_file_path):
            self._keep_rows_before(self.continue_from_step)

    def _keep_rows_before(self, step: int) -> None:
        # Lightning logs step s while doing optimizer step s + 1 (its learning rate at the batch start,
        # its loss, the validation after it), so a checkpoint of global step N holds rows 0 .. N - 1
        path = Path(self.metrics_file_path)
        with open(path, newline="") as file:
            reader = csv.DictReader(file)
            rows = list(reader)
            header = list(reader.fieldnames or [])
        kept = [row for row in rows if (_step(row) is None or _step(row) < step)]
        self.metrics_keys = header  # later saves append under it (or widen it, as Lightning does)
        if len(kept) < len(rows) and header:
            write_rows_atomically(path, header, kept)

    def _rewrite_with_new_header(self, fieldnames: list[str]) -> None:
        # Lightning rewrites the whole file in place when a new metric appears: atomically here
        path = Path(self.metrics_file_path)
        with open(path, newline="") as file:
            rows = list(csv.DictReader(file))
        write_rows_atomically(path, fieldnames, rows)


class ResumableCSVLogger(_LightningCSVLogger):
    """Lightning's CSVLogger (``metrics.csv`` and ``hparams.yaml`` in ``save_dir/name/version_N``)
    that can continue the ``metrics.csv`` of a resumed run instead of deleting it."""

    def __init__(
        self,
        save_dir: str | Path,
        name: str | None = "lightning_logs",
        version: int | str | None = None,
        prefix: str = "",
        flush_logs_every_n_steps: int = 100,
        continue_from_step: int | None = None,
    ) -> None:
        """
        Args:
            save_dir: folder holding the runs (``""`` in charlm's config: ``--trainer.default_root_dir``).
            name: subfolder of this experiment (null in charlm's config: named after the corpus).
            version: the run's folder, ``version_<N>`` for an int N or the string itself; None: the next
                free ``version_<N>`` (``fit --ckpt_path`` of a checkpoint in a run's own
                ``checkpoints/`` folder sets it to that run's N).
            prefix: put at the beginning of every metric name.
            flush_logs_every_n_steps: how often rows are written to disk.
            continue_from_step: keep the ``metrics.csv`` already in the run folder and append to it,
                first dropping its rows of steps >= this (logged after the checkpoint the fit resumes
                from, and logged again by it). ``fit --ckpt_path`` sets it to the checkpoint's global
                step along with ``version``. None: a new ``metrics.csv`` (an old one is replaced).
        """
        super().__init__(save_dir, name=name, version=version, prefix=prefix,
                         flush_logs_every_n_steps=flush_logs_every_n_steps)
        self.continue_from_step = continue_from_step
        self._locked: str | None = None  # the run folder whose lock this logger holds

    @property
    @rank_zero_experiment
    def experiment(self) -> ContinuingWriter:
        """The metrics writer (rank 0 only; created on first use)."""
        return csv_experiment(self, self._writer)

    def _writer(self, log_dir: str) -> ContinuingWriter:
        # before metrics.csv is touched: a run folder has one writer (charlm.train.run_folder), released in finalize
        if is_local_path(log_dir):  # (a remote folder, s3://..., cannot be locked so)
            hold(log_dir)
            self._locked = log_dir
        return ContinuingWriter(log_dir, self.continue_from_step)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        """Write what is left and give back the run folder's lock (the fit's end, however it ended)."""
        super().finalize(status)
        if self._locked is not None:
            release(self._locked)
            self._locked = None

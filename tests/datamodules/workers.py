"""Functions run in spawned processes by the data tests; this module imports no Lightning, so a
child starts in a fraction of a second."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path


def prepare_tarball_at_once(folder: Path, tarball: Path, barrier, results) -> None:
    """Wait for the other process at ``barrier``, then prepare ``folder`` from ``tarball`` as
    LinuxDataModule.prepare_data does; put on ``results`` whether this process read the tarball
    (its progress bar, "Reading <name>", was shown), or the error it ended in."""
    from datamodules.sources.files import prepare_tarball

    progress = io.StringIO()
    barrier.wait()
    try:
        with contextlib.redirect_stderr(progress):
            prepare_tarball(folder, tarball, [".c", ".h"])
    except Exception as err:  # reported to the test, which fails at once
        results.put(f"{type(err).__name__}: {err}")
        raise
    results.put(f"Reading {tarball.name}" in progress.getvalue())

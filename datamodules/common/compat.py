"""Every place the data modules rely on Lightning, tarfile or datasets beyond their public API, one
function each.

Each function says in its first line why the public API is not enough; tests/datamodules/test_compat.py
runs each against the installed library and fails if the library stops behaving so (the ranges in
pyproject.toml are the ones tested). charlm's own reaches are in ``charlm.compat``.
"""

from __future__ import annotations

import tarfile
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import lightning as L


# --- Lightning: where a resumed fit stands in its epoch -------------------------------------------------
def batches_done_before_resume(trainer: L.Trainer) -> int | None:
    """Training batches of the current epoch that the checkpoint a fit resumes from had completed, or
    None when fit is not resuming: Lightning restores this position into its loops only, and a data
    loader without state of its own (charlm's streams) must skip those batches itself."""
    loop = trainer.fit_loop
    if not loop.restarting:
        return None
    progress = loop.epoch_loop.batch_progress
    done = progress.current.completed
    if progress.total.processed == progress.total.started and progress.total.completed == progress.total.processed - 1:
        # saved in on_train_batch_end (ModelCheckpoint(every_n_train_steps=...)): that batch was trained, but
        # Lightning counts it as done only later, in its epoch loop's reset ("restarted_on_train_batch_end")
        done += 1
    return done


# --- tarfile: the end-of-archive marker ---------------------------------------------------------------
def end_aware_tarinfo() -> type[tarfile.TarInfo]:
    """A TarInfo class whose ``end_marker_seen`` says whether tarfile met tar's all-zero end block:
    its stream mode ends silently at a cut or a garbage header. It relies on tarfile parsing every
    header block, the end block included, through ``TarInfo.frombuf``. One class per archive, so the
    note is that archive's."""

    class EndAwareTarInfo(tarfile.TarInfo):
        end_marker_seen = False

        @classmethod
        def frombuf(cls, buf: bytes, encoding: str, errors: str) -> tarfile.TarInfo:
            if len(buf) == tarfile.BLOCKSIZE and buf.count(0) == tarfile.BLOCKSIZE:
                cls.end_marker_seen = True
            return super().frombuf(buf, encoding, errors)

    return EndAwareTarInfo


def block_after_end_marker(archive: tarfile.TarFile) -> bytes:
    """The block after the first end block (the second must follow it): tarfile stops reading after
    the first, and only its undocumented ``fileobj`` (in stream mode, its reader) reads on."""
    return archive.fileobj.read(tarfile.BLOCKSIZE)


# --- datasets: which data a loaded dataset holds --------------------------------------------------------
def dataset_fingerprint(ds: Any) -> str:
    """A hash of a loaded ``datasets.Dataset``'s source and content (another for changed data files):
    datasets keeps it private, and it is the only identity that costs no pass over the rows."""
    return ds._fingerprint


def packaged_builders() -> frozenset[str]:
    """The names ``datasets`` takes for its packaged builders (parquet, csv, json, text, ...) before any folder or
    hub id: they read local data files, and without ``data_files`` those of the current folder. datasets lists
    them only in a private table."""
    from datasets.packaged_modules import _PACKAGED_DATASETS_MODULES

    return frozenset(_PACKAGED_DATASETS_MODULES)

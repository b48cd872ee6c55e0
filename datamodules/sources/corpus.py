"""A corpus ready to be prepared: how to stream its bytes (``Corpus``), or the members of a tarball that are
first copied out in path order (``TarballCorpus``). A data module's ``_corpus`` describes one; preparing it
writes the token cache (datamodules.io.prepare)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from datamodules.io.fetch import Download, set_aside_if_bad
from datamodules.io.prepare import ChunkSource, prepare
from datamodules.sources.files import prepare_tarball


@dataclass(frozen=True)
class Corpus:
    """A corpus ready to be prepared: how to stream it, and what names it."""

    chunks: ChunkSource  # streams the raw bytes, again on every call
    source: str  # a path or URL, for messages
    size: int | None  # raw size in bytes, for progress bars
    key: str  # the prepared folder's name; changes whenever the content does
    sha256: str | None = None  # if set, the streamed bytes must hash to this
    mismatch_hint: str = "Check where it came from."  # what to do when they do not
    download: Download | None = None  # the cached download it is read from: set aside if it proves damaged or wrong

    def prepare(self, folder: Path) -> None:
        """Prepare ``folder`` from the streamed bytes (datamodules.io.prepare)."""
        with set_aside_if_bad(self.download):
            prepare(folder, self.chunks, self.source, self.size, self.sha256, self.mismatch_hint)


@dataclass(frozen=True)
class TarballCorpus:
    """The members of a (compressed) tarball whose names end in ``extensions``, in path order.

    A tarball streams its members in archive order, not path order, so it cannot be a ``Corpus``
    as it is: preparing copies the members out in one pass into a spool file inside the prepared
    folder, prepares that like a ``Corpus``, and deletes it (datamodules.sources.files.prepare_tarball).
    """

    tarball: Path
    extensions: tuple[str, ...]
    key: str  # the prepared folder's name; changes whenever the content does
    download: Download | None = None  # set when ``tarball`` is a cached download: set aside if it proves damaged

    @property
    def source(self) -> str:
        """The tarball's path, for messages."""
        return str(self.tarball)

    def prepare(self, folder: Path) -> None:
        """Prepare ``folder`` from the tarball's matching members (as ``Corpus.prepare``, a damaged download is
        moved aside so the next run fetches it again; the user's own tarball is never touched)."""
        with set_aside_if_bad(self.download):
            prepare_tarball(folder, self.tarball, self.extensions)

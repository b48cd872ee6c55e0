"""The Linux kernel source, as in Karpathy's post: every ``.c`` and ``.h`` file, concatenated.

Files are ordered by their path inside the tree (as strings), so a release tarball and a
checkout of the same release give the same corpus. Sources: a kernel.org release by version
(checked against kernel.org's published sha256sums), a local tarball (Debian's ``linux-source-6.1``
package puts one in /usr/src), or a local source tree.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from datamodules.base import CharDataModule
from datamodules.common.errors import check_string_list
from datamodules.common.rank_zero import rank_zero_note
from datamodules.io.fetch import (
    ChecksumMismatchError,
    CorpusUnavailableError,
    Download,
    cached_download,
    download,
    download_over,
)
from datamodules.sources.corpus import Corpus, TarballCorpus
from datamodules.sources.files import SKIP_FOLDERS, expand_paths, files_chunks

MIRROR = "https://cdn.kernel.org/pub/linux/kernel"
TARBALL_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar.bz2", ".tbz2")


def release_sha256(sums_file: Path, tarball: str) -> str:
    """The sha256 that kernel.org's ``sha256sums.asc`` lists for ``tarball``."""
    for line in sums_file.read_text(errors="replace").splitlines():
        match = re.fullmatch(r"([0-9a-f]{64})\s+\*?(\S+)", line.strip())
        if match and match[2] == tarball:
            return match[1]
    raise CorpusUnavailableError(f"{sums_file} lists no checksum for {tarball}: is the version right?")


def refetch_list(url: str, sums: Path) -> None:
    """Replace the cached checksum list ``sums`` by the mirror's current one at ``url`` (fetch.download_over: a
    reader, another rank, sees the old list or the new one, never none; when the download fails, the cached list
    stays as it was)."""
    download_over(url, sums, None)


class LinuxDataModule(CharDataModule):
    """Every ``.c``/``.h`` file of a Linux source tree, from a release, a tarball or a checkout."""

    def __init__(
        self,
        path: str | None = None,
        version: str | None = None,
        mirror: str = MIRROR,
        extensions: list[str] | None = None,
        skip_folders: tuple[str, ...] = SKIP_FOLDERS,
        **kwargs,
    ) -> None:
        """
        Args:
            path: a kernel tarball (.tar.xz, .tar.gz, ...) or a source tree (a folder).
            version: a kernel.org release to download instead, e.g. 6.1 or 6.6.30.
            mirror: kernel.org or a mirror with the same layout (v6.x/linux-6.1.tar.xz, v6.x/sha256sums.asc).
            extensions: file name endings to keep (default: .c and .h).
            skip_folders: in a source tree, folders not entered, by name (patterns): every hidden one (.git, ...),
                __pycache__ and node_modules; '[]' enters them all. Said on stderr when they held such files.
        """
        super().__init__(**kwargs)
        if (path is None) == (version is None):
            raise ValueError("Give exactly one of --data.path (a kernel tarball or source tree) and --data.version.")
        check_string_list("--data.extensions", extensions, ".c")
        check_string_list("--data.skip_folders", skip_folders, ".git")
        self.path, self.version, self.mirror = path, version, mirror.rstrip("/")
        self.extensions = list(extensions) if extensions else [".c", ".h"]
        self.skip_folders = tuple(skip_folders)

    def _tarball(self) -> tuple[Path, Download | None]:
        """The local tarball to read: the given one (None: never moved), or the release downloaded and verified.

        A cached checksum list is kept (offline, a list put there by hand is used): the mirror's current one is
        fetched again only when the cached one lists no entry for the release (it predates it), or when the
        download fails the listed checksum (the list names a tarball that proved damaged and was set aside).
        """
        if self.path is not None:
            return Path(self.path).expanduser(), None
        major = self.version.split(".")[0]
        folder = self.cache_dir / "downloads" / "linux"
        name, sums = f"linux-{self.version}.tar.xz", folder / f"sha256sums-v{major}.x.asc"
        sums_url, url = f"{self.mirror}/v{major}.x/sha256sums.asc", f"{self.mirror}/v{major}.x/{name}"
        cached = sums.is_file()  # else the list fetched now is the current one: no second fetch
        download(sums_url, sums, None)
        try:
            expected = release_sha256(sums, name)
        except CorpusUnavailableError:
            if not cached:
                raise
            try:
                refetch_list(sums_url, sums)
            except CorpusUnavailableError as err:
                raise CorpusUnavailableError(
                    f"Cannot check {url}: the cached {sums} lists no checksum for it, and the current list could "
                    f"not be fetched: {str(err).splitlines()[0]} If this machine is offline, fetch the tarball "
                    f"elsewhere and point --data.path at it, or put kernel.org's current sha256sums.asc at {sums}; "
                    f"then run again."
                ) from None
            expected, cached = release_sha256(sums, name), False  # the current list: a mismatch is not its age
        try:
            got = cached_download(url, folder / name, expected)
        except ChecksumMismatchError as mismatch:
            if not cached:
                raise
            try:
                refetch_list(sums_url, sums)
            except CorpusUnavailableError:
                raise mismatch from None  # the error names the tarball, and the cached list stays
            current = release_sha256(sums, name)
            if current == expected:
                raise mismatch from None  # the current list agrees: downloading again would fail the same way
            got = cached_download(url, folder / name, current)
        return got.file, got

    def _corpus(self) -> Corpus | TarballCorpus:
        source, fetched = self._tarball()
        ext = "".join(self.extensions)
        if source.is_dir():
            found = expand_paths(str(source), self.extensions, self.skip_folders)
            if note := found.skipped_note(str(source)):
                rank_zero_note(note)
            files = found.files
            if not files:
                raise ValueError(f"--data.path: {source} holds no files ending in {', '.join(self.extensions)}.")
            listing = hashlib.sha256()
            for f in files:
                stat = f.stat()
                listing.update(f"{f.relative_to(source).as_posix()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
            key = f"linux-tree-{listing.hexdigest()[:16]}-{ext}"
            return Corpus(files_chunks(files), str(source), sum(f.stat().st_size for f in files), key)
        if not source.is_file():
            raise FileNotFoundError(f"--data.path: {source} is neither a tarball nor a folder.")
        if not source.name.endswith(TARBALL_SUFFIXES):
            raise ValueError(f"--data.path: {source} is not a tarball ({', '.join(TARBALL_SUFFIXES)}) or a folder.")
        stat = source.stat()
        key = f"linux-{source.name}-{stat.st_size}-{stat.st_mtime_ns}-{ext}"
        return TarballCorpus(source, tuple(self.extensions), key, fetched)

"""Streaming a corpus out of files, folders, globs, zip members and tarballs, in a fixed order.

Archives are read as streams, never extracted: no member can write anywhere, whatever its name.
Members whose names are absolute or climb out with ``..`` are skipped all the same, so a hostile
archive cannot smuggle in files from elsewhere under a harmless name.
"""

from __future__ import annotations

import bz2
import fnmatch
import gzip
import lzma
import os
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from tqdm.auto import tqdm

from datamodules.common.compat import block_after_end_marker, end_aware_tarinfo
from datamodules.common.errors import CacheWriteError, CorruptArchiveError, cache_write_error, corrupt_archive
from datamodules.io.cache_files import folder_lock, sweep_cache_folders
from datamodules.io.prepare import ChunkSource, is_prepared, prepare

__all__ = ["SKIP_FOLDERS", "CorruptArchiveError", "Found", "expand_paths", "files_chunks", "prepare_tarball",
           "spool_chunks", "spool_tar_members", "text_files", "zip_member_chunks", "zip_member_size"]

CHUNK = 16 << 20
BINARY_SNIFF = 8000  # like git: a NUL byte in the first 8000 bytes marks a file as binary

# what reading a damaged archive raises, besides the archive modules' own errors: a cut file
# (EOFError), damaged deflate or xz data (zlib.error, LZMAError), a bit-flipped compression
# method (NotImplementedError), an unreadable header field (ValueError)
_DAMAGE = (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, NotImplementedError,
           ValueError, OSError)


def is_binary(head: bytes) -> bool:
    return b"\0" in head[:BINARY_SNIFF]


def safe_member_name(name: str) -> bool:
    path = PurePosixPath(name)
    return not path.is_absolute() and ".." not in path.parts and not name.startswith("\\")


def _damage(path: Path, err: BaseException, todo: str | None = None) -> BaseException:
    """The error to raise for ``err`` met while reading the archive ``path``."""
    if isinstance(err, (PermissionError, FileNotFoundError)):
        return err  # the file itself cannot be opened: not damage, and the message already names it
    kind = type(err).__name__ if type(err).__name__ != "error" else f"{type(err).__module__}.error"  # zlib.error
    return corrupt_archive(path, f"{kind}: {err}", todo)


# --- zip ------------------------------------------------------------------------------------------
def zip_member_chunks(zip_path: Path, member: str, chunk_size: int = CHUNK) -> ChunkSource:
    """Stream one member of a zip file (its CRC is checked as it is read)."""

    def read() -> Iterator[bytes]:
        try:
            with zipfile.ZipFile(zip_path) as archive, archive.open(member) as f:
                while chunk := f.read(chunk_size):
                    yield chunk
        except KeyError:
            raise _no_member(zip_path, member) from None
        except _DAMAGE as err:
            raise _damage(zip_path, err) from None

    return read


def zip_member_size(zip_path: Path, member: str) -> int:
    """The uncompressed size of ``member`` in the zip archive; one-line errors for a damaged archive."""
    try:
        with zipfile.ZipFile(zip_path) as archive:
            return archive.getinfo(member).file_size
    except KeyError:
        raise _no_member(zip_path, member) from None
    except _DAMAGE as err:
        raise _damage(zip_path, err) from None


def _no_member(zip_path: Path, member: str) -> CorruptArchiveError:
    return corrupt_archive(zip_path, f"it has no member named {member!r}: is it the right archive?")


# --- plain files, folders and globs ---------------------------------------------------------------
# Folders a walk (a folder given as --data.path, or ``**`` in a glob) does not enter, as patterns on their
# names: every hidden one (.git, .hg, .svn: version control, whose text is the history, not the sources;
# .venv, .tox, .mypy_cache: environments and tool caches) and two without a dot (__pycache__, node_modules).
# A folder named on its own (--data.path repo/.git, or a glob part such as .git/ or .*/) is read all the same.
SKIP_FOLDERS = (".*", "__pycache__", "node_modules")


@dataclass(frozen=True)
class Found:
    """What a file, folder or glob names: its regular files, and the folders the walk did not enter."""

    files: list[Path]
    skipped: dict[Path, int]  # a folder matching skip_folders -> the files in it the walk would have taken (> 0)

    def skipped_note(self, spec: str) -> str | None:
        """One line for stderr saying what was skipped and how to read it too; None when nothing was."""
        if not self.skipped:
            return None
        total, base = sum(self.skipped.values()), Path(spec).expanduser()
        names = [f"{_shown_under(folder, base)} ({count:,})" for folder, count in list(self.skipped.items())[:5]]
        more = ", ..." if len(self.skipped) > 5 else ""
        return (f"charlm: --data.path {spec}: skipped {_count(total, 'file')} in {_count(len(self.skipped), 'folder')} "
                f"that --data.skip_folders names (version control, environments, caches): {', '.join(names)}{more}. "
                f"To read them too, pass --data.skip_folders '[]' (or a shorter list), or name such a folder itself "
                f"as --data.path.")


def _count(n: int, what: str) -> str:
    return f"{n:,} {what}" + ("" if n == 1 else "s")


def _shown_under(folder: Path, base: Path) -> str:
    """``folder`` relative to the folder given (or to the glob's fixed part), as the user reads it."""
    while base != base.parent and not base.is_dir():  # a glob: its part before the first wildcard
        base = base.parent
    try:
        return folder.relative_to(base).as_posix()
    except ValueError:
        return str(folder)


def expand_paths(spec: str, extensions: Sequence[str] | None = None,
                 skip_folders: Sequence[str] = SKIP_FOLDERS) -> Found:
    """A file, a folder (searched recursively) or a glob (``**`` allowed) -> regular files, sorted.

    Every real file comes once: a folder's links are not followed, ``**`` never descends through a
    link to a folder (``d/self -> .`` would repeat the corpus 41 times, ``lib64 -> lib`` twice), and
    a file reached under two names (a hard link, a linked folder matched by ``*``) keeps the first
    name in sorted order. Like the shell, wildcards skip names that start with a dot. A folder walk or
    ``**`` does not enter folders whose names match ``skip_folders`` (SKIP_FOLDERS: .git and the other
    hidden ones, __pycache__, node_modules); ``Found.skipped`` says which held files, and how many.
    """
    path = Path(spec).expanduser()
    ends = tuple(extensions) if extensions else ("",)  # every name ends in ""
    walk = _Walk(tuple(skip_folders))
    if path.is_file():
        return Found([path], {})
    if path.is_dir():
        # ordered by the relative path as a string, the order a tarball's sorted index uses too;
        # linked folders are not entered, and links to files are dropped
        files = sorted(_files_below(path, walk), key=lambda p: p.relative_to(path).as_posix())
        unwalked = {folder: _files_below(folder, _Walk(())) for folder in walk.skipped}
    elif any(_magic(part) for part in path.parts):
        files = sorted({p for p in _glob(path, walk) if p.is_file()})
        unwalked = {folder: (p for p in _match(folder, rest, _Walk(())) if p.is_file())
                    for folder, rest in walk.skipped.items()}
    else:
        raise FileNotFoundError(f"--data.path: {spec} is not a file, a folder or a glob that exists.")
    files = [p for p in files if p.name.endswith(ends)]
    counts = {folder: sum(p.name.endswith(ends) for p in found) for folder, found in unwalked.items()}
    return Found(_each_file_once(files), {folder: n for folder, n in counts.items() if n})


@dataclass
class _Walk:
    """The folder names a walk does not enter, and the folders it did not enter (each with the rest of the
    glob that would have been matched below it: ``**`` and what follows)."""

    skip: tuple[str, ...]
    skipped: dict[Path, tuple[str, ...]] = field(default_factory=dict)

    def enters(self, entry: os.DirEntry, rest: tuple[str, ...] = ()) -> bool:
        """Whether to walk into the folder ``entry`` (not a link to one, not a skipped one)."""
        if not entry.is_dir(follow_symlinks=False):
            return False
        if any(fnmatch.fnmatchcase(entry.name, pattern) for pattern in self.skip):
            self.skipped[Path(entry.path)] = ("**", *rest)
            return False
        return True


def _files_below(directory: Path, walk: _Walk) -> Iterator[Path]:
    """The regular files (not links) in ``directory`` and the folders below it that ``walk`` enters."""
    for folder in _folders_below(directory, walk):
        yield from (Path(e.path) for e in _entries(folder) if e.is_file(follow_symlinks=False))


def _magic(part: str) -> bool:
    return any(ch in part for ch in "*?[")


def _glob(pattern: Path, walk: _Walk) -> Iterator[Path]:
    """The paths ``pattern`` matches, as glob.glob(recursive=True) finds them but without following
    links to folders in ``**`` (glob.glob follows them, into cycles), nor into the folders ``walk`` skips."""
    parts = pattern.parts
    first = next(i for i, part in enumerate(parts) if _magic(part) or part == "**")
    yield from _match(Path(*parts[:first]) if first else Path(), parts[first:], walk)


def _match(directory: Path, parts: tuple[str, ...], walk: _Walk) -> Iterator[Path]:
    head, rest = parts[0], parts[1:]
    if head == "**":  # zero or more folders below `directory`
        for folder in _folders_below(directory, walk, rest):
            yield from (_match(folder, rest, walk) if rest
                        else (Path(e.path) for e in _entries(folder) if not _hidden(e)))
    elif not _magic(head):
        child = directory / head
        if not rest:
            yield child
        elif child.is_dir():
            yield from _match(child, rest, walk)
    else:
        for entry in _entries(directory):
            if fnmatch.fnmatchcase(entry.name, head) and (not _hidden(entry) or head.startswith(".")):
                if not rest:
                    yield Path(entry.path)
                elif entry.is_dir():
                    yield from _match(Path(entry.path), rest, walk)


def _folders_below(directory: Path, walk: _Walk, rest: tuple[str, ...] = ()) -> Iterator[Path]:
    """``directory`` and every folder under it that ``walk`` enters (never through links); ``rest``: the part
    of a glob after ``**``, noted with each folder skipped."""
    yield directory
    for entry in _entries(directory):
        if walk.enters(entry, rest):
            yield from _folders_below(Path(entry.path), walk, rest)


def _entries(directory: Path) -> list[os.DirEntry]:
    """The entries of ``directory`` (none if it cannot be listed)."""
    try:
        with os.scandir(directory) as it:
            return list(it)
    except OSError:
        return []


def _hidden(entry: os.DirEntry) -> bool:
    return entry.name.startswith(".")


def _each_file_once(files: list[Path]) -> list[Path]:
    seen: set[tuple[int, int]] = set()
    unique = []
    for p in files:
        stat = p.stat()
        if (stat.st_dev, stat.st_ino) not in seen:
            seen.add((stat.st_dev, stat.st_ino))
            unique.append(p)
    return unique


def text_files(paths: list[Path]) -> tuple[list[Path], list[Path]]:
    """Split paths into (text files, binary files) by the NUL-byte rule."""
    text, binary = [], []
    for p in paths:
        with open(p, "rb") as f:
            (binary if is_binary(f.read(BINARY_SNIFF)) else text).append(p)
    return text, binary


def coalesce(pieces: Iterator[bytes], size: int = CHUNK) -> Iterator[bytes]:
    """Regroup many small pieces (one per source file) into chunks of about ``size`` bytes."""
    buffer = bytearray()
    for piece in pieces:
        buffer += piece
        if len(buffer) >= size:
            yield bytes(buffer)
            buffer.clear()
    if buffer:
        yield bytes(buffer)


def files_chunks(paths: list[Path], chunk_size: int = CHUNK) -> ChunkSource:
    """Stream the files one after the other, in the given order."""

    def pieces() -> Iterator[bytes]:
        for p in paths:
            with open(p, "rb") as f:
                while chunk := f.read(chunk_size):
                    yield chunk

    return lambda: coalesce(pieces(), chunk_size)


# --- tarballs -------------------------------------------------------------------------------------
def prepare_tarball(folder: Path, tar_path: Path, extensions: Sequence[str]) -> None:
    """Prepare ``folder`` from the members of ``tar_path`` whose names end in ``extensions``.

    One streaming pass over the (compressed) tarball into a flat spool file inside ``folder``,
    then prepare() over the spool in path order; the spool is deleted afterwards. All under the
    folder's lock, taken before reading: a parallel run waits, then finds the work done (prepare()
    takes the same lock again, which is re-entrant within a process).
    """
    if is_prepared(folder):
        return
    with folder_lock(folder):
        if is_prepared(folder):  # a parallel run prepared it while this one waited
            return
        sweep_cache_folders(folder)
        try:  # the pid in the name: what a run killed while spooling leaves, the next one removes
            spool_dir = tempfile.TemporaryDirectory(dir=folder, prefix=f".spool-{os.getpid()}-")
        except OSError as err:
            raise cache_write_error(folder, err) from None
        with spool_dir as tmp:
            spool = Path(tmp) / "members.bin"
            index = spool_tar_members(tar_path, spool, extensions)
            if not index:
                raise ValueError(f"--data.path: {tar_path} holds no files ending in {', '.join(extensions)}.")
            prepare(folder, spool_chunks(spool, index), str(tar_path), sum(size for _, _, size in index))


def spool_tar_members(
    tar_path: Path, spool: Path, extensions: Sequence[str], strip_top: bool = True
) -> list[tuple[str, int, int]]:
    """Copy the matching regular members of a (compressed) tarball, in one streaming pass, into the
    flat file ``spool``; return (name, offset, size) sorted by name, so a tarball and a checkout
    of the same tree give the same corpus. ``strip_top`` drops the top folder (``linux-6.1/``).
    """
    index: list[tuple[str, int, int]] = []
    total = tar_path.stat().st_size
    tarinfo = end_aware_tarinfo()  # notes the end-of-archive marker
    try:
        out = open(spool, "wb", buffering=0)  # noqa: SIM115  (entered below; unbuffered: a full disk shows at once)
    except OSError as err:
        raise cache_write_error(spool, err) from None
    try:
        with out, open(tar_path, "rb") as raw, _decompressed(raw) as stream, tarfile.open(
            fileobj=stream, mode="r|", tarinfo=tarinfo  # its default 10 KB blocks: it copies its buffer per read
        ) as archive, tqdm(total=total, unit="B", unit_scale=True, desc=f"Reading {tar_path.name}") as bar:
            for member in archive:
                bar.update(min(total, raw.tell()) - bar.n)  # the position in the file on disk is progress
                if not member.isfile() or not safe_member_name(member.name):
                    continue
                name = member.name.split("/", 1)[1] if strip_top and "/" in member.name else member.name
                if not name.endswith(tuple(extensions)):
                    continue
                f = archive.extractfile(member)
                offset = out.tell()
                while chunk := f.read(CHUNK):
                    _write(out, chunk, spool)
                index.append((name, offset, out.tell() - offset))
            _check_end_marker(archive, tarinfo, tar_path)
            # to the end of the compressed stream: gzip, bz2 and xz check their CRCs and lengths
            # there (an EOFError for a stream cut short, even on a member boundary)
            while stream.read(CHUNK):
                pass
            bar.update(total - bar.n)
    except (CorruptArchiveError, CacheWriteError):
        spool.unlink(missing_ok=True)
        raise
    except _DAMAGE as err:
        spool.unlink(missing_ok=True)
        raise _damage(tar_path, err) from None
    return sorted(index)


def _decompressed(raw: BinaryIO) -> BinaryIO:
    """``raw`` decompressed by its magic number (gzip, bzip2, xz) or as is. These readers, unlike
    tarfile's own stream mode, verify the checksums (tarfile never checks a .tar.gz's CRC)."""
    head = raw.read(6)
    raw.seek(0)
    if head.startswith(b"\x1f\x8b"):
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if head.startswith(b"BZh"):
        return bz2.BZ2File(raw, "rb")
    if head.startswith(b"\xfd7zXZ\x00"):
        return lzma.LZMAFile(raw, "rb")
    return raw  # a plain tar (closing it twice is harmless)


def _write(out: BinaryIO, data: bytes, path: Path) -> None:
    """Write all of ``data`` to the unbuffered spool; a full disk is reported as such, not as a damaged tarball."""
    view = memoryview(data)
    try:
        while view:
            view = view[out.write(view):]
    except OSError as err:
        raise cache_write_error(path, err) from None


def _check_end_marker(archive: tarfile.TarFile, tarinfo: type, tar_path: Path) -> None:
    """A tar archive ends with two zero blocks; without them it was cut (a plain .tar cut on a member
    boundary looks complete to tarfile) or a header is damaged, and members are missing."""
    # tarfile stopped after reading the first zero block; the second one follows it in the stream
    if not tarinfo.end_marker_seen or block_after_end_marker(archive) != bytes(tarfile.BLOCKSIZE):
        raise corrupt_archive(tar_path, "it ends without tar's end-of-archive marker, so members are missing")


def spool_chunks(spool: Path, index: list[tuple[str, int, int]], chunk_size: int = CHUNK) -> ChunkSource:
    """Stream the spooled members in index order."""

    def pieces() -> Iterator[bytes]:
        with open(spool, "rb") as f:
            for _, offset, size in index:
                f.seek(offset)
                left = size
                while left > 0:
                    chunk = f.read(min(chunk_size, left))
                    if not chunk:
                        raise RuntimeError(f"{spool} is shorter than its index says; run again.")
                    left -= len(chunk)
                    yield chunk

    return lambda: coalesce(pieces(), chunk_size)

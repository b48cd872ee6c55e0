"""Streaming a corpus out of files, folders, globs, zip members and tarballs, in a fixed order.

Archives are read as streams, never extracted: no member can write anywhere, whatever its name.
Members whose names are absolute or climb out with ``..`` are skipped all the same, so a hostile
archive cannot smuggle in files from elsewhere under a harmless name.
"""

from __future__ import annotations

import glob as globlib
import os
import tarfile
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePosixPath

from tqdm.auto import tqdm

from datamodules.prepare import ChunkSource

CHUNK = 16 << 20
BINARY_SNIFF = 8000  # like git: a NUL byte in the first 8000 bytes marks a file as binary


class CorruptArchiveError(RuntimeError):
    """An archive is truncated or damaged."""


def is_binary(head: bytes) -> bool:
    return b"\0" in head[:BINARY_SNIFF]


def safe_member_name(name: str) -> bool:
    path = PurePosixPath(name)
    return not path.is_absolute() and ".." not in path.parts and not name.startswith("\\")


# --- zip ------------------------------------------------------------------------------------------
def zip_member_chunks(zip_path: Path, member: str, chunk_size: int = CHUNK) -> ChunkSource:
    """Stream one member of a zip file (its CRC is checked as it is read)."""

    def read() -> Iterator[bytes]:
        try:
            with zipfile.ZipFile(zip_path) as archive, archive.open(member) as f:
                while chunk := f.read(chunk_size):
                    yield chunk
        except KeyError:
            raise CorruptArchiveError(f"{zip_path} has no member named {member!r}.") from None
        except (zipfile.BadZipFile, EOFError, OSError) as err:
            raise CorruptArchiveError(f"{zip_path} is truncated or corrupted ({err}).") from err

    return read


def zip_member_size(zip_path: Path, member: str) -> int:
    try:
        with zipfile.ZipFile(zip_path) as archive:
            return archive.getinfo(member).file_size
    except KeyError:
        raise CorruptArchiveError(f"{zip_path} has no member named {member!r}.") from None
    except (zipfile.BadZipFile, EOFError, OSError) as err:
        raise CorruptArchiveError(f"{zip_path} is truncated or corrupted ({err}); delete it and run again.") from err


# --- plain files, folders and globs ---------------------------------------------------------------
def expand_paths(spec: str, extensions: Sequence[str] | None = None) -> list[Path]:
    """A file, a folder (searched recursively) or a glob (``**`` allowed) -> regular files, sorted.

    Symbolic links inside folders are not followed (no duplicates, no cycles).
    """
    path = Path(spec).expanduser()
    if path.is_file():
        return [path]
    if path.is_dir():
        # ordered by the relative path as a string, the order a tarball's sorted index uses too
        files = sorted((p for p in path.rglob("*") if p.is_file() and not p.is_symlink()),
                       key=lambda p: p.relative_to(path).as_posix())
    elif any(ch in spec for ch in "*?["):
        files = sorted(Path(p) for p in globlib.glob(os.path.expanduser(spec), recursive=True) if Path(p).is_file())
    else:
        raise FileNotFoundError(f"--data.path: {spec} is not a file, a folder or a glob that exists.")
    if extensions:
        files = [p for p in files if p.name.endswith(tuple(extensions))]
    return files


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
def spool_tar_members(
    tar_path: Path, spool: Path, extensions: Sequence[str], strip_top: bool = True
) -> list[tuple[str, int, int]]:
    """Copy the matching regular members of a (compressed) tarball, in one streaming pass, into the
    flat file ``spool``; return (name, offset, size) sorted by name, so a tarball and a checkout
    of the same tree give the same corpus. ``strip_top`` drops the top folder (``linux-6.1/``).
    """
    index: list[tuple[str, int, int]] = []
    total = tar_path.stat().st_size
    try:
        with tarfile.open(tar_path, mode="r|*") as archive, open(spool, "wb") as out, tqdm(
            total=total, unit="B", unit_scale=True, desc=f"Reading {tar_path.name}"
        ) as bar:
            raw = getattr(archive.fileobj, "fileobj", None)  # the file on disk: its position is progress
            for member in archive:
                if raw is not None and hasattr(raw, "tell"):
                    bar.update(min(total, raw.tell()) - bar.n)
                if not member.isfile() or not safe_member_name(member.name):
                    continue
                name = member.name.split("/", 1)[1] if strip_top and "/" in member.name else member.name
                if not name.endswith(tuple(extensions)):
                    continue
                f = archive.extractfile(member)
                offset = out.tell()
                while chunk := f.read(CHUNK):
                    out.write(chunk)
                index.append((name, offset, out.tell() - offset))
            _check_stream_complete(archive, tar_path)
            bar.update(total - bar.n)
    except CorruptArchiveError:
        spool.unlink(missing_ok=True)
        raise
    except (tarfile.TarError, EOFError, OSError, ValueError) as err:
        spool.unlink(missing_ok=True)
        raise CorruptArchiveError(f"{tar_path} is truncated or corrupted ({type(err).__name__}: {err}).") from err
    return sorted(index)


def _check_stream_complete(archive: tarfile.TarFile, tar_path: Path) -> None:
    """A truncated compressed tarball can end on a clean member boundary, where tarfile's stream
    mode just stops; read to the end and ask the decompressor whether its stream really ended."""
    stream = archive.fileobj
    while stream.read(CHUNK):
        pass
    decompressor = getattr(stream, "cmp", None)
    if decompressor is not None and hasattr(decompressor, "eof") and not decompressor.eof:
        raise CorruptArchiveError(f"{tar_path} is truncated or corrupted (its compressed stream ends early).")


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

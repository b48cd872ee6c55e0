"""Damaged archives end in CorruptArchiveError naming the file and what to do, never a raw traceback."""

from __future__ import annotations

import io
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from datamodules import Enwik8DataModule, LinuxDataModule
from datamodules.common.errors import CorruptArchiveError

MEMBER = b"".join(b"<page><title>Article %d</title> [[link]] text %d\n" % (i, i * 7919 % 1000) for i in range(3000))
SOURCES = {f"linux-6.1/drivers/d{i}.c": b"int f%d(void) { return %d; }\n" % (i, i) * 40 for i in range(6)}


def zip_bytes(name: str = "enwik8", compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as z:
        z.writestr(name, MEMBER)
    return buffer.getvalue()


def tar_bytes(mode: str = "w:xz") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as archive:
        for name, data in SOURCES.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def member_offsets(data: bytes) -> list[int]:
    """Where each member's header starts in a plain tar."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as archive:
        return [m.offset for m in archive.getmembers()]


def flip(data: bytes, at: int, mask: int = 0x55) -> bytes:
    damaged = bytearray(data)
    damaged[at] ^= mask
    return bytes(damaged)


def local_header_end(data: bytes) -> int:
    """Offset of the first member's compressed data in a zip (after its local header)."""
    name_len, extra_len = int.from_bytes(data[26:28], "little"), int.from_bytes(data[28:30], "little")
    return 30 + name_len + extra_len


def damaged_deflate(data: bytes) -> bytes:
    """Overwrite the start of the deflate stream: zlib itself refuses it (zlib.error, not a CRC failure)."""
    start = local_header_end(data)
    return data[:start] + b"\xff" * 16 + data[start + 16 :]


def bad_crc(data: bytes) -> bytes:
    """A stored (uncompressed) member with one changed byte: only its CRC-32 can tell."""
    start = local_header_end(data)
    return flip(data, start + 1000, 0x01)


def set_central_method(data: bytes, method: int) -> bytes:
    """Change the compression method in the central directory (what zipfile reads) to one it lacks."""
    at = data.rindex(b"PK\x01\x02") + 10
    return data[:at] + method.to_bytes(2, "little") + data[at + 2 :]


ZIPS: dict[str, Callable[[], bytes]] = {
    "wrong member name": lambda: zip_bytes(name="enwik9"),
    "truncated": lambda: zip_bytes()[: len(zip_bytes()) // 2],
    "random bytes": lambda: bytes(range(256)) * 64,
    "bad CRC": lambda: bad_crc(zip_bytes(compression=zipfile.ZIP_STORED)),
    "damaged deflate data": lambda: damaged_deflate(zip_bytes()),
    "unknown compression method": lambda: set_central_method(zip_bytes(), 99),
    "empty file": lambda: b"",
}
TARBALLS: dict[str, tuple[str, Callable[[], bytes]]] = {
    "truncated .tar.xz": ("linux.tar.xz", lambda: tar_bytes()[: len(tar_bytes()) // 2]),
    "bit-flipped .tar.xz": ("linux.tar.xz", lambda: flip(tar_bytes(), len(tar_bytes()) // 2)),
    "not xz at all": ("linux.tar.xz", lambda: b"just some text, no archive\n" * 50),
    "truncated .tar.gz": ("linux.tar.gz", lambda: tar_bytes("w:gz")[: len(tar_bytes("w:gz")) * 2 // 3]),
    "wrong CRC in a .tar.gz trailer": ("linux.tar.gz", lambda: flip(tar_bytes("w:gz"), len(tar_bytes("w:gz")) - 8)),
    "bit-flipped .tar.bz2": ("linux.tar.bz2", lambda: flip(tar_bytes("w:bz2"), len(tar_bytes("w:bz2")) // 2)),
    "plain .tar cut at a member boundary": ("linux.tar", lambda: tar_bytes("w")[: member_offsets(tar_bytes("w"))[3]]),
    "plain .tar with a damaged header": ("linux.tar",
                                         lambda: flip(tar_bytes("w"), member_offsets(tar_bytes("w"))[2] + 150)),
    "plain .tar cut inside a member": ("linux.tar", lambda: tar_bytes("w")[: member_offsets(tar_bytes("w"))[3] + 700]),
}


@pytest.mark.parametrize("case", list(ZIPS))
def test_damaged_enwik8_zip(tmp_path: Path, case: str) -> None:
    path = tmp_path / "my enwik8.zip"
    path.write_bytes(ZIPS[case]())
    with pytest.raises(CorruptArchiveError) as caught:
        Enwik8DataModule(path=str(path), sha256=None, cache_dir=str(tmp_path / "c")).prepare_data()
    message = str(caught.value)
    assert str(path) in message and "truncated or corrupted" in message and "--data.path" in message
    assert "\n" not in message
    assert path.is_file()  # the user's own file is never moved or deleted
    assert not list((tmp_path / "c").rglob("meta.json"))


@pytest.mark.parametrize("case", list(TARBALLS))
def test_damaged_kernel_tarball(tmp_path: Path, case: str) -> None:
    name, make = TARBALLS[case]
    path = tmp_path / name
    path.write_bytes(make())
    with pytest.raises(CorruptArchiveError) as caught:
        LinuxDataModule(path=str(path), cache_dir=str(tmp_path / "c")).prepare_data()
    message = str(caught.value)
    assert str(path) in message and "truncated or corrupted" in message and "--data.path" in message
    assert not list((tmp_path / "c").rglob("meta.json")) and not list((tmp_path / "c").rglob(".spool-*"))


@pytest.mark.parametrize("mode", ["w", "w:xz"])
def test_complete_tarballs_are_accepted(tmp_path: Path, mode: str) -> None:
    """The end-of-archive check accepts what tarfile writes, plain and compressed."""
    path = tmp_path / ("linux.tar" if mode == "w" else "linux.tar.xz")
    path.write_bytes(tar_bytes(mode))
    dm = LinuxDataModule(path=str(path), cache_dir=str(tmp_path / "c"), batch_size=1, seq_len=8, eval_batch_size=1)
    dm.setup("fit")
    text = b"".join(dm.vocab.decode(split.tolist()) for split in dm.splits.values())
    assert text == b"".join(SOURCES[k] for k in sorted(SOURCES))


def test_damaged_download_is_set_aside(http_root, tmp_path: Path) -> None:
    """Damage found while reading a downloaded zip: moved aside, so the next run downloads it again."""
    folder, url = http_root
    (folder / "enwik8.zip").write_bytes(damaged_deflate(zip_bytes()))
    dm = Enwik8DataModule(url=f"{url}/enwik8.zip", sha256=None, cache_dir=str(tmp_path / "c"))
    with pytest.raises(CorruptArchiveError, match=r"enwik8.zip \(downloaded from .*moved aside to enwik8.zip.bad"):
        dm.prepare_data()
    downloads = tmp_path / "c" / "downloads"
    assert (downloads / "enwik8.zip.bad").exists() and not (downloads / "enwik8.zip").exists()
    (folder / "enwik8.zip").write_bytes(zip_bytes())  # the mirror is fixed: the next run succeeds
    Enwik8DataModule(url=f"{url}/enwik8.zip", sha256=None, cache_dir=str(tmp_path / "c")).prepare_data()

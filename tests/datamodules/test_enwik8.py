"""enwik8 from a zip served over HTTP on 127.0.0.1: good, corrupted, truncated, missing."""

import hashlib
import zipfile

import pytest

from datamodules import Enwik8DataModule
from datamodules.io.fetch import ChecksumMismatchError, CorpusUnavailableError
from datamodules.sources.files import CorruptArchiveError

SIZE = 400_000


@pytest.fixture
def member() -> bytes:
    text = "".join(f"<page><title>Article {i}</title>[[caf\u00e9]] &amp; {i * 7919 % 1000}\n" for i in range(20_000))
    return text.encode()[:SIZE]


def make_zip(path, data: bytes, name: str = "enwik8"):
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr(name, data)
    return path


def test_download_verify_and_standard_split(http_root, tmp_path, member):
    folder, url = http_root
    make_zip(folder / "enwik8.zip", member)
    dm = Enwik8DataModule(url=f"{url}/enwik8.zip", sha256=hashlib.sha256(member).hexdigest(),
                          cache_dir=str(tmp_path / "c"), batch_size=4, seq_len=32)
    dm.setup("fit")
    assert {k: len(v) for k, v in dm.splits.items()} == {"train": 360_000, "val": 20_000, "test": 20_000}
    assert dm.vocab.decode(dm.splits["test"][-50:].tolist()) == member[-50:]  # the last 5% is the test split
    assert dm.vocab.decode(dm.splits["val"][:50].tolist()) == member[360_000:360_050]


def test_real_split_sizes_for_the_real_length():
    from datamodules.batches.sizes import split_sizes

    assert split_sizes(100_000_000, 0.05, 0.05) == (90_000_000, 5_000_000, 5_000_000)


def test_member_checksum_mismatch_is_refused(http_root, tmp_path, member):
    folder, url = http_root
    make_zip(folder / "enwik8.zip", member.replace(b"Article", b"Articel", 1))
    dm = Enwik8DataModule(url=f"{url}/enwik8.zip", sha256=hashlib.sha256(member).hexdigest(), cache_dir=str(tmp_path))
    with pytest.raises(ChecksumMismatchError, match=hashlib.sha256(member).hexdigest()):
        dm.prepare_data()
    assert not list((tmp_path / "prepared").glob("*/meta.json"))


def test_truncated_zip_is_moved_aside_and_named(http_root, tmp_path, member):
    folder, url = http_root
    data = make_zip(tmp_path / "good.zip", member).read_bytes()
    (folder / "enwik8.zip").write_bytes(data[: len(data) // 2])
    dm = Enwik8DataModule(url=f"{url}/enwik8.zip", sha256=None, cache_dir=str(tmp_path / "c"))
    with pytest.raises(CorruptArchiveError, match=r"truncated or corrupted.*run again"):
        dm.prepare_data()
    assert (tmp_path / "c/downloads/enwik8.zip.bad").exists() and not (tmp_path / "c/downloads/enwik8.zip").exists()


def test_corrupted_member_data_fails_its_crc(tmp_path, member):
    data = bytearray(make_zip(tmp_path / "enwik8.zip", member).read_bytes())
    data[len(data) // 2] ^= 0xFF  # damage the compressed stream
    (tmp_path / "enwik8.zip").write_bytes(bytes(data))
    with pytest.raises(CorruptArchiveError):
        Enwik8DataModule(path=str(tmp_path / "enwik8.zip"), sha256=None, cache_dir=str(tmp_path / "c")).prepare_data()


def test_missing_on_server_and_wrong_member(http_root, tmp_path, member):
    _, url = http_root
    with pytest.raises(CorpusUnavailableError, match="404"):
        Enwik8DataModule(url=f"{url}/enwik8.zip", cache_dir=str(tmp_path)).prepare_data()
    make_zip(tmp_path / "other.zip", member, name="enwik9")
    with pytest.raises(CorruptArchiveError, match="no member named 'enwik8'"):
        Enwik8DataModule(path=str(tmp_path / "other.zip"), cache_dir=str(tmp_path)).prepare_data()


def test_unzipped_local_file(tmp_path, member):
    (tmp_path / "enwik8").write_bytes(member)
    dm = Enwik8DataModule(path=str(tmp_path / "enwik8"), sha256=hashlib.sha256(member).hexdigest(),
                          cache_dir=str(tmp_path / "c"))
    dm.setup("fit")
    assert sum(len(v) for v in dm.splits.values()) == SIZE


def test_a_zip_put_in_the_cache_by_hand_is_not_called_a_download(http_root, tmp_path, member):
    """Issue 20 item 13: a zip found in the cache that fails the member's checksum was not downloaded by this run:
    the message says so (not "downloaded from"), where it went, and how to train on it."""
    folder, url = http_root
    make_zip(folder / "enwik8.zip", member)
    (tmp_path / "c" / "downloads").mkdir(parents=True)
    make_zip(tmp_path / "c" / "downloads" / "enwik8.zip", b"my own dump\n" * 1000)
    dm = Enwik8DataModule(url=f"{url}/enwik8.zip", sha256=hashlib.sha256(member).hexdigest(),
                          cache_dir=str(tmp_path / "c"))
    with pytest.raises(ChecksumMismatchError) as caught:
        dm.prepare_data()
    message = str(caught.value)
    assert "enwik8.zip (in the cache already: put there by hand or by an earlier run, not downloaded now)" in message
    assert f"moved aside to enwik8.zip.bad; run again to download it from {url}/enwik8.zip" in message
    assert "--data.path" in message and "--data.sha256 null" in message
    assert "downloaded from" not in message and "Check --data.url" not in message and "\n" not in message
    assert (tmp_path / "c" / "downloads" / "enwik8.zip.bad").is_file()
    again = Enwik8DataModule(url=f"{url}/enwik8.zip", sha256=hashlib.sha256(member).hexdigest(),
                             cache_dir=str(tmp_path / "c"), batch_size=4, seq_len=32)
    again.setup("fit")  # as the message says: the next run downloads it
    assert again.vocab.decode(again.splits["train"][:50].tolist()) == member[:50]

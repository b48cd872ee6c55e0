import hashlib
import socket

import pytest

from datamodules.fetch import ChecksumMismatchError, CorpusUnavailableError, download

DATA = b"First Citizen:\nBefore we proceed any further, hear me speak.\n" * 200
SHA = hashlib.sha256(DATA).hexdigest()


def test_good_download_lands_verified(http_root, tmp_path):
    folder, url = http_root
    (folder / "input.txt").write_bytes(DATA)
    dest = tmp_path / "cache" / "input.txt"
    assert download(f"{url}/input.txt", dest, SHA) == dest
    assert dest.read_bytes() == DATA
    assert [p.name for p in dest.parent.iterdir()] == ["input.txt"]  # no temporary file left behind


def test_cached_file_is_reused_without_network(tmp_path):
    dest = tmp_path / "input.txt"
    dest.write_bytes(DATA)
    assert download("http://127.0.0.1:9/never-contacted", dest, SHA).read_bytes() == DATA


def test_corrupted_download_is_refused_and_says_what_was_expected(http_root, tmp_path):
    folder, url = http_root
    (folder / "input.txt").write_bytes(DATA.replace(b"speak", b"SPEAK"))
    dest = tmp_path / "dl" / "input.txt"
    with pytest.raises(ChecksumMismatchError, match=SHA):
        download(f"{url}/input.txt", dest, SHA)
    assert not list(dest.parent.iterdir())  # never kept, never trained on


def test_corrupted_cache_entry_is_fetched_again(http_root, tmp_path):
    folder, url = http_root
    (folder / "input.txt").write_bytes(DATA)
    dest = tmp_path / "input.txt"
    dest.write_bytes(b"garbage")
    download(f"{url}/input.txt", dest, SHA)
    assert dest.read_bytes() == DATA


def test_truncated_download_is_an_error(truncating_http_root, tmp_path):
    folder, url = truncating_http_root
    (folder / "input.txt").write_bytes(DATA)
    dest = tmp_path / "dl" / "input.txt"
    with pytest.raises(CorpusUnavailableError):
        download(f"{url}/input.txt", dest, None)  # even without a checksum, a short body is caught
    assert not list(dest.parent.iterdir())


def test_server_down_says_where_to_put_the_file(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dest = tmp_path / "cache" / "input.txt"
    with pytest.raises(CorpusUnavailableError, match=f"put it at {dest}"):
        download(f"http://127.0.0.1:{port}/input.txt", dest, SHA)
    assert not dest.exists()


def test_missing_file_on_server(http_root, tmp_path):
    _, url = http_root
    with pytest.raises(CorpusUnavailableError, match="404"):
        download(f"{url}/nope.txt", tmp_path / "nope.txt", SHA)

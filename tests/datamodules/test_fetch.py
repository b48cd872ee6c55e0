import hashlib
import socket

import pytest

from datamodules.io.fetch import ChecksumMismatchError, CorpusUnavailableError, download

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


def test_corrupted_cache_entry_is_fetched_again(http_root, tmp_path, capsys):
    folder, url = http_root
    (folder / "input.txt").write_bytes(DATA)
    dest = tmp_path / "cache" / "input.txt"
    dest.parent.mkdir()
    dest.write_bytes(b"garbage")
    download(f"{url}/input.txt", dest, SHA)
    assert dest.read_bytes() == DATA
    # issue 20 item 13: the file found there is moved aside, never deleted, and that is said
    assert (dest.parent / "input.txt.bad").read_bytes() == b"garbage"
    note = capsys.readouterr().err.splitlines()[-1]
    assert note.startswith(f"charlm: {dest} failed its checksum (sha256 {hashlib.sha256(b'garbage').hexdigest()}, "
                           f"expected {SHA}): it is not the file {url}/input.txt serves, so it was moved aside to "
                           f"{dest}.bad"), note
    assert "--data.path" in note
    dest.write_bytes(b"again")  # what was moved aside before is never overwritten
    download(f"{url}/input.txt", dest, SHA)
    assert (dest.parent / "input.txt.bad").read_bytes() == b"garbage"
    assert (dest.parent / "input.txt.bad.2").read_bytes() == b"again"
    assert sorted(p.name for p in dest.parent.iterdir()) == ["input.txt", "input.txt.bad", "input.txt.bad.2"]


def stopped_server() -> str:
    """A URL where nothing answers (a port nobody listens on): offline."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_a_file_put_in_the_cache_by_hand_offline_is_named_and_kept(tmp_path):
    # issue 20 item 13: put where the offline error says, with other content: was renamed .bad silently, and the
    # error said "Could not download"
    dest = tmp_path / "cache" / "input.txt"
    dest.parent.mkdir()
    dest.write_bytes(b"my own text\n" * 100)
    url = f"{stopped_server()}/input.txt"
    with pytest.raises(ChecksumMismatchError) as caught:
        download(url, dest, SHA)
    message = str(caught.value)
    got = hashlib.sha256(b"my own text\n" * 100).hexdigest()
    assert message.startswith(f"{dest} failed its checksum (sha256 {got}, expected {SHA}): it is not the file {url} "
                              f"serves, so it was not used, and was left as it is; downloading that file failed: "
                              f"Could not download {url} (ConnectionError"), message
    assert f"To train on that file as it is, pass --data.path {dest}." in message and "\n" not in message
    assert dest.read_bytes() == b"my own text\n" * 100 and [p.name for p in dest.parent.iterdir()] == ["input.txt"]


def test_truncated_download_is_an_error(truncating_http_root, tmp_path):
    folder, url = truncating_http_root
    (folder / "input.txt").write_bytes(DATA)
    dest = tmp_path / "dl" / "input.txt"
    with pytest.raises(CorpusUnavailableError):
        download(f"{url}/input.txt", dest, None)  # even without a checksum, a short body is caught
    assert not list(dest.parent.iterdir())


def test_server_down_says_where_to_put_the_file(tmp_path):
    dest = tmp_path / "cache" / "input.txt"
    with pytest.raises(CorpusUnavailableError, match=f"put it at {dest}"):
        download(f"{stopped_server()}/input.txt", dest, SHA)
    assert not dest.exists()


def test_missing_file_on_server(http_root, tmp_path):
    _, url = http_root
    with pytest.raises(CorpusUnavailableError, match="404"):
        download(f"{url}/nope.txt", tmp_path / "nope.txt", SHA)

"""The Linux corpus from fixture tarballs (local and over HTTP), a checkout, and the real tarball."""

import hashlib
import io
import re
import tarfile
from pathlib import Path

import pytest

from datamodules import LinuxDataModule
from datamodules.io.fetch import ChecksumMismatchError, CorpusUnavailableError
from datamodules.sources.files import CorruptArchiveError
from tests.conftest import _QuietHandler, _serve

FILES = {  # deliberately not in sorted order
    "linux-6.1/kernel/sched/core.c": b"int schedule(void)\n{\n\treturn 0;\n}\n",
    "linux-6.1/include/linux/sched.h": b"#ifndef _SCHED_H\n#define _SCHED_H\n#endif\n",
    "linux-6.1/Makefile": b"VERSION = 6\n",
    "linux-6.1/arch/x86/boot/main.c": b"void main(void) { for (;;); }\n",
    "linux-6.1/Documentation/index.rst": b"The Linux kernel\n",
}
EXPECTED = b"".join(FILES[k] for k in sorted(FILES, key=lambda n: n.split("/", 1)[1]) if k.endswith((".c", ".h")))


def add(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    archive.addfile(info, io.BytesIO(data))


def make_tarball(path: Path, hostile: bool = False) -> Path:
    with tarfile.open(path, "w:xz") as archive:
        for name, data in FILES.items():
            add(archive, name, data)
        if hostile:
            add(archive, "../../evil.c", b"EVIL1")
            add(archive, "/etc/evil.h", b"EVIL2")
            link = tarfile.TarInfo("linux-6.1/link.c")
            link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
            archive.addfile(link)
    return path


def prepared_bytes(dm) -> bytes:
    dm.setup("fit")
    tokens = b"".join(dm.vocab.decode(split.tolist()) for split in dm.splits.values())
    return tokens


def test_tarball_sorted_c_and_h_only_and_hostile_members_ignored(tmp_path):
    tarball = make_tarball(tmp_path / "linux-6.1.tar.xz", hostile=True)
    dm = LinuxDataModule(path=str(tarball), cache_dir=str(tmp_path / "c"), batch_size=1, seq_len=8, eval_batch_size=1,
                         val_fraction=0.1, test_fraction=0.1)
    assert prepared_bytes(dm) == EXPECTED
    assert not list(tmp_path.rglob("evil*")) and not (tmp_path.parent / "evil.c").exists()
    assert not list((tmp_path / "c" / "prepared").glob(".spool-*"))  # the spool is cleaned up


def test_checkout_gives_the_same_corpus_as_the_tarball(tmp_path):
    for name, data in FILES.items():
        (tmp_path / "tree" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "tree" / name).write_bytes(data)
    dm = LinuxDataModule(path=str(tmp_path / "tree" / "linux-6.1"), cache_dir=str(tmp_path / "c"), batch_size=1,
                         seq_len=8, eval_batch_size=1, val_fraction=0.1, test_fraction=0.1)
    assert prepared_bytes(dm) == EXPECTED


def publish(www: Path, tarball: bytes) -> None:
    """Serve ``tarball`` as release 6.1 from the mirror folder ``www``, its sha256 listed as kernel.org lists it."""
    (www / "v6.x").mkdir(exist_ok=True)
    (www / "v6.x" / "linux-6.1.tar.xz").write_bytes(tarball)
    digest = hashlib.sha256(tarball).hexdigest()
    sums = f"-----BEGIN PGP SIGNED MESSAGE-----\n{'0' * 64}  linux-6.0.tar.xz\n{digest}  linux-6.1.tar.xz\n"
    (www / "v6.x" / "sha256sums.asc").write_text(sums)


def release(url: str, cache: Path) -> LinuxDataModule:
    return LinuxDataModule(version="6.1", mirror=url, cache_dir=str(cache), batch_size=1, seq_len=8,
                           eval_batch_size=1, val_fraction=0.1, test_fraction=0.1)


def test_release_download_verified_against_published_sums(http_root, tmp_path):
    folder, url = http_root
    publish(folder, make_tarball(tmp_path / "linux-6.1.tar.xz").read_bytes())
    dm = release(url, tmp_path / "c")
    assert prepared_bytes(dm) == EXPECTED
    (folder / "v6.x" / "sha256sums.asc").write_text(f"{'1' * 64}  linux-6.1.tar.xz\n")
    with pytest.raises(ChecksumMismatchError, match="1" * 64):
        LinuxDataModule(version="6.1", mirror=url, cache_dir=str(tmp_path / "c2")).prepare_data()


@pytest.mark.parametrize("damage", ["truncated", "corrupt"])
def test_a_damaged_release_download_is_set_aside_and_fetched_anew(http_root, tmp_path, damage):
    """A mirror serving a damaged tarball (its checksum listed to match): one clear error, the download moved
    aside; once the mirror serves the right one, the next run downloads it (and the current checksum list)."""
    folder, url = http_root
    good = make_tarball(tmp_path / "good.tar.xz").read_bytes()
    middle = len(good) // 2
    bad = good[:middle] if damage == "truncated" else good[:middle] + bytes([good[middle] ^ 0x55]) + good[middle + 1 :]
    publish(folder, bad)
    with pytest.raises(CorruptArchiveError) as caught:
        release(url, tmp_path / "c").prepare_data()
    message, downloads = str(caught.value), tmp_path / "c" / "downloads" / "linux"
    assert f"{downloads / 'linux-6.1.tar.xz'} (downloaded from {url}/v6.x/linux-6.1.tar.xz)" in message
    assert "truncated or corrupted" in message and "moved aside to linux-6.1.tar.xz.bad" in message
    assert "run again to download it anew" in message and "\n" not in message
    assert (downloads / "linux-6.1.tar.xz.bad").read_bytes() == bad and not (downloads / "linux-6.1.tar.xz").exists()
    assert not list((tmp_path / "c" / "prepared").rglob("meta.json"))
    assert not list((tmp_path / "c" / "prepared").rglob(".spool-*"))
    publish(folder, good)  # the mirror is mended: the next run succeeds with the same cache
    assert prepared_bytes(release(url, tmp_path / "c")) == EXPECTED


def stopped_mirror(folder: Path) -> str:
    """The URL of a mirror of ``folder`` that was served, then stopped: nothing answers there now (offline)."""
    serving = _serve(folder, _QuietHandler)
    url = next(serving)
    serving.close()  # shuts the server down and frees its port
    return url


def put_where_told(message: str, data: bytes) -> Path:
    """Follow an error's advice by hand: write ``data`` at the path after "put it at"."""
    place = Path(re.search(r"put it at (\S+) ", message)[1])
    place.write_bytes(data)
    return place


def test_a_failed_release_download_keeps_the_cached_list_and_names_the_tarball(tmp_path):
    """Run 1 finds the release listed but not served (404); run 2 finds the mirror down: each error names the
    tarball and the cached list stays, so the tarball put where the error says is checked against it, offline."""
    www, downloads = tmp_path / "www", tmp_path / "c" / "downloads" / "linux"
    www.mkdir()
    tarball = make_tarball(tmp_path / "good.tar.xz").read_bytes()
    publish(www, tarball)
    (www / "v6.x" / "linux-6.1.tar.xz").unlink()
    serving = _serve(www, _QuietHandler)
    url = next(serving)
    with pytest.raises(CorpusUnavailableError, match=r"linux-6\.1\.tar\.xz \(HTTPError"):
        release(url, tmp_path / "c").prepare_data()
    serving.close()  # the mirror goes down
    with pytest.raises(CorpusUnavailableError) as caught:
        release(url, tmp_path / "c").prepare_data()
    message = str(caught.value)
    assert message.startswith(f"Could not download {url}/v6.x/linux-6.1.tar.xz (ConnectionError")
    assert (downloads / "sha256sums-v6.x.asc").read_bytes() == (www / "v6.x" / "sha256sums.asc").read_bytes()
    assert put_where_told(message, tarball) == downloads / "linux-6.1.tar.xz"
    assert prepared_bytes(release(url, tmp_path / "c")) == EXPECTED


def test_offline_the_list_and_tarball_put_where_the_errors_say_are_used(tmp_path):
    """With no mirror at all, the first error asks for the checksum list; put there by hand, it is kept (not
    fetched again), so the next error asks for the tarball, and with both in place the corpus is prepared."""
    www = tmp_path / "www"
    www.mkdir()
    tarball = make_tarball(tmp_path / "good.tar.xz").read_bytes()
    publish(www, tarball)
    url = stopped_mirror(www)
    with pytest.raises(CorpusUnavailableError) as caught:
        release(url, tmp_path / "c").prepare_data()
    sums = put_where_told(str(caught.value), (www / "v6.x" / "sha256sums.asc").read_bytes())
    assert sums.name == "sha256sums-v6.x.asc"
    with pytest.raises(CorpusUnavailableError) as caught:
        release(url, tmp_path / "c").prepare_data()
    assert str(caught.value).startswith(f"Could not download {url}/v6.x/linux-6.1.tar.xz ")
    assert sums.read_bytes() == (www / "v6.x" / "sha256sums.asc").read_bytes()
    put_where_told(str(caught.value), tarball)
    assert prepared_bytes(release(url, tmp_path / "c")) == EXPECTED


def test_a_release_newer_than_the_cached_list_is_found_on_the_mirrors_current_list(http_root, tmp_path):
    """A cached list that predates the release: the mirror's current one replaces it; with the mirror down,
    the error names the tarball and the cached list is left as it was (no temp file either)."""
    folder, url = http_root
    downloads = tmp_path / "c" / "downloads" / "linux"
    downloads.mkdir(parents=True)
    old = f"{'0' * 64}  linux-6.0.tar.xz\n"
    (downloads / "sha256sums-v6.x.asc").write_text(old)
    www = tmp_path / "down"
    www.mkdir()
    down = stopped_mirror(www)
    with pytest.raises(CorpusUnavailableError) as caught:
        release(down, tmp_path / "c").prepare_data()
    message = str(caught.value)
    assert message.startswith(f"Cannot check {down}/v6.x/linux-6.1.tar.xz: the cached ")
    assert f"Could not download {down}/v6.x/sha256sums.asc (ConnectionError" in message and "--data.path" in message
    assert "\n" not in message and ".tmp" not in message
    assert (downloads / "sha256sums-v6.x.asc").read_text() == old and sorted(downloads.iterdir()) == [
        downloads / "sha256sums-v6.x.asc"]
    publish(folder, make_tarball(tmp_path / "good.tar.xz").read_bytes())
    assert prepared_bytes(release(url, tmp_path / "c")) == EXPECTED
    assert (downloads / "sha256sums-v6.x.asc").read_bytes() == (folder / "v6.x" / "sha256sums.asc").read_bytes()
    assert sorted(p.name for p in downloads.iterdir()) == ["linux-6.1.tar.xz", "sha256sums-v6.x.asc"]


def test_the_current_list_is_fetched_once_even_when_the_download_then_fails_it(tmp_path):
    """A cached list that predates the release, replaced by the mirror's current one, whose checksum the tarball
    then fails: the mismatch is reported at once, the current list not fetched a second time."""
    www, downloads = tmp_path / "www", tmp_path / "c" / "downloads" / "linux"
    www.mkdir()
    downloads.mkdir(parents=True)
    (downloads / "sha256sums-v6.x.asc").write_text(f"{'0' * 64}  linux-6.0.tar.xz\n")
    publish(www, make_tarball(tmp_path / "good.tar.xz").read_bytes())
    (www / "v6.x" / "sha256sums.asc").write_text(f"{'1' * 64}  linux-6.1.tar.xz\n")
    requested: list[str] = []

    class Counting(_QuietHandler):
        def do_GET(self) -> None:
            requested.append(self.path)
            super().do_GET()

    serving = _serve(www, Counting)
    with pytest.raises(ChecksumMismatchError, match="1" * 64):
        release(next(serving), tmp_path / "c").prepare_data()
    serving.close()
    assert requested == ["/v6.x/sha256sums.asc", "/v6.x/linux-6.1.tar.xz"]


def test_a_tarball_put_by_hand_that_fails_the_listed_checksum_is_named_and_kept(tmp_path):
    """Issue 20 item 13: offline, a tarball put where the error said but not the listed release: the error says it
    failed its checksum, that it was left as it is, and how to train on it; online, it is moved aside, saying so."""
    www, downloads = tmp_path / "www", tmp_path / "c" / "downloads" / "linux"
    www.mkdir()
    downloads.mkdir(parents=True)
    good = make_tarball(tmp_path / "good.tar.xz").read_bytes()
    publish(www, good)
    (downloads / "sha256sums-v6.x.asc").write_bytes((www / "v6.x" / "sha256sums.asc").read_bytes())
    other = tmp_path / "other.tar.xz"
    with tarfile.open(other, "w:xz") as archive:
        add(archive, "linux-6.1/mine.c", b"int mine;\n" * 4)
    put = downloads / "linux-6.1.tar.xz"
    put.write_bytes(other.read_bytes())
    with pytest.raises(ChecksumMismatchError) as caught:
        release(stopped_mirror(www), tmp_path / "c").prepare_data()
    message = str(caught.value)
    assert message.startswith(f"{put} failed its checksum (sha256 {hashlib.sha256(other.read_bytes()).hexdigest()}, "
                              f"expected {hashlib.sha256(good).hexdigest()})") and "left as it is" in message
    assert f"pass --data.path {put}" in message and "\n" not in message
    assert put.read_bytes() == other.read_bytes() and not list(downloads.glob("*.bad*"))
    own = LinuxDataModule(path=str(put), cache_dir=str(tmp_path / "c"), batch_size=1, seq_len=4, eval_batch_size=1,
                          val_fraction=0.1, test_fraction=0.1)
    assert prepared_bytes(own) == b"int mine;\n" * 4  # as the message says
    serving = _serve(www, _QuietHandler)
    assert prepared_bytes(release(next(serving), tmp_path / "c")) == EXPECTED  # online: the release, and...
    serving.close()
    assert (downloads / "linux-6.1.tar.xz.bad").read_bytes() == other.read_bytes()  # ...the file kept aside


@pytest.mark.parametrize("name", ["linux-6.1.tar.xz", "linux-6.1.tar.gz"])
def test_a_damaged_tarball_of_the_users_own_is_left_as_it_is(tmp_path, name):
    mode = "w:xz" if name.endswith(".xz") else "w:gz"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as archive:
        for member, data in FILES.items():
            add(archive, member, data)
    own = tmp_path / name
    own.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) * 2 // 3])
    before = own.read_bytes(), own.stat().st_mtime_ns
    with pytest.raises(CorruptArchiveError) as caught:
        LinuxDataModule(path=str(own), cache_dir=str(tmp_path / "c")).prepare_data()
    message = str(caught.value)
    assert message.startswith(f"{own} is truncated or corrupted") and "--data.path" in message
    assert "moved aside" not in message and "\n" not in message
    assert (own.read_bytes(), own.stat().st_mtime_ns) == before and not list(tmp_path.rglob("*.bad"))


def test_truncated_tarball_and_no_matching_files(tmp_path):
    data = make_tarball(tmp_path / "good.tar.xz").read_bytes()
    (tmp_path / "cut.tar.xz").write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptArchiveError, match=r"cut\.tar\.xz is truncated or corrupted"):
        LinuxDataModule(path=str(tmp_path / "cut.tar.xz"), cache_dir=str(tmp_path / "c")).prepare_data()
    with pytest.raises(ValueError, match=r"holds no files ending in \.rs"):
        LinuxDataModule(path=str(tmp_path / "good.tar.xz"), extensions=[".rs"],
                        cache_dir=str(tmp_path / "c")).prepare_data()
    with pytest.raises(ValueError, match=r"exactly one of --data\.path"):
        LinuxDataModule()


@pytest.mark.slow
def test_real_debian_kernel_tarball(tmp_path):
    tarball = Path("/usr/src/linux-source-6.1.tar.xz")
    if not tarball.is_file():
        pytest.skip("Debian's linux-source-6.1 is not installed (apt-get install linux-source-6.1)")
    dm = LinuxDataModule(path=str(tarball), cache_dir=str(tmp_path))
    dm.setup("fit")
    assert sum(len(s) for s in dm.splits.values()) > 500_000_000 and len(dm.vocab) > 90
    head = dm.vocab.decode(dm.splits["train"][:20000].tolist())
    assert b"#include" in head and b"{" in head

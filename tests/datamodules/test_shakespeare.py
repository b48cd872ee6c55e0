import hashlib

import pytest
import torch

from datamodules import ShakespeareDataModule
from datamodules.shakespeare import SHA256


def test_real_corpus_splits_and_vocabulary(shakespeare_path, tmp_path):
    dm = ShakespeareDataModule(path=str(shakespeare_path), cache_dir=str(tmp_path / "c"))
    assert len(dm.vocab) == 65
    dm.setup("fit")
    sizes = {k: len(v) for k, v in dm.splits.items()}
    assert sizes == {"train": 1_003_854, "val": 55_770, "test": 55_770}
    raw = shakespeare_path.read_bytes()
    joined = torch.cat([dm.splits["train"], dm.splits["val"], dm.splits["test"]])
    assert dm.vocab.decode(joined.tolist()) == raw  # contiguous, in file order, nothing lost
    assert dm.vocab.decode(dm.splits["val"][:20].tolist()) == raw[1_003_854 : 1_003_854 + 20]


def test_downloads_from_a_mirror_then_prepares_once(shakespeare_path, http_root, tmp_path):
    folder, url = http_root
    (folder / "input.txt").write_bytes(shakespeare_path.read_bytes())
    cache = tmp_path / "c"
    dm = ShakespeareDataModule(url=f"{url}/input.txt", cache_dir=str(cache))
    dm.prepare_data()
    assert hashlib.sha256((cache / "downloads" / "tinyshakespeare.txt").read_bytes()).hexdigest() == SHA256
    tokens = dm.prepared_dir / "tokens.u8"
    stamp = tokens.stat().st_mtime_ns
    (folder / "input.txt").unlink()  # the server loses the file: the cache is enough now
    again = ShakespeareDataModule(url=f"{url}/input.txt", cache_dir=str(cache))
    again.prepare_data()
    assert again.prepared_dir == dm.prepared_dir and tokens.stat().st_mtime_ns == stamp


def test_missing_local_file_names_the_argument(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"--data\.path"):
        ShakespeareDataModule(path=str(tmp_path / "nope.txt")).prepare_data()


def test_empty_corpus(tmp_path):
    (tmp_path / "empty.txt").write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        ShakespeareDataModule(path=str(tmp_path / "empty.txt")).prepare_data()


def test_corpus_shorter_than_one_batch(tmp_path):
    (tmp_path / "tiny.txt").write_bytes(b"To be, or not to be\n" * 20)
    dm = ShakespeareDataModule(path=str(tmp_path / "tiny.txt"), batch_size=64, seq_len=128)
    with pytest.raises(ValueError, match=r"tiny.txt \(400 bytes.*Lower --data.seq_len or --data.batch_size"):
        dm.setup("fit")  # before sanity validation, not at the first training batch


@pytest.mark.parametrize("arg", ["batch_size", "seq_len", "eval_batch_size"])
def test_nonsense_sizes(arg):
    with pytest.raises(ValueError, match=f"--data.{arg}"):
        ShakespeareDataModule(**{arg: 0})


def test_a_file_put_where_the_offline_error_says_with_other_content_is_named(tmp_path):
    """Issue 20 item 13, through the command: the file failed its checksum, it is where it was, and the line says
    how to train on it; each way it gives then works."""
    from tests.cli_runs import assert_one_line, charlm
    from tests.datamodules.test_fetch import stopped_server

    cache, own = tmp_path / "c", b"my own play\n" * 400
    (cache / "downloads").mkdir(parents=True)
    put = cache / "downloads" / "tinyshakespeare.txt"
    put.write_bytes(own)
    url = f"{stopped_server()}/input.txt"
    out = charlm("fit", "--data.url", url, "--trainer.max_steps", "1", cwd=tmp_path, cache=cache,
                 env={"WANDB_MODE": "disabled"})
    line = assert_one_line(out, f"{put} failed its checksum (sha256 {hashlib.sha256(own).hexdigest()}, expected "
                                f"{SHA256})", "left as it is", f"--data.path {put}", "--data.sha256 null")
    assert "Could not download" in line and put.read_bytes() == own and not list(put.parent.glob("*.bad*"))
    for flags in ({"path": str(put)}, {"url": url, "sha256": None}):
        dm = ShakespeareDataModule(**flags, cache_dir=str(cache), batch_size=2, seq_len=8, eval_batch_size=2)
        dm.setup("fit")
        assert dm.vocab.decode(dm.splits["train"][:12].tolist()) == b"my own play\n"

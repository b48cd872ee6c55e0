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

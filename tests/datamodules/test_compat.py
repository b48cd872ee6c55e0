"""datamodules.common.compat against the installed Lightning, tarfile and datasets: each test fails if the
library stops behaving as the function relies on."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import lightning as L
import pytest
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.demos.boring_classes import BoringModel, RandomDataset
from torch.utils.data import DataLoader

from datamodules.common.compat import (
    batches_done_before_resume,
    block_after_end_marker,
    dataset_fingerprint,
    end_aware_tarinfo,
    packaged_builders,
)
from tests.helpers import SaveAtBatchStart


# --- Lightning: where a resumed fit stands in its epoch ----------------------------------------------------
class Stateful(DataLoader):
    """A loader with (empty) ``state_dict``/``load_state_dict``, as charlm's TrainStreams: Lightning
    takes it as resumable, and restores the epoch position into its loops only."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state_dict: dict) -> None:
        pass


class Batches(L.LightningDataModule):
    """8 batches an epoch; notes what batches_done_before_resume says when fit asks for the loader."""

    def __init__(self) -> None:
        super().__init__()
        self.done: list[int | None] = []

    def train_dataloader(self) -> DataLoader:
        self.done.append(batches_done_before_resume(self.trainer))
        return Stateful(RandomDataset(32, 64), batch_size=8)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(RandomDataset(32, 16), batch_size=8)


def fit(tmp_path: Path, data: Batches, ckpt_path: Path | None = None, callbacks=()) -> None:
    L.Trainer(accelerator="cpu", devices=1, max_steps=5, limit_val_batches=1, val_check_interval=4,
              num_sanity_val_steps=0, logger=False, enable_progress_bar=False, enable_model_summary=False,
              default_root_dir=tmp_path, callbacks=list(callbacks)).fit(BoringModel(), data, ckpt_path=ckpt_path)


@pytest.mark.filterwarnings("ignore:Checkpoint directory .* exists and is not empty")
@pytest.mark.filterwarnings("ignore:Be aware that when using `ckpt_path`")
@pytest.mark.filterwarnings("ignore:The dirpath has changed")
def test_batches_done_before_resume_counts_the_batches_the_checkpoint_trained(tmp_path):
    at_validation = ModelCheckpoint(dirpath=tmp_path / "val", monitor=None, save_top_k=-1, filename="{step}")
    at_batch_end = ModelCheckpoint(dirpath=tmp_path / "end", every_n_train_steps=2, save_top_k=-1, monitor=None,
                                   filename="{step}")
    first = Batches()
    fit(tmp_path, first, callbacks=[at_validation, at_batch_end, SaveAtBatchStart(tmp_path / "start.ckpt", 3)])
    assert first.done == [None]  # not resuming

    # charlm's checkpoints: at a batch start (Ctrl-C, InterruptCheckpoint) and after a validation
    # (ModelCheckpoint with a monitor, and last.ckpt)
    for ckpt, trained in [("start.ckpt", 3), ("val/step=4.ckpt", 4)]:
        resumed = Batches()
        fit(tmp_path, resumed, tmp_path / ckpt)
        assert resumed.done == [trained], ckpt
    # at a batch end (every_n_train_steps), when the loader is built Lightning's count is one behind (it
    # adds the batch in hand later, in its epoch loop's reset): the function counts that batch too
    resumed = Batches()
    fit(tmp_path, resumed, tmp_path / "end/step=2.ckpt")
    assert resumed.done == [2]


# --- tarfile ------------------------------------------------------------------------------------------------
def tarball(members: int = 2) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as archive:
        for i in range(members):
            data = f"member {i}\n".encode()
            info = tarfile.TarInfo(f"top/file{i}.txt")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return out.getvalue()


def read_all(data: bytes) -> tuple[list[str], type, bytes]:
    tarinfo = end_aware_tarinfo()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r|", tarinfo=tarinfo) as archive:
        names = [member.name for member in archive]
        return names, tarinfo, block_after_end_marker(archive)


def test_a_complete_tarball_shows_both_end_blocks():
    names, tarinfo, after = read_all(tarball())
    assert names == ["top/file0.txt", "top/file1.txt"]
    assert tarinfo.end_marker_seen and end_aware_tarinfo().end_marker_seen is False  # one note per class
    assert after == bytes(tarfile.BLOCKSIZE)


def test_a_tarball_cut_on_a_member_boundary_has_no_end_marker():
    whole = tarball()
    cut = whole[: 4 * tarfile.BLOCKSIZE]  # two members of one header block and one data block each
    names, tarinfo, after = read_all(cut)
    assert names == ["top/file0.txt", "top/file1.txt"]  # tarfile itself sees nothing wrong
    assert not tarinfo.end_marker_seen and after == b""


def test_a_tarball_with_one_end_block_is_told_apart():
    _, tarinfo, after = read_all(tarball()[: 5 * tarfile.BLOCKSIZE])
    assert tarinfo.end_marker_seen and after != bytes(tarfile.BLOCKSIZE)


# --- datasets -----------------------------------------------------------------------------------------------
def test_dataset_fingerprint_follows_the_data(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    text = tmp_path / "a.txt"

    def load() -> str:
        ds = datasets.load_dataset("text", data_files=str(text), split="train", cache_dir=str(tmp_path / "cache"))
        return dataset_fingerprint(ds)

    text.write_text("hello\nworld\n")
    first = load()
    assert isinstance(first, str) and first
    assert load() == first  # the same files: the same prepared folder
    text.write_text("other\nwords\n")
    assert load() != first  # changed files: a new one


def test_packaged_builders_are_the_names_datasets_takes_before_a_folder(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    assert {"parquet", "csv", "json", "text", "arrow"} <= packaged_builders()
    assert "karpathy/tiny_shakespeare" not in packaged_builders()
    monkeypatch.chdir(tmp_path)
    (tmp_path / "text").mkdir()  # a folder of that name: datasets still takes the builder, which reads ./**
    (tmp_path / "text" / "in_folder.txt").write_text("in the folder\n")
    (tmp_path / "here.txt").write_text("in the current folder\n")
    ds = datasets.load_dataset("text", split="train", cache_dir=str(tmp_path / "cache"))
    assert "in the current folder" in list(ds["text"])

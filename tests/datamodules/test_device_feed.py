"""Training streams kept on the device when they fit, else fed through pinned memory: same batches either way.

Every test runs on the CPU (the feed's thread and ring, without pinning or copies); the ``cuda``
variants run the pinned, non_blocking path where a GPU is present.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch

from datamodules import TextDataModule
from datamodules.batches.device_feed import DeviceFeed, free_memory, keep_on_device, place_train_streams
from datamodules.batches.streams import TrainStreams

DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device")])]


@pytest.fixture
def module(tmp_path: Path) -> TextDataModule:
    """A data module over a 60 kB file, set up: its training split is memory-mapped."""
    (tmp_path / "c.txt").write_bytes(bytes(torch.randint(32, 127, (60_000,), dtype=torch.uint8).tolist()))
    dm = TextDataModule(path=str(tmp_path / "c.txt"), cache_dir=str(tmp_path / "cache"), batch_size=4, seq_len=16)
    dm.setup("fit")
    return dm


def test_the_rule_keeps_streams_up_to_the_stated_share_of_free_memory():
    assert keep_on_device(1_000, 4_000, 0.25) and not keep_on_device(1_001, 4_000, 0.25)
    assert not keep_on_device(1, 10**12, 0.0)


def test_the_switch_between_the_two_paths_at_a_small_threshold(module):
    streams = TrainStreams(module.splits["train"], 4, 16, rank=1, world_size=2)
    assert streams.nbytes == 4 * (len(module.splits["train"]) // 8)  # this rank's share only: half the split
    cpu = torch.device("cpu")
    assert isinstance(place_train_streams(streams, cpu, 0.25, free_bytes=4 * streams.nbytes), TrainStreams)
    assert isinstance(place_train_streams(streams, cpu, 0.25, free_bytes=4 * streams.nbytes - 1), DeviceFeed)
    # the host (free memory None): the memory-mapped streams as they are, unless the share is 0
    assert place_train_streams(streams, cpu, 0.25, free_bytes=None).streams is streams.streams
    assert isinstance(place_train_streams(streams, cpu, 0.0, free_bytes=None), DeviceFeed)


def test_the_data_module_feeds_when_the_share_is_zero(module, tmp_path):
    assert isinstance(module.train_dataloader(), TrainStreams)  # the default, on the CPU: as before
    feeding = TextDataModule(path=str(tmp_path / "c.txt"), cache_dir=str(tmp_path / "cache"), batch_size=4,
                             seq_len=16, device_resident_fraction=0)
    feeding.setup("fit")
    assert isinstance(feeding.train_dataloader(), DeviceFeed)
    with pytest.raises(ValueError, match="device_resident_fraction"):
        TextDataModule(path=str(tmp_path / "c.txt"), device_resident_fraction=1.5)


def assert_same_batches(a, b) -> int:
    pairs = list(zip(a, b, strict=True))
    for (x0, y0), (x1, y1) in pairs:
        assert x0.dtype == x1.dtype == torch.long and x0.device == x1.device
        assert torch.equal(x0, x1) and torch.equal(y0, y1)
    return len(pairs)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("rank", "world"), [(0, 1), (1, 3)])
def test_the_feed_gives_the_resident_batches_batch_by_batch(module, device, rank, world):
    device = torch.device(device)
    streams = TrainStreams(module.splits["train"], 4, 16, rank, world)
    resident = place_train_streams(streams, device, 1.0, free_bytes=10 * streams.nbytes)
    feed = place_train_streams(streams, device, 0.1, free_bytes=10 * streams.nbytes - 1)
    assert isinstance(resident, TrainStreams) and isinstance(feed, DeviceFeed) and len(feed) == len(resident) > 20
    assert resident.streams.device.type == device.type
    assert assert_same_batches(resident, feed) == len(resident)
    # a resumed epoch: both skip the same batches once, then the next epoch is whole again
    resident.skip_next = feed.skip_next = 7
    assert assert_same_batches(resident, feed) == len(resident) - 7
    assert assert_same_batches(resident, feed) == len(resident)
    # and the batches are those of the memory-mapped streams themselves
    assert all(torch.equal(x.cpu(), x0) for (x, _), (x0, _) in zip(feed, streams, strict=True))


@pytest.mark.parametrize("device", DEVICES)
def test_the_ring_is_made_once_and_reused_by_every_epoch(module, device):
    """Pinned buffers (and on a GPU, one event per buffer) are made by the first epoch only, whole or cut short."""
    device = torch.device(device)
    streams = TrainStreams(module.splits["train"], 4, 16)
    feed = DeviceFeed(streams, device)
    assert assert_same_batches(streams.to(device), feed) == len(feed)
    ring = feed._spare
    buffers, events = [b.data_ptr() for b in ring.buffers], ring.copied
    assert len(buffers) == feed.ring and (events is None) == (device.type == "cpu")
    assert len(set(buffers)) == feed.ring  # each slot of the ring a buffer of its own
    assert device.type == "cpu" or all(b.is_pinned() for b in ring.buffers)
    epoch = iter(feed)
    next(epoch), next(epoch)
    assert feed._spare is None  # in use
    epoch.close()  # an epoch cut short hands the ring back too
    feed.skip_next = 5
    assert assert_same_batches(list(streams.to(device))[5:], feed) == len(feed) - 5
    # ring.copied is events: the same CUDA events in the cuda case; on the CPU both are None (checks nothing)
    assert feed._spare is ring and [b.data_ptr() for b in ring.buffers] == buffers and ring.copied is events


def test_an_epoch_begun_while_another_is_open_uses_a_ring_of_its_own(module):
    streams = TrainStreams(module.splits["train"], 4, 16)
    feed = DeviceFeed(streams, torch.device("cpu"))
    first, second = iter(feed), iter(feed)
    # taken in turns, the two epochs do not overwrite each other's buffers
    got = [(next(first), next(second)) for _ in range(len(feed))]
    for (a, b), expected in zip(got, streams, strict=True):
        assert all(torch.equal(x, y) for x, y in zip((*a, *b), (*expected, *expected), strict=True))
    assert next(first, None) is None and next(second, None) is None and feed_threads() == []


@pytest.mark.parametrize("device", DEVICES)
def test_lightning_moves_no_batch_twice(module, device):
    """Lightning's batch_to_device ends in move_data_to_device: a batch already there is passed through."""
    from lightning.fabric.utilities.apply_func import move_data_to_device

    device = torch.device(device)
    streams = TrainStreams(module.splits["train"], 4, 16)
    feed = DeviceFeed(streams, device)
    for loader in (feed, place_train_streams(streams, device, 1.0, free_memory(device) or 10**12)):
        x, y = next(iter(loader))
        moved = move_data_to_device((x, y), device)
        assert moved[0] is x and moved[1] is y


def feed_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "charlm-device-feed"]


def test_an_epoch_left_early_stops_its_filler(module):
    feed = DeviceFeed(TrainStreams(module.splits["train"], 4, 16), torch.device("cpu"))
    epoch = iter(feed)
    next(epoch), next(epoch)
    assert len(feed_threads()) == 1
    epoch.close()  # what dropping the iterator does (Lightning stopping at max_steps mid-epoch)
    assert feed_threads() == []


class FailingStreams(TrainStreams):
    """Streams whose fifth window cannot be read (as a file gone bad under the feed)."""

    def window(self, k: int) -> torch.Tensor:
        if k == 4:
            raise OSError("the token file could not be read")
        return super().window(k)


def test_a_read_error_in_the_filler_is_raised_where_the_batches_are_taken(module):
    feed = DeviceFeed(FailingStreams(module.splits["train"], 4, 16), torch.device("cpu"))
    epoch = iter(feed)
    got = [next(epoch) for _ in range(4)]
    with pytest.raises(OSError, match="could not be read"):
        next(epoch)
    assert len(got) == 4 and feed_threads() == []


@pytest.mark.slow
def test_a_fit_fed_and_resumed_ends_where_the_default_fit_ends(tmp_path, shakespeare_path):
    """Through Lightning: fed (share 0), interrupted at step 15 and resumed mid-epoch = the default fit's weights."""
    from tests.cli_runs import keeping_sigint, run_in, small_run, with_callback

    common = ["--trainer.max_steps", "30", "--trainer.val_check_interval", "30", "--trainer.limit_val_batches", "2"]
    full = run_in(tmp_path / "full", small_run(shakespeare_path, *common))
    assert isinstance(full.trainer.train_dataloader, TrainStreams)
    fed = [*common, "--data.device_resident_fraction", "0"]
    with keeping_sigint(), pytest.raises(SystemExit):  # Lightning exits after its graceful Ctrl-C shutdown
        run_in(tmp_path / "cut", small_run(shakespeare_path, *fed, *with_callback("tests.helpers.InterruptAt",
                                                                                  step=15)))
    saved = next((tmp_path / "cut").rglob("interrupted.ckpt"))
    resumed = run_in(tmp_path / "cut", small_run(shakespeare_path, *fed, "--ckpt_path", str(saved)))
    assert isinstance(resumed.trainer.train_dataloader, DeviceFeed) and resumed.trainer.global_step == 30
    expected, got = full.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(got[name], expected[name]) for name in expected)

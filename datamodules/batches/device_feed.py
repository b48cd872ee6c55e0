"""Where a rank's training streams live on a GPU: kept on it when they fit, else fed batch by batch.

A rank trains on its own ``B`` streams of ``L`` bytes (datamodules.batches.streams.TrainStreams): ``B x L``
bytes, ``1 / world_size`` of the training split. If that fits ``device_resident_fraction`` of the
GPU's free memory, it is copied there once and every batch is a slice on the device (no per-step
copies). Otherwise ``DeviceFeed`` serves the same batches from the memory-mapped token file: a
background thread gathers each (B, T+1) window into one of a small ring of pinned host buffers
ahead of use (the slow part: page faults, disk reads), and the consumer copies it to the GPU with
``non_blocking=True``, so neither the host nor the GPU waits for the disk.

Lightning then moves every batch to the device itself (``Strategy.batch_to_device`` ->
``move_data_to_device``: ``tensor.to(device, non_blocking=True)``); for a tensor already on that
device, ``Tensor.to`` returns the tensor itself, so it copies nothing twice and waits for nothing.

On the host (CPU training, or an accelerator other than CUDA, whose batches Lightning copies), the
streams are the memory-mapped file already: they are used as they are, and ``DeviceFeed`` runs the
same thread and ring without pinning or device copies (``device_resident_fraction=0`` selects it).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from datamodules.batches.streams import Batch, ResumableBatches, TrainStreams, split_window

DEFAULT_RESIDENT_FRACTION = 0.25  # of the free GPU memory: the model's activations and optimizer state need the rest
RING = 4  # pinned buffers: one being copied, one being filled, two ready


def keep_on_device(stream_bytes: int, free_bytes: int, fraction: float) -> bool:
    """Whether a rank's training streams (``stream_bytes``) fit ``fraction`` of ``free_bytes`` of device memory."""
    return stream_bytes <= fraction * free_bytes


def free_memory(device: torch.device) -> int | None:
    """Free bytes on a CUDA ``device`` (``torch.cuda.mem_get_info``); None for the host."""
    return torch.cuda.mem_get_info(device)[0] if device.type == "cuda" else None


def place_train_streams(streams: TrainStreams, device: torch.device, fraction: float,
                        free_bytes: int | None) -> TrainStreams | DeviceFeed:
    """``streams`` kept on ``device`` if they fit ``fraction`` of its ``free_bytes``, else a ``DeviceFeed``.

    ``free_bytes`` None means host memory (``device`` is the CPU): the streams are the memory-mapped
    file already, used as they are unless ``fraction`` is 0.
    """
    keep = fraction > 0 if free_bytes is None else keep_on_device(streams.nbytes, free_bytes, fraction)
    return streams.to(device) if keep else DeviceFeed(streams, device)


@dataclass
class _Ring:
    """The feed's host buffers, one (B, T+1) window each (pinned for CUDA), and per buffer the CUDA event
    recorded behind its latest copy to the device (none on the host): made once, reused every epoch."""

    buffers: list[torch.Tensor]
    copied: list[torch.cuda.Event] | None

    @classmethod
    def make(cls, shape: torch.Size, size: int, cuda: bool) -> _Ring:
        # an event never recorded is already complete: synchronize() returns at once on the first fill
        return cls([torch.empty(shape, dtype=torch.uint8, pin_memory=cuda) for _ in range(size)],
                   [torch.cuda.Event() for _ in range(size)] if cuda else None)


class DeviceFeed(ResumableBatches):
    """The batches of host ``streams`` (memory-mapped), prefetched through pinned memory onto ``device``.

    Batch for batch the same as ``streams`` kept on ``device`` (bytes copied as they are, made int64
    on the device), resumed epochs included (``skip_next``). The ring of buffers is made once and
    reused by each epoch; the filler thread lives for one epoch (an epoch left early leaves none behind).
    """

    def __init__(self, streams: TrainStreams, device: torch.device, ring: int = RING) -> None:
        self.streams, self.device, self.ring = streams, device, ring
        self.num_batches = len(streams)
        self._spare: _Ring | None = None  # the ring, while no epoch is using it

    def _batches(self, start: int) -> Iterator[Batch]:
        cuda = self.device.type == "cuda"
        # the ring is this epoch's until its filler has stopped; an epoch begun meanwhile makes its own
        ring, self._spare = self._spare or _Ring.make(self.streams.window(0).shape, self.ring, cuda), None
        free: queue.Queue[int | None] = queue.Queue()  # buffers the filler may (re)fill; None: stop
        ready: queue.Queue[int | BaseException] = queue.Queue()  # filled buffers in batch order, or the filler's error
        for slot in range(self.ring):
            free.put(slot)

        def fill() -> None:
            try:
                for k in range(start, self.num_batches):
                    slot = free.get()
                    if slot is None:
                        return
                    if cuda:
                        ring.copied[slot].synchronize()  # its previous copy to the device (maybe last epoch's) is done
                    ring.buffers[slot].copy_(self.streams.window(k))  # reads the memory-mapped file
                    ready.put(slot)
            except BaseException as error:  # noqa: BLE001 - handed to the consumer, which raises it
                ready.put(error)

        filler = threading.Thread(target=fill, name="charlm-device-feed", daemon=True)
        filler.start()
        try:
            for _ in range(start, self.num_batches):
                slot = ready.get()
                if isinstance(slot, BaseException):
                    raise slot
                if cuda:
                    # queued on the current stream, ahead of the step that uses it; the buffer is
                    # refilled only after the event recorded behind the copy has passed
                    window = ring.buffers[slot].to(self.device, non_blocking=True)
                    ring.copied[slot].record(torch.cuda.current_stream(self.device))
                else:
                    window = ring.buffers[slot]
                batch = split_window(window)  # int64: a new tensor, so the buffer is free again
                free.put(slot)
                yield batch
        finally:
            free.put(None)  # a filler waiting for a buffer stops; one still filling stops at its next one
            filler.join()
            self._spare = ring  # no thread writes it now: the next epoch reuses it

r"""Batches of parallel contiguous streams, for truncated backpropagation through time.

Training (as in char-rnn and torch-rnn): the split is cut into ``world_size * B`` equal streams,
rank ``r`` owns streams ``r*B .. r*B+B-1``, and batch ``k`` holds steps ``k*T .. k*T+T-1`` of each.
Row ``b`` of batch ``k+1`` therefore continues row ``b`` of batch ``k``, so the model can carry its
hidden state across batches. Every rank has the same number of batches, so DDP never waits on a
rank that ran out.

A training split of 24 bytes ``abcdefghijklmnopqrstuvwx``, 2 processes, B = 2 streams each
(4 streams of L = 6 bytes), T = 2 steps per batch::

    corpus    a b c d e f | g h i j k l | m n o p q r | s t u v w x
              stream 0      stream 1      stream 2      stream 3
              \___ rank 0 (streams 0, 1) _/ \___ rank 1 (streams 2, 3) _/

    rank 0    batch 0     batch 1     (inputs; targets are the same
    row 0     a b         c d          window shifted one byte right:
    row 1     g h         i j          a b -> b c, c d -> d e, ...)

    rank 1    batch 0     batch 1
    row 0     m n         o p
    row 1     s t         u v

Each stream gives (L - 1) // T = 2 batches, so every input has its target: of stream 0, ``e`` is
only a target and ``f`` is left over. Row ``b`` of batch 1 continues row ``b`` of batch 0: the hidden state
after ``a b`` is the one the model needs before ``c d``.

Evaluation: the split is cut into a fixed number of streams that does not depend on the number of
processes, covering every prediction exactly once (stream lengths differ by at most one; targets
past a stream's end are ``IGNORE``). Streams are dealt round-robin to ranks, so the summed loss over
all ranks, and hence bpc, is the same on 1 process as on many.

These are plain iterables, not DataLoaders: Lightning injects no DistributedSampler into them. A
training batch is a slice of this rank's streams, in the memory-mapped corpus or kept on the GPU
(datamodules.batches.device_feed decides); an evaluation batch is gathered from the memory-mapped split when
it is asked for, so no process holds more of a split than a batch.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator

import torch

IGNORE = -100  # cross_entropy's default ignore_index: a target position with no byte behind it

Batch = tuple[torch.Tensor, torch.Tensor]  # inputs (B, T) int64, targets (B, T) int64


class ResumableBatches:
    """What Lightning asks of a training loader (TrainStreams, datamodules.batches.device_feed.DeviceFeed): a length,
    a one-off skip when resuming mid-epoch, and state. A subclass sets ``num_batches`` and gives ``_batches``."""

    num_batches: int
    skip_next: int = 0  # batches to skip once, when resuming mid-epoch (set by CharDataModule.train_dataloader)

    def __len__(self) -> int:
        return self.num_batches

    # Lightning saves these in checkpoints and warns about loaders without them. The position to
    # resume from is the trainer's own count of finished batches (see CharDataModule.train_dataloader),
    # which, unlike a count kept here, is not thrown off by Lightning fetching a batch ahead.
    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def __iter__(self) -> Iterator[Batch]:
        start, self.skip_next = self.skip_next, 0  # when the first batch is asked for, not at iter()
        yield from self._batches(start)

    def _batches(self, start: int) -> Iterator[Batch]:
        """This epoch's batches ``start`` .. ``num_batches - 1``."""
        raise NotImplementedError


class TrainStreams(ResumableBatches):
    """This rank's training batches: ``B`` contiguous streams advanced ``T`` steps per batch."""

    def __init__(self, tokens: torch.Tensor, batch_size: int, seq_len: int, rank: int = 0, world_size: int = 1) -> None:
        num_streams = batch_size * world_size
        stream_len = len(tokens) // num_streams
        if stream_len < seq_len + 1:
            raise ValueError(
                f"The training split ({len(tokens):,} bytes) is too short for one batch of {num_streams} streams "
                f"x {seq_len + 1} bytes (batch_size={batch_size} x {world_size} processes, seq_len={seq_len}). "
                f"Lower --data.batch_size or --data.seq_len, or use a bigger corpus."
            )
        start = rank * batch_size * stream_len
        self.streams = tokens[start : start + batch_size * stream_len].view(batch_size, stream_len)  # (B, L)
        self.seq_len = seq_len
        self.num_batches = (stream_len - 1) // seq_len

    @property
    def nbytes(self) -> int:
        """Bytes of this rank's streams (B x L): what keeping them on a device takes."""
        return self.streams.numel() * self.streams.element_size()

    def window(self, k: int) -> torch.Tensor:
        """Batch ``k`` as it is stored: (B, T+1) bytes, a view of the streams (inputs, then the last target)."""
        T = self.seq_len
        return self.streams[:, k * T : k * T + T + 1]

    def to(self, device: torch.device) -> TrainStreams:
        """These batches sliced from a copy of these streams on ``device`` (B x L bytes: this rank's only)."""
        moved = copy.copy(self)
        moved.streams = self.streams.to(device)
        return moved

    def _batches(self, start: int) -> Iterator[Batch]:
        for k in range(start, self.num_batches):
            yield split_window(self.window(k))


def split_window(window: torch.Tensor) -> Batch:
    """Inputs and targets of a (B, T+1) window of bytes, as int64 (B, T) each: the targets are shifted one byte."""
    window = window.long()
    return window[:, :-1], window[:, 1:]


class EvalStreams:
    """This rank's share of a fixed set of evaluation streams covering a split exactly once."""

    def __init__(self, tokens: torch.Tensor, num_streams: int, seq_len: int, rank: int = 0,
                 world_size: int = 1) -> None:
        predictions = len(tokens) - 1
        if predictions < num_streams:
            raise ValueError(
                f"The evaluation split ({len(tokens):,} bytes) is shorter than its {num_streams} streams; "
                f"lower --data.eval_batch_size or use a bigger corpus."
            )
        if num_streams < world_size:
            raise ValueError(
                f"--data.eval_batch_size ({num_streams}) must be at least the number of processes ({world_size}), "
                f"so that every process evaluates at least one stream."
            )
        base, extra = divmod(predictions, num_streams)  # the first `extra` streams are one step longer
        longest = base + (extra > 0)
        # a window longer than the longest stream would only be padding: a batch stays bounded by the
        # split (width < 2 x longest), whatever --data.seq_len is
        seq_len = min(seq_len, longest)
        self.num_batches = math.ceil(longest / seq_len)
        mine = torch.arange(rank, num_streams, world_size)  # this rank's streams, (R,)
        self.begins = mine * base + mine.clamp(max=extra)  # (R,) where each starts in the split
        self.lengths = base + (mine < extra).long()  # (R,) its predictions
        self.tokens, self.seq_len = tokens, seq_len
        self.num_predictions = int(self.lengths.sum())

    @property
    def shape(self) -> tuple[int, int]:
        """(R, num_batches x T): the padded grid of this rank's streams that its batches tile."""
        return len(self.lengths), self.num_batches * self.seq_len

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[Batch]:
        # each batch is gathered from the (memory-mapped) split when it is asked for: no padded copy of
        # the split is ever held; past a stream's end, inputs are 0 and targets IGNORE
        T = self.seq_len
        for k in range(self.num_batches):
            steps = torch.arange(k * T, (k + 1) * T + 1)  # (T+1,) the window: T inputs, then the last target
            # position j holds a byte while step j <= length (the stream's last target is byte `length`);
            # past that, position 0 stands in (in bounds), and the masks below overwrite it
            at = (self.begins[:, None] + steps).masked_fill(steps > self.lengths[:, None], 0)  # (R, T+1)
            inputs, targets = split_window(self.tokens[at])  # one gather; (R, T) each, int64
            padding = steps[:-1] >= self.lengths[:, None]  # (R, T) steps with no prediction
            yield inputs.masked_fill(padding, 0), targets.masked_fill(padding, IGNORE)

import itertools

import pytest
import torch

from datamodules.batches.streams import IGNORE, EvalStreams, TrainStreams


def corpus(n: int) -> torch.Tensor:
    return (torch.arange(n) % 251).to(torch.uint8)


def test_row_b_of_batch_k_plus_1_continues_row_b_of_batch_k():
    tokens = torch.randint(0, 50, (10_000,), dtype=torch.uint8)
    batches = list(TrainStreams(tokens, batch_size=4, seq_len=16))
    assert len(batches) > 3
    for (x0, y0), (x1, _) in itertools.pairwise(batches):
        assert torch.equal(x0[:, 1:], y0[:, :-1])  # targets are inputs shifted by one
        assert torch.equal(x1[:, 0], y0[:, -1])  # the next window starts where this one stopped
    # each row is one contiguous stretch of the corpus
    rows = torch.cat([x for x, _ in batches], dim=1)
    L = len(tokens) // 4
    for b in range(4):
        assert torch.equal(rows[b], tokens[b * L : b * L + rows.shape[1]].long())


def test_ranks_get_disjoint_streams_and_equal_batch_counts():
    tokens = torch.arange(9_999, dtype=torch.int64)  # every value says where it came from
    per_rank = [TrainStreams(tokens, 3, 10, rank=r, world_size=2) for r in range(2)]
    assert len(per_rank[0]) == len(per_rank[1]) > 0
    seen = [set(torch.cat([x.flatten() for x, _ in loader]).tolist()) for loader in per_rank]
    assert seen[0].isdisjoint(seen[1])
    # two ranks of 3 streams serve exactly what one process with 6 streams would
    single = TrainStreams(tokens, 6, 10)
    for (x0, y0), (x1, y1), (x, y) in zip(*per_rank, single, strict=True):
        assert torch.equal(torch.cat([x0, x1]), x) and torch.equal(torch.cat([y0, y1]), y)


def test_skip_next_resumes_mid_epoch_once():
    tokens = corpus(5_000)
    loader = TrainStreams(tokens, 2, 8)
    full = list(loader)
    loader.skip_next = 3
    assert [torch.equal(a[0], b[0]) for a, b in zip(list(loader), full[3:], strict=True)] == [True] * (len(full) - 3)
    assert len(list(loader)) == len(full)  # the next epoch starts from the beginning again


def test_too_short_for_one_batch_names_the_arguments():
    with pytest.raises(ValueError, match=r"batch_size.*seq_len"):
        TrainStreams(corpus(100), batch_size=8, seq_len=32)


@pytest.mark.parametrize("world", [1, 2, 3])
def test_eval_covers_every_prediction_exactly_once(world):
    tokens = corpus(1_003)
    pairs = []
    for rank in range(world):
        for x, y in EvalStreams(tokens, num_streams=6, seq_len=16, rank=rank, world_size=world):
            keep = y != IGNORE
            pairs += list(zip(x[keep].tolist(), y[keep].tolist(), strict=True))
    expected = list(itertools.pairwise(tokens.tolist()))
    assert sorted(pairs) == sorted(expected)
    counts = {len(EvalStreams(tokens, 6, 16, r, world)) for r in range(world)}
    assert len(counts) == 1  # equal batch counts on every rank


def test_eval_needs_a_stream_per_process():
    with pytest.raises(ValueError, match="eval_batch_size"):
        EvalStreams(corpus(1000), num_streams=2, seq_len=8, rank=0, world_size=4)


def test_the_drawing_in_the_module_docstring():
    """datamodules/streams.py draws 24 bytes as 2 ranks x 2 streams x 2 batches of T = 2: keep it true."""
    tokens = torch.tensor(list(b"abcdefghijklmnopqrstuvwx"), dtype=torch.uint8)
    drawn = {0: [(b"abgh", b"bchi"), (b"cdij", b"dejk")], 1: [(b"mnst", b"notu"), (b"opuv", b"pqvw")]}
    for rank, batches in drawn.items():
        got = [(bytes(x.flatten().tolist()), bytes(y.flatten().tolist()))
               for x, y in TrainStreams(tokens, 2, 2, rank, 2)]
        assert got == batches, rank


def padded_eval_grid(tokens: torch.Tensor, num_streams: int, width: int, rank: int, world: int):
    """The evaluation batches' reference: this rank's streams padded to ``width`` (inputs 0, targets IGNORE)."""
    base, extra = divmod(len(tokens) - 1, num_streams)
    mine = range(rank, num_streams, world)
    inputs, targets = torch.zeros(len(mine), width, dtype=torch.long), torch.full((len(mine), width), IGNORE)
    for row, s in enumerate(mine):
        begin, length = s * base + min(s, extra), base + (s < extra)
        inputs[row, :length] = tokens[begin : begin + length]
        targets[row, :length] = tokens[begin + 1 : begin + length + 1]
    return inputs, targets


@pytest.mark.parametrize(("size", "streams", "seq_len", "world"), [(1_003, 6, 16, 1), (1_003, 6, 16, 4),
                                                                   (1_000, 7, 1, 3), (50, 16, 10_000, 2)])
def test_eval_batches_are_the_padded_streams_cut_into_windows(size, streams, seq_len, world):
    tokens = torch.randint(0, 256, (size,), dtype=torch.uint8)
    for rank in range(world):
        loader = EvalStreams(tokens, streams, seq_len, rank, world)
        inputs, targets = padded_eval_grid(tokens, streams, loader.shape[1], rank, world)
        T = loader.seq_len
        got = list(loader)
        assert len(got) == len(loader) == loader.shape[1] // T
        for k, (x, y) in enumerate(got):
            assert x.dtype == y.dtype == torch.long
            assert torch.equal(x, inputs[:, k * T : (k + 1) * T]) and torch.equal(y, targets[:, k * T : (k + 1) * T])
        assert loader.num_predictions == int((targets != IGNORE).sum())


def test_eval_streams_hold_no_copy_of_the_split():
    """Batches are gathered when asked for: besides the split itself, a loader holds a few numbers per stream."""
    tokens = corpus(100_000)
    loader = EvalStreams(tokens, num_streams=8, seq_len=64)
    held = [v for v in vars(loader).values() if isinstance(v, torch.Tensor) and v is not tokens]
    assert sum(t.numel() for t in held) <= 2 * 8

"""Sampling: pure functions of logits, and a loop that feeds one byte at a time carrying the state.

``temperature`` 0 means argmax (greedy). ``top_k`` keeps the k most likely bytes; ``top_p`` keeps
the smallest set of most likely bytes whose probability reaches p (nucleus sampling). Both are
applied before sampling, to the temperature-scaled distribution.
"""

from __future__ import annotations

import codecs
import math
from collections.abc import Iterator
from typing import Literal

import torch

from charlm.model import CharRNN, Hidden

StepMode = Literal["auto", "graph", "cells", "fused"]

# Prompt positions (rows x bytes) read per call of the model: a call's activations grow with them, so a
# prompt of any length is read in slices of this many, the state carried from one to the next (a 10 MB
# prompt read in one call took 12.9 GB and more for a 1 x 64 LSTM). A prompt that fits one slice is
# read in one call, as before.
PROMPT_POSITIONS_PER_CALL = 8192


def check_sampling_args(temperature: float, top_k: int | None, top_p: float | None) -> None:
    """Refuse a temperature, top-k or top-p that cannot sample (one line naming the flag)."""
    if not (math.isfinite(temperature) and temperature >= 0):
        raise ValueError(f"--temperature must be >= 0 (0 = greedy) and finite, got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"--top_k must be a positive integer, got {top_k}")
    if top_p is not None and not 0 < top_p <= 1:  # False for nan too
        raise ValueError(f"--top_p must lie in (0, 1], got {top_p}")


def filter_logits(logits: torch.Tensor, top_k: int | None = None, top_p: float | None = None) -> torch.Tensor:
    """Set every logit outside the top-k / top-p support to -inf. logits: (N, V) -> (N, V).

    The most likely byte always stays, however small ``top_p`` is.
    """
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]  # (N, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        # drop a byte once the bytes before it already reach top_p (the most likely one always stays)
        drop_sorted = (probs.cumsum(dim=-1) - probs) >= top_p
        drop_sorted[..., 0] = False
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


NOT_FINITE = ("the model's outputs are not finite (inf or NaN) although its weights are: weights that large come "
              "from a run that diverged. Use an earlier checkpoint of that run, or train again with a lower "
              "--model.lr.")


def sample_next(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draw one token per row. logits: (N, V) -> token ids (N,).

    Works for any temperature down to the smallest float: logits are shifted so that the largest is
    0, so a tiny temperature sends every other logit to -inf (exp -> 0), never the largest to inf
    (softmax -> nan). A temperature that float32 cannot hold (it would become 0, and 0 / 0 nan) is
    greedy, its limit. float32 throughout: MPS has no float64, and this runs once per byte.
    """
    logits = logits.float()  # (N, V)
    if temperature < torch.finfo(torch.float32).tiny:
        return logits.argmax(dim=-1)
    shifted = logits - logits.max(dim=-1, keepdim=True).values  # (N, V) <= 0, the best is 0
    probs = filter_logits(shifted / temperature, top_k, top_p).softmax(dim=-1)
    try:
        return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
    except RuntimeError as err:  # logits inf or NaN midway (the check in generate saw the first step)
        if "probability tensor" not in str(err):
            raise
        raise ValueError(NOT_FINITE) from None


def read_prompt(model: CharRNN, prompt: torch.Tensor, hidden: Hidden | None = None) -> tuple[torch.Tensor, Hidden]:
    """Feed ``prompt`` (N, P) of token ids (any integer type: uint8 takes a byte per position) through ``model``
    from ``hidden``: the logits after its last byte (N, V) and the state. The activations do not grow with P:
    slices of PROMPT_POSITIONS_PER_CALL positions, each made int64 only when read, the state carried."""
    rows, length = prompt.shape
    if length == 0:
        raise ValueError("read_prompt needs at least one byte of prompt")
    width = max(1, PROMPT_POSITIONS_PER_CALL // rows)  # bytes per slice
    for start in range(0, length, width):
        logits, hidden = model(prompt[:, start : start + width].long(), hidden)  # (N, <= width, V)
    return logits[:, -1], hidden


@torch.inference_mode()
def generate(
    model: CharRNN,
    prompt: torch.Tensor,
    length: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
    step_mode: StepMode = "auto",
) -> Iterator[torch.Tensor]:
    """Yield ``length`` tokens (N,), on the CPU, for the N prompts in ``prompt`` (N, P), one step at a time.

    The prompt is read in slices (read_prompt: memory independent of its length); after that each step
    feeds the sampled byte and the carried hidden state back in, so a step costs one cell update per layer
    (``step_mode``: see make_step).
    """
    if step_mode == "auto":
        step_mode = auto_step_mode(prompt.device, prompt.shape[0])
    if step_mode == "graph" and prompt.device.type != "cuda":
        raise ValueError("step mode graph needs a CUDA device: use cells, fused or auto on this device")
    last, hidden = read_prompt(model, prompt)  # (N, V)
    if not torch.isfinite(last).all():  # one device sync per call: weights far too large give inf
        raise ValueError(NOT_FINITE)
    if length == 0:
        return
    if step_mode == "graph":
        from charlm.graph_sampling import GraphSampler, chunk_steps  # it imports this module

        chunk = chunk_steps(last.shape[0], last.shape[1], length)
        sampler = GraphSampler(model, last, hidden, temperature, top_k, top_p, chunk)
        yield from sampler.bytes(length, generator)
        return
    step = make_step(model, step_mode)
    for _ in range(length):
        token = sample_next(last, temperature, top_k, top_p, generator)
        yield token.cpu()
        last, hidden = step(token, hidden)


# Rows for which the fused RNN samples faster than the cells on a CPU; cells everywhere else. Measured with
# scripts/bench_sampling.py (3x512 LSTM, torch 2.13, 2 cores, medians of 5 interleaved rounds, 2 runs each,
# other jobs on the machine): cells / fused = 7-8x at batch 1, 2.1x at 32, 1.1-1.4x at 128; fused / cells =
# 1.7x at 64 (both runs), 1.05x at 256. A fused call has a fixed cost (oneDNN prepares its weights on every
# call) that a few rows cannot amortise; 64 rows do, and at 128 oneDNN's step is slower than at 64 (14-16k
# chars/s there, 9-10k here: its own choice of blocking), so the band is narrow. Other sizes: not measured.
CPU_FUSED_BATCHES = range(64, 128)


def auto_step_mode(device: torch.device, batch: int) -> str:
    """What ``step_mode="auto"`` runs: ``graph`` on CUDA; on a CPU ``fused`` for a batch in
    CPU_FUSED_BATCHES and ``cells`` otherwise; ``cells`` elsewhere (MPS: not measured)."""
    if device.type == "cuda":
        return "graph"
    if device.type == "cpu" and batch in CPU_FUSED_BATCHES:
        return "fused"
    return "cells"


def make_step(model: CharRNN, mode: Literal["cells", "fused"]):
    """A function (token (N,), hidden) -> (logits (N, V), hidden) for one eager step of ``model``.

    ``cells`` runs the model's layer-by-layer ``step``, which on a CPU costs far less per byte than a
    call of the fused RNN for a few rows; ``fused`` calls the fused RNN on one step. On CUDA,
    ``generate`` runs neither by default but ``graph`` (charlm.graph_sampling): one byte is far too
    little work to hide the launch of each kernel.
    """
    if mode == "cells":
        return model.step

    def fused(token: torch.Tensor, hidden: Hidden) -> tuple[torch.Tensor, Hidden]:
        logits, hidden = model(token[:, None], hidden)
        return logits[:, -1], hidden

    return fused


class Utf8Stream:
    """Bytes in, text out, never splitting a multi-byte UTF-8 character (invalid bytes become U+FFFD)."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, data: bytes) -> str:
        return self._decoder.decode(data)

    def finish(self) -> str:
        return self._decoder.decode(b"", final=True)

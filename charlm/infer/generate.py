"""Generation: read a prompt, then feed one byte at a time carrying the state (charlm.infer.logits draws).

``generate`` yields the sampled tokens step by step; ``read_prompt`` feeds a prompt of any length in
slices; the per-step function is the model's cells, the fused RNN, or on CUDA a graph
(charlm.infer.graph_sampling). ``Utf8Stream`` turns the bytes into text without splitting a character.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator
from typing import Literal

import torch

from charlm.infer.logits import NOT_FINITE, sample_next
from charlm.model import CharRNN, Hidden

StepMode = Literal["auto", "graph", "cells", "fused"]

# Prompt positions (rows x bytes) read per call of the model: a call's activations grow with them, so a
# prompt of any length is read in slices of this many, the state carried from one to the next (a 10 MB
# prompt read in one call took 12.9 GB and more for a 1 x 64 LSTM). A prompt that fits one slice is
# read in one call, as before.
PROMPT_POSITIONS_PER_CALL = 8192


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
        from charlm.infer.graph_sampling import GraphSampler, chunk_steps  # CUDA only: imported when used

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
    ``generate`` runs neither by default but ``graph`` (charlm.infer.graph_sampling): one byte is far too
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

"""Pure functions of the logits: check the sampling settings, filter to the top-k / top-p support, draw a byte.

``temperature`` 0 means argmax (greedy). ``top_k`` keeps the k most likely bytes; ``top_p`` keeps
the smallest set of most likely bytes whose probability reaches p (nucleus sampling). Both are
applied before sampling, to the temperature-scaled distribution. The eager loop (charlm.infer.generate)
and the CUDA graph (charlm.infer.graph_sampling) both draw with these.
"""

from __future__ import annotations

import math

import torch


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

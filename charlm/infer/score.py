"""Scoring a text: its surprise byte by byte, its bpc, and several models ranked by it (``charlm score``,
``charlm classify``, the page's Who wrote this and the Python API).

bpc is the mean of -log2 p(byte t | bytes before it) over t = 1..N-1: byte 0 is context only. A model
that predicts a text well compresses it to few bits per byte.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypeVar

import torch
import torch.nn.functional as F

from charlm.checkpoint import LoadedModel
from charlm.model import Hidden


@torch.inference_mode()
def nats_per_byte(loaded: LoadedModel, data: bytes, window: int = 4096) -> torch.Tensor:
    """-ln p(byte t | bytes before it) for t = 1..N-1 of ``data``, shape (N-1,) float32 on the CPU;
    byte 0 is context only. Reads in windows, carrying the hidden state from the model's initial state."""
    ids = torch.as_tensor(loaded.vocab.encode(data), dtype=torch.long)[None]  # (1, N)
    device = next(loaded.model.parameters()).device
    ids = ids.to(device)
    hidden: Hidden | None = None  # the model's initial state, then carried across windows
    out = []
    for start in range(0, ids.shape[1] - 1, window):
        x, y = ids[:, start : start + window], ids[:, start + 1 : start + window + 1]
        logits, hidden = loaded.model(x[:, : y.shape[1]], hidden)  # (1, T, V)
        out.append(F.cross_entropy(logits[0].float(), y[0], reduction="none"))  # (T,)
    return torch.cat(out).cpu() if out else torch.zeros(0)


def bits_per_byte(loaded: LoadedModel, data: bytes, window: int = 4096) -> tuple[float, int]:
    """bpc of ``data`` under the model (the mean of ``nats_per_byte``, in bits), and how many bytes
    were predicted (each from all bytes before it; the first byte is context only). A text of fewer than
    two bytes has nothing to predict, and is refused."""
    if len(data) < 2:
        raise ValueError("The text is empty (or one byte): there is nothing to score.")
    nats = nats_per_byte(loaded, data, window)
    return nats.double().sum().item() / len(nats) / math.log(2), len(nats)


Who = TypeVar("Who")


def ranking(scores: Sequence[tuple[Who, float]], nbytes: int) -> list[tuple[Who, float, float, float]]:
    """The verdict: ``scores`` (who, bits per byte) best first, each as (who, bpc, margin, bytes_more): how
    far behind the best in bits per byte, and in bytes more to encode the text's ``nbytes`` bytes."""
    ranked = sorted(scores, key=lambda s: s[1])
    best = ranked[0][1]
    return [(who, bpc, bpc - best, nbytes * (bpc - best) / 8) for who, bpc in ranked]

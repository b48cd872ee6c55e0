"""Beam search: the N most likely continuations of a prompt, by the model's own total log-probability.

Every candidate has the same length (``--length`` bytes), so their total log-probabilities compare
directly: no length normalisation, no end-of-text symbol (a byte model has none). The scores are the
model's own distribution (temperature 1): a temperature would change which continuation counts as
most likely, and the bits per character printed beside each would no longer be the model's.

Each step runs all N beams through the model as one batch (``CharRNN.step``, generate's ``cells``
stepper), ranks the N x V one-byte extensions with one ``topk`` and keeps the best N, reordering the
hidden state's rows to follow their parents. Beam 1 is greedy decoding (temperature 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from charlm.generate import NOT_FINITE, make_step
from charlm.model import CharRNN, map_hidden
from charlm.model_size import available_memory, gib

# The widest beam charlm runs. Each byte costs one pass of N rows through the network and a top-N over
# N x V scores, and the N best continuations of a character model differ only in their last few bytes
# long before this width: wider beams buy nothing but time. The memory check below also holds.
MAX_BEAM = 10_000


@dataclass(frozen=True)
class Beam:
    """One finished candidate: its token ids and total log-probability (nats) given the prompt."""

    ids: list[int]
    logprob: float

    @property
    def bpc(self) -> float:
        """Bits per character of the continuation: -log2 p / length (0 for an empty one)."""
        return -self.logprob / math.log(2) / len(self.ids) if self.ids else 0.0


def check_beam(beam: int, num_samples: int) -> None:
    """Refuse a beam width below 1 or above MAX_BEAM, or narrower than the samples to print."""
    if beam < 1:
        raise ValueError(f"--beam must be a positive integer (1 = greedy), got {beam}")
    if beam > MAX_BEAM:
        raise ValueError(f"--beam {beam:,} is above charlm's bound of {MAX_BEAM:,}: every byte runs that many rows "
                         f"through the network and ranks beam x vocabulary scores, and so wide a beam finds nothing a "
                         f"narrower one misses. Use a smaller --beam (5 to 100 is usual).")
    if num_samples > beam:
        raise ValueError(f"--num_samples {num_samples} is more than --beam {beam}: beam search keeps only the "
                         f"{beam} best continuations; print at most that many, or widen the beam.")


def check_beam_memory(beam: int, length: int, model: CharRNN, device: torch.device) -> None:
    """Refuse a beam that needs more memory than ``device`` has free: beam x (length x 8 bytes of
    history + vocabulary x 12 bytes of scores + the hidden state)."""
    v, h = model.head.out_features, model.hidden_size
    states = model.num_layers * h * (4 if model.cell == "lstm" else 2)  # (h, c) of this step and the next
    need = beam * (8 * length + 12 * v + 4 * states)  # int64 history; logits, log-probs and totals (float32)
    have = torch.cuda.mem_get_info(device)[0] if device.type == "cuda" else available_memory()
    if have is not None and need > have:
        raise ValueError(f"--beam {beam:,} with --length {length:,} needs about {gib(need)}, more than the "
                         f"{gib(have)} available here. Use a smaller --beam or a shorter --length.")


@torch.inference_mode()
def beam_search(model: CharRNN, prompt: torch.Tensor, length: int, beam: int) -> list[Beam]:
    """The ``beam`` most likely continuations of ``length`` tokens after ``prompt`` (P,), best first.

    Fewer come back only when fewer exist (vocabulary ** length < beam). Exhaustive, and so exact,
    once ``beam`` >= vocabulary ** (length - 1): no prefix of the best sequence is ever dropped.
    """
    logits, hidden = model(prompt[None])  # (1, P, V)
    last = logits[:, -1].float()  # (1, V)
    if not torch.isfinite(last).all():
        raise ValueError(NOT_FINITE)
    step = make_step(model, "cells")
    scores = torch.zeros(1, device=prompt.device)  # (n,) total log-probability of each live beam
    parents, tokens = [], []  # per step, (n,) each: the beam each new one extends, and the token it adds
    for t in range(length):
        totals = scores[:, None] + last.log_softmax(dim=-1)  # (n, V)
        vocab = totals.shape[1]
        scores, flat = totals.flatten().topk(min(beam, totals.numel()))  # (n',) best first
        parents.append(flat // vocab)
        tokens.append(flat % vocab)
        if t + 1 < length:  # the last step's logits would go unused
            hidden = map_hidden(lambda h: h.index_select(1, parents[-1]), hidden)  # (L, n', H): follow the parents
            last, hidden = step(tokens[-1], hidden)
            last = last.float()
    # walk back from each final beam to the prompt: O(length x beam), not a copied history per step
    row = torch.arange(scores.shape[0], device=prompt.device)  # (n,)
    ids = []
    for parent, token in zip(reversed(parents), reversed(tokens), strict=True):
        ids.append(token[row])
        row = parent[row]
    history = torch.stack(ids[::-1], dim=1) if ids else torch.empty(1, 0, dtype=torch.long)  # (n, length)
    return [Beam(seq, score) for seq, score in zip(history.tolist(), scores.tolist(), strict=True)]

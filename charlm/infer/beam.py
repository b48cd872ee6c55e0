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

from charlm.devices import check_fits
from charlm.infer.generate import PROMPT_POSITIONS_PER_CALL, make_step, read_prompt
from charlm.infer.logits import NOT_FINITE
from charlm.model import CharRNN, map_hidden

# The widest beam charlm runs. Each byte costs one pass of N rows through the network and a top-N over
# N x V scores, and the N best continuations of a character model differ only in their last few bytes
# long before this width: wider beams buy nothing but time. The memory check below also holds.
MAX_BEAM = 10_000
# beam_memory's float32 copies per beam: of the V scores (totals, log-softmax, topk's values and
# int64 indices), and of a row's state (before, reordered, after, and the stacked layers); measured
SCORE_COPIES = 6
STATE_COPIES = 7


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


def beam_memory(beam: int, length: int, model: CharRNN, prompt_len: int = 1, keep: int = 1) -> int:
    """Bytes a beam search of width ``beam`` over ``length`` bytes after a ``prompt_len``-byte prompt,
    ``keep`` of its continuations printed, takes at its peak (float32; on a CPU within 1.5x of the
    measured growth of the peak RSS, which tests/infer/test_beam.py checks):

    - the history: per step and beam, the row it extends (int32) and the token it adds (uint8);
    - one step's scores: beam x V totals, their log-softmax, and topk's work over all of them;
    - the state (h[, c]) of every layer before a step, reordered to follow the parents, and after
      it, with a layer's gates, the embedding row and the logits;
    - the prompt's ids (uint8), and its pass, a slice at a time (charlm.infer.generate.read_prompt): (S, E)
      embeddings, (S, H) outputs and gates, (S, V) logits for S = min(P, PROMPT_POSITIONS_PER_CALL);
    - the ``keep`` continuations walked back: Python lists of ints (8 bytes an item) and their text.
    """
    v, h, e = model.head.out_features, model.hidden_size, model.embed.embedding_dim
    states = model.num_layers * h * (2 if model.cell == "lstm" else 1)  # floats of one row's state
    history = beam * length * (4 + token_dtype(v).itemsize)
    step = 4 * beam * (SCORE_COPIES * v + STATE_COPIES * states + 4 * h + e)
    prompt = prompt_len + 4 * min(prompt_len, PROMPT_POSITIONS_PER_CALL) * (e + 5 * h + v)
    kept = keep * length * 10
    return history + step + prompt + kept


def check_beam_memory(beam: int, length: int, model: CharRNN, device: torch.device, prompt_len: int = 1,
                      keep: int = 1) -> None:
    """Refuse a beam search that needs more memory than ``device`` has free (beam_memory)."""
    need = beam_memory(beam, length, model, prompt_len, keep)  # all of it counted on the device
    check_fits(device, need, 0, f"--beam {beam:,} with --length {length:,}",
               "Use a smaller --beam or a shorter --length.")


def token_dtype(vocab_size: int) -> torch.dtype:
    """The smallest integer type of the history's tokens: uint8 for a byte vocabulary (<= 256 symbols)."""
    return torch.uint8 if vocab_size <= 256 else torch.int32


@torch.inference_mode()
def beam_search(model: CharRNN, prompt: torch.Tensor, length: int, beam: int, keep: int | None = None) -> list[Beam]:
    """The ``keep`` (default: all ``beam``) most likely continuations of ``length`` tokens after
    ``prompt`` (P,), best first.

    Fewer come back only when fewer exist (vocabulary ** length < beam). Exhaustive, and so exact,
    once ``beam`` >= vocabulary ** (length - 1): no prefix of the best sequence is ever dropped.
    """
    last, hidden = read_prompt(model, prompt[None])  # (1, V); memory independent of P
    last = last.float()
    if not torch.isfinite(last).all():
        raise ValueError(NOT_FINITE)
    vocab, device = last.shape[1], prompt.device
    step = make_step(model, "cells")
    # per step t and beam j after it: the row of step t - 1 that beam j extends, and the token it adds.
    # 5 bytes per beam and byte (int32, uint8), filled as the search goes; only the rows walked back
    # at the end become Python lists.
    parents = torch.zeros(length, beam, dtype=torch.int32, device=device)
    tokens = torch.zeros(length, beam, dtype=token_dtype(vocab), device=device)
    scores = torch.zeros(1, device=device)  # (n,) total log-probability of each live beam
    for t in range(length):
        totals = (scores[:, None] + last.log_softmax(dim=-1)).flatten()  # (n x V,)
        scores, flat = totals.topk(min(beam, totals.numel()))  # (n',) best first
        del totals
        parent, token = flat.div(vocab, rounding_mode="floor"), flat.remainder(vocab)  # (n',) int64 each
        parents[t, : len(parent)], tokens[t, : len(token)] = parent, token
        if t + 1 < length:  # the last step's logits would go unused
            hidden = map_hidden(lambda h, rows=parent: h.index_select(1, rows), hidden)  # (L, n', H): follow parents
            last, hidden = step(token, hidden)
            last = last.float()
    # walk back from the best `keep` final beams to the prompt: O(length x keep)
    kept = len(scores) if keep is None else min(keep, len(scores))
    row = torch.arange(kept, device=device)  # (k,) topk sorts: the first rows are the best
    ids = torch.empty(kept, length, dtype=tokens.dtype, device=device)  # (k, length)
    for t in range(length - 1, -1, -1):
        ids[:, t] = tokens[t, row]
        row = parents[t, row].long()
    return [Beam(seq, score) for seq, score in zip(ids.tolist(), scores[:kept].tolist(), strict=True)]

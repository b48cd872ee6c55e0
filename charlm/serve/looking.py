"""Look inside: what the model does at each byte of a text.

Activations and top-5 guesses come from charlm.neurons.trace (the model stepped byte by byte, as
``charlm visualize``), the ranked units from ``rank_neurons`` over ``features`` (``visualize
--find``), the colours from charlm.neuron_page's palette. Surprise is -log2 p(byte | bytes before
it) from the model's forward pass, whose mean is ``charlm score``'s bits per byte. Saliency: the
gradient of one prediction's log-probability with respect to the input embeddings of the bytes
before it (a window), its L2 norm per byte.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from charlm.generate import Utf8Stream
from charlm.model import Hidden
from charlm.neuron_page import _colour
from charlm.neurons import Trace, check_view, features, rank_neurons, trace
from charlm.serve.limits import MAX_LOOK, SALIENCY_WINDOW, LimitError, check_size
from charlm.serve.models import Served
from datamodules.vocab import Vocabulary


def known_bytes(data: bytes, vocab: Vocabulary) -> tuple[bytes, str | None]:
    """``data`` without the bytes ``vocab`` lacks, and a note naming them (None if there were none);
    as ``--unknown skip`` (datamodules.vocab.drop_unknown), with the note for the page, not stderr."""
    missing = set(vocab.missing_bytes(data))
    if not missing:
        return data, None
    kept = bytes(b for b in data if b not in missing)
    return kept, f"left out {len(data) - len(kept):,} bytes the model never saw: {vocab.describe_missing(data)}"


def display(data: bytes) -> list[str]:
    """One display string per byte: its character on the first byte of a UTF-8 sequence, '' on the others."""
    stream = Utf8Stream()
    return [stream.feed(bytes([b])) for b in data]


@torch.inference_mode()
def surprise_bits(served: Served, data: bytes, window: int = 4096) -> np.ndarray:
    """-log2 p(byte t | bytes before it) for t = 1..N-1, shape (N-1,); byte 0 is context only.

    The windows of charlm.commands.score.bits_per_byte, carrying the hidden state; its mean is that bpc.
    """
    model = served.loaded.model
    device = next(model.parameters()).device
    ids = torch.as_tensor(served.loaded.vocab.encode(data), dtype=torch.long, device=device)[None]  # (1, N)
    out, hidden = [], None
    for start in range(0, ids.shape[1] - 1, window):
        x, y = ids[:, start : start + window], ids[:, start + 1 : start + window + 1]
        logits, hidden = model(x[:, : y.shape[1]], hidden)  # (1, T, V)
        out.append(F.cross_entropy(logits[0].float(), y[0], reduction="none"))  # (T,) nats
    if not out:
        return np.zeros(0)
    return (torch.cat(out) / math.log(2)).cpu().double().numpy()


class TraceCache:
    """The last few texts seen, so that choosing another unit recolours without stepping the model again.

    Bounded: ``size`` texts of at most MAX_LOOK bytes each; a trace holds every layer's states,
    (layers, N, H) float32 twice for an LSTM: ~60 MB for 5,000 bytes of a 3 x 512 LSTM.
    """

    def __init__(self, size: int = 4) -> None:
        self.size, self._items, self._lock = size, OrderedDict(), threading.Lock()

    def get(self, index: int, served: Served, data: bytes) -> Seen:
        key = (index, hashlib.sha256(data).digest())
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        found = see(served, data)  # outside the lock: other requests go on meanwhile
        with self._lock:
            self._items[key] = found
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return found


@dataclass
class Seen:
    """What does not depend on the unit shown: the trace, the surprise (N-1,) and the ranked units."""

    trace: Trace
    bits: np.ndarray
    ranking: list[dict[str, Any]]


def see(served: Served, data: bytes) -> Seen:
    """Trace ``data`` (charlm.neurons.trace), its surprise, and the units ``visualize --find`` ranks."""
    tr = trace(served.loaded.model, served.loaded.vocab, data)
    ranking = []
    if len(data) > 1:
        states = {"hidden": tr.hidden} | ({"cell": tr.cell} if tr.cell is not None else {})
        ranking = [{"feature": f, "state": s, "layer": lay, "unit": u, "r": round(r, 3)}
                   for f, best in rank_neurons(states, features(data)).items() for s, lay, u, r in best]
    return Seen(tr, surprise_bits(served, data), ranking)


def look(served: Served, index: int, cache: TraceCache, text: str, state: str, layer: int, unit: int
         ) -> dict[str, Any]:
    """Everything the Look inside view draws for ``text`` and one unit (state, layer, unit).

    values[t], colours[t]: the unit after reading byte t (hidden states lie in [-1, 1]; cell states are
    scaled by their largest |value|, as on the static page); top[t]: the five likeliest next bytes
    with their probabilities; surprise[t]: bits for byte t (None for byte 0, which nothing predicts).
    """
    if state not in ("hidden", "cell"):
        raise LimitError(f"state must be hidden or cell, got {state!r}")
    for name, value in (("layer", layer), ("unit", unit)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise LimitError(f"{name} must be an integer, got {value!r}")
    try:
        check_view(served.loaded.model, state, layer, unit, name="")
    except ValueError as err:
        raise LimitError(str(err)) from None
    data, note = known_bytes(text.encode(), served.loaded.vocab)
    check_size(data, MAX_LOOK, "The text")
    if not data:
        return {"chars": [], "values": [], "colours": [], "top": [], "surprise": [], "ranking": [], "bpc": None,
                "note": note}
    seen = cache.get(index, served, data)
    tr, bits = seen.trace, seen.bits
    layer %= served.loaded.model.num_layers
    values = (tr.cell if state == "cell" else tr.hidden)[layer, :, unit]  # (N,)
    scale = 1.0 if state == "hidden" else max(1e-6, float(np.abs(values).max()))
    symbols = tr.symbols
    top = [[[bytes([symbols[i]]).decode("latin-1"), round(float(p), 4)] for i, p in zip(ids, ps, strict=True)]
           for ids, ps in zip(tr.top_ids, tr.top_probs, strict=True)]
    return {"chars": tr.text, "values": [round(float(v), 4) for v in values],
            "colours": [_colour(float(v) / scale) for v in values], "top": top,
            "surprise": [None, *(round(float(b), 3) for b in bits)],
            "bpc": round(float(bits.mean()), 4) if len(bits) else None, "ranking": seen.ranking, "note": note,
            "view": {"state": state, "layer": layer, "unit": unit, "scale": scale}}


def _embeddings_of(model: torch.nn.Module) -> tuple[list[torch.Tensor], Any]:
    """Record the embedding output of this thread's next forward pass (other threads share the model
    and run their own passes meanwhile: their outputs are not recorded)."""
    me, seen = threading.get_ident(), []

    def hook(module: torch.nn.Module, args: Any, output: torch.Tensor) -> None:
        if threading.get_ident() == me:
            seen.append(output)

    return seen, model.embed.register_forward_hook(hook)


def saliency(served: Served, text: str, position: int, window: int = SALIENCY_WINDOW) -> dict[str, Any]:
    """How much each earlier byte mattered to the prediction of byte ``position + 1`` (made after reading
    byte ``position``): for the window of up to ``window`` bytes ending at ``position``, the L2 norm of
    d log p(actual next byte) / d embedding of each byte. The state entering the window is taken as given
    (no gradient flows past its start). Returns {start, scores (window,), target, p}."""
    data, _ = known_bytes(text.encode(), served.loaded.vocab)
    check_size(data, MAX_LOOK, "The text")
    if isinstance(position, bool) or not isinstance(position, int) or not 0 <= position < len(data) - 1:
        raise LimitError(f"position must be a byte with a next byte to predict, in [0, {len(data) - 2}], "
                         f"got {position!r}")
    model, vocab = served.loaded.model, served.loaded.vocab
    device = next(model.parameters()).device
    ids = torch.as_tensor(vocab.encode(data[: position + 2]), dtype=torch.long, device=device)[None]  # (1, t+2)
    start = max(0, position + 1 - window)
    hidden: Hidden | None = None
    if start:
        with torch.inference_mode():
            _, hidden = model(ids[:, :start])  # the state entering the window: a constant here
        hidden = tuple(h.clone() for h in hidden) if isinstance(hidden, tuple) else hidden.clone()
    seen, handle = _embeddings_of(model)
    try:
        with torch.enable_grad():
            logits, _ = model(ids[:, start : position + 1], hidden)  # (1, W, V)
            logp = logits[0, -1].float().log_softmax(-1)[ids[0, position + 1]]
            (grad,) = torch.autograd.grad(logp, seen[0])  # (1, W, E); parameters' .grad untouched
    finally:
        handle.remove()
    scores = grad[0].norm(dim=-1)  # (W,)
    return {"start": start, "scores": [round(float(s), 6) for s in scores.cpu()],
            "target": bytes([data[position + 1]]).decode("latin-1"), "p": round(math.exp(float(logp.detach())), 4)}

"""Look inside: what the model does at each byte of a text.

Activations and top-5 guesses come from charlm.neurons.trace (the model stepped byte by byte, as
``charlm visualize``), the ranked units from ``rank_neurons`` over ``features`` (``visualize
--find``), the colours from charlm.neuron_page's palette. Surprise is -log2 p(byte | bytes before
it) from the model's forward pass, whose mean is ``charlm score``'s bits per byte. Saliency: the
gradient of one prediction's log-probability with respect to the input embeddings of the bytes
before it (a window), its L2 norm per byte.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from charlm.commands.score import nats_per_byte
from charlm.generate import Utf8Stream
from charlm.model import Hidden
from charlm.neuron_page import _colour
from charlm.neurons import Trace, check_view, features, rank_neurons, trace
from charlm.serve.limits import MAX_LOOK, SALIENCY_WINDOW, TRACE_CACHE_BYTES, LimitError, check_size
from charlm.serve.models import Served
from datamodules.vocab import Vocabulary, skip_unknown


def known_bytes(data: bytes, vocab: Vocabulary) -> tuple[bytes, str | None]:
    """``data`` without the bytes ``vocab`` lacks (datamodules.vocab.skip_unknown, as ``--unknown skip``),
    and a note naming them for the page (None if there were none)."""
    kept, missing = skip_unknown(data, {"": vocab})
    if not missing:
        return data, None
    return kept, f"left out {len(data) - len(kept):,} bytes the model never saw: {vocab.describe_missing(data)}"


def display(data: bytes) -> list[str]:
    """One display string per byte: its character on the first byte of a UTF-8 sequence, '' on the others."""
    stream = Utf8Stream()
    return [stream.feed(bytes([b])) for b in data]


def surprise_bits(served: Served, data: bytes, window: int = 4096, hidden: Hidden | None = None) -> np.ndarray:
    """-log2 p(byte t | bytes before it) for t = 1..N-1, shape (N-1,); byte 0 is context only.

    charlm.commands.score.nats_per_byte in bits: its mean is ``charlm score``'s bpc.
    """
    return (nats_per_byte(served.loaded, data, window, hidden).double() / math.log(2)).numpy()


@dataclass
class Seen:
    """What does not depend on the unit shown: the trace, the surprise (N-1,) and the ranked units of ``data``;
    ``reused``: how many leading bytes came from an earlier text's trace rather than from the model."""

    data: bytes
    trace: Trace
    bits: np.ndarray
    ranking: list[dict[str, Any]]
    reused: int = 0

    @property
    def nbytes(self) -> int:
        tr = self.trace
        arrays = (tr.hidden, tr.cell, tr.top_ids, tr.top_probs, self.bits)
        return sum(a.nbytes for a in arrays if a is not None) + 60 * len(self.data)  # + the display strings


def state_after(served: Served, tr: Trace, t: int) -> Hidden | None:
    """The model's state after byte ``t`` of a trace (its hidden and cell rows); t = -1: before any byte."""
    if t < 0:
        return None
    device = next(served.loaded.model.parameters()).device
    h = torch.from_numpy(tr.hidden[:, t : t + 1].copy()).to(device)  # (layers, 1, H)
    return h if tr.cell is None else (h, torch.from_numpy(tr.cell[:, t : t + 1].copy()).to(device))


def common_start(a: bytes, b: bytes) -> int:
    """How many leading bytes ``a`` and ``b`` share, cut back to whole UTF-8 characters of ``b``."""
    n = min(len(a), len(b))
    differ = np.flatnonzero(np.frombuffer(a, np.uint8, n) != np.frombuffer(b, np.uint8, n))
    k = int(differ[0]) if len(differ) else n
    while 0 < k < len(b) and b[k] & 0xC0 == 0x80:  # b[k] continues a character: keep that character out
        k -= 1
    return k


def see(served: Served, data: bytes, earlier: Seen | None = None) -> Seen:
    """Trace ``data`` (charlm.neurons.trace), its surprise, and the units ``visualize --find`` ranks.

    With ``earlier`` (a text that starts like this one: typing at its end, or deleting), the bytes they
    share are taken from its trace and only the rest is stepped, from the state where they part.
    """
    model, vocab = served.loaded.model, served.loaded.vocab
    k = common_start(earlier.data, data) if earlier is not None else 0
    if k == 0:
        earlier = None
    parts, bits = [], []
    if earlier is not None:
        old = earlier.trace
        parts.append(Trace(old.text[:k], old.hidden[:, :k], None if old.cell is None else old.cell[:, :k],
                           old.top_ids[:k], old.top_probs[:k], old.symbols))
        bits.append(earlier.bits[: k - 1])  # bytes 1..k-1
    if k < len(data):
        parts.append(trace(model, vocab, data[k:], state_after(served, earlier.trace, k - 1) if earlier else None))
        # bytes k..N-1: read from byte k-1 on, from the state after byte k-2
        bits.append(surprise_bits(served, data[max(k - 1, 0) :],
                                  hidden=state_after(served, earlier.trace, k - 2) if earlier else None))

    def join(arrays: list[np.ndarray], axis: int = 0) -> np.ndarray:
        return arrays[0] if len(arrays) == 1 else np.concatenate(arrays, axis)

    tr = Trace([c for part in parts for c in part.text], join([p.hidden for p in parts], 1),
               None if parts[0].cell is None else join([p.cell for p in parts], 1),
               join([p.top_ids for p in parts]), join([p.top_probs for p in parts]), vocab.symbols)
    ranking = []
    if len(data) > 1:
        states = {"hidden": tr.hidden} | ({"cell": tr.cell} if tr.cell is not None else {})
        ranking = [{"feature": f, "state": s, "layer": lay, "unit": u, "r": round(r, 3)}
                   for f, best in rank_neurons(states, features(data)).items() for s, lay, u, r in best]
    return Seen(data, tr, np.concatenate(bits) if bits else np.zeros(0), ranking, k)


class TraceCache:
    """Recent texts' traces, so that choosing another unit recolours without stepping the model again, and
    typing at the end of a text steps only the new bytes.

    Bounded by bytes, not texts: a trace holds every layer's states, (layers, N, H) float32 twice for an
    LSTM: ~60 MB for 5,000 bytes of a 3 x 512 LSTM. The least recently used go first.
    """

    def __init__(self, budget: int = TRACE_CACHE_BYTES) -> None:
        self.budget, self._items, self._lock = budget, OrderedDict(), threading.Lock()

    def get(self, index: int, served: Served, data: bytes) -> Seen:
        with self._lock:
            key = (index, data)
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            same_model = [seen for (i, _), seen in self._items.items() if i == index]
        earlier = max(same_model, key=lambda seen: common_start(seen.data, data), default=None)
        found = see(served, data, earlier)  # outside the lock: other requests go on meanwhile
        with self._lock:
            self._items[key] = found
            self._items.move_to_end(key)
            while self._items and self.held() > self.budget:
                self._items.popitem(last=False)
        return found

    def held(self) -> int:
        """Bytes the cached traces take."""
        return sum(seen.nbytes for seen in self._items.values())


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
    sent = text.encode()
    check_size(sent, MAX_LOOK, "The text")  # the request as sent, as Who wrote this checks it
    data, note = known_bytes(sent, served.loaded.vocab)
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
    sent = text.encode()
    check_size(sent, MAX_LOOK, "The text")
    data, _ = known_bytes(sent, served.loaded.vocab)
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

"""Look inside: what the model does at each byte of a text.

Activations, top-5 guesses and surprise come from one pass of charlm.infer.neurons.trace (the model
stepped byte by byte, as ``charlm visualize``), the ranked units from ``rank_neurons`` over
``features`` (``visualize --find``), the colours from charlm.infer.neuron_page's palette. Surprise is
-log2 p(byte | bytes before it), whose mean is ``charlm score``'s bpc. Saliency: the
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

from charlm.infer.generate import read_prompt
from charlm.infer.neuron_page import _colour
from charlm.infer.neurons import Trace, check_view, display, features, rank_neurons, trace
from charlm.infer.score import nats_per_byte
from charlm.model import Hidden
from charlm.serve.limits import MAX_LOOK, SALIENCY_WINDOW, TRACE_CACHE_BYTES, LimitError, check_size, shown
from charlm.serve.models import Served
from datamodules.io.vocab import Vocabulary, skip_unknown


def known_bytes(data: bytes, vocab: Vocabulary) -> tuple[bytes, str | None]:
    """``data`` without the bytes ``vocab`` lacks (datamodules.io.vocab.skip_unknown, as ``--unknown skip``),
    and a note naming them for the page (None if there were none)."""
    kept, missing = skip_unknown(data, {"": vocab})
    if not missing:
        return data, None
    return kept, f"left out {len(data) - len(kept):,} bytes the model never saw: {vocab.describe_missing(data)}"


def surprise_bits(served: Served, data: bytes, window: int = 4096) -> np.ndarray:
    """-log2 p(byte t | bytes before it) for t = 1..N-1, shape (N-1,); byte 0 is context only.

    charlm.infer.score.nats_per_byte in bits: its mean is ``charlm score``'s bpc.
    """
    return (nats_per_byte(served.loaded, data, window).double() / math.log(2)).numpy()


def rounded(bits: np.ndarray) -> list[float]:
    """Surprise as the page gets it: bits to 3 decimals."""
    return [round(float(b), 3) for b in bits]


def guesses(tr: Trace, start: int = 0) -> list[list[list[Any]]]:
    """The top-5 guesses after each byte from ``start`` on, as the page gets them: [[character, p] x 5] a byte."""
    symbols = tr.symbols
    return [[[bytes([symbols[i]]).decode("latin-1"), round(float(p), 4)] for i, p in zip(ids, ps, strict=True)]
            for ids, ps in zip(tr.top_ids[start:], tr.top_probs[start:], strict=True)]


@dataclass
class Seen:
    """What does not depend on the unit shown, computed once per text: the trace, the top-5 guesses and surprise
    as the page gets them (N,) and the ranked units of ``data``; ``reused`` (read by tests only): how many
    leading bytes came from an earlier text's trace rather than from the model."""

    data: bytes
    trace: Trace
    top: list[list[list[Any]]]
    surprise: list[float | None]  # None for byte 0, which nothing predicts
    ranking: list[dict[str, Any]]
    reused: int = 0

    @property
    def bits(self) -> np.ndarray:
        """The surprise in bits, (N-1,) float64: from the trace's logp, not stored twice."""
        return self.trace.surprise

    @property
    def nbytes(self) -> int:
        tr = self.trace
        arrays = (tr.hidden, tr.cell, tr.top_ids, tr.top_probs, tr.logp)
        # + the Python lists a byte: display string ~60 B, top-5 ~580 B, surprise ~30 B (sys.getsizeof, deep)
        return sum(a.nbytes for a in arrays if a is not None) + 700 * len(self.data)


def state_after(served: Served, tr: Trace, t: int) -> Hidden | None:
    """The model's state after byte ``t`` of a trace (its hidden and cell rows); t = -1: before any byte."""
    if t < 0:
        return None
    device = next(served.loaded.model.parameters()).device
    h = torch.from_numpy(tr.hidden[:, t : t + 1].copy()).to(device)  # (layers, 1, H)
    return h if tr.cell is None else (h, torch.from_numpy(tr.cell[:, t : t + 1].copy()).to(device))


def common_start(a: bytes, b: bytes) -> int:
    """How many leading bytes ``a`` and ``b`` share. Even inside a UTF-8 character: the state after byte t
    depends on bytes 0..t only, and ``see`` redoes the display strings over the whole text."""
    n = min(len(a), len(b))
    differ = np.flatnonzero(np.frombuffer(a, np.uint8, n) != np.frombuffer(b, np.uint8, n))
    return int(differ[0]) if len(differ) else n


def see(served: Served, data: bytes, earlier: Seen | None = None, k: int = 0) -> Seen:
    """Trace ``data`` (charlm.infer.neurons.trace: states, guesses and surprise in one pass) and rank the units
    ``visualize --find`` ranks.

    With ``earlier`` (a text that starts like this one: typing at its end, or deleting) and ``k``, the
    number of leading bytes they share (``common_start``; 0: none are reused), those bytes are taken from
    its trace and only the rest is stepped, from the state where they part (nothing, when ``data`` is the
    start of ``earlier``'s text).
    """
    model, vocab = served.loaded.model, served.loaded.vocab
    if earlier is None or k == 0:
        tr = trace(model, vocab, data)
        top, surprise = guesses(tr), [None, *rounded(tr.surprise)]
    elif k == len(data):  # deleted at the end: every state, guess and surprise is in the earlier trace
        old = earlier.trace
        # copies, not views: a view would keep the earlier arrays whole once that trace leaves the cache,
        # beyond what nbytes counts
        tr = Trace(display(data), old.hidden[:, :k].copy(), None if old.cell is None else old.cell[:, :k].copy(),
                   old.top_ids[:k].copy(), old.top_probs[:k].copy(), vocab.symbols, old.logp[: k - 1].copy())
        top, surprise = earlier.top[:k], earlier.surprise[:k]
    else:
        old = earlier.trace
        # from byte k-1, the state after byte k-2 entering: its guess (the cache keeps only the top 5) scores
        # byte k; its state and guesses at byte k-1 are the earlier trace's again, so the new part starts at 1
        new = trace(model, vocab, data[k - 1 :], state_after(served, old, k - 2))
        cell = None if old.cell is None else np.concatenate([old.cell[:, :k], new.cell[:, 1:]], 1)
        tr = Trace(display(data), np.concatenate([old.hidden[:, :k], new.hidden[:, 1:]], 1), cell,
                   np.concatenate([old.top_ids[:k], new.top_ids[1:]]),
                   np.concatenate([old.top_probs[:k], new.top_probs[1:]]), vocab.symbols,
                   np.concatenate([old.logp[: k - 1], new.logp]))
        top, surprise = earlier.top[:k] + guesses(new, 1), earlier.surprise[:k] + rounded(new.surprise)  # + k..N-1
    ranking = []
    if len(data) > 1:
        states = {"hidden": tr.hidden} | ({"cell": tr.cell} if tr.cell is not None else {})
        ranking = [{"feature": f, "state": s, "layer": lay, "unit": u, "r": round(r, 3)}
                   for f, best in rank_neurons(states, features(data)).items() for s, lay, u, r in best]
    return Seen(data, tr, top, surprise, ranking, k)


class TraceCache:
    """Recent texts' traces, so that choosing another unit recolours without stepping the model again, typing
    at the end of a text steps only the new bytes, and saliency starts from the state its window starts at.

    Bounded by bytes, not texts: a trace holds every layer's states, (layers, N, H) float32 twice for an
    LSTM: ~60 MB for 5,000 bytes of a 3 x 512 LSTM. The least recently used go first.
    """

    def __init__(self, budget: int = TRACE_CACHE_BYTES) -> None:
        self.budget, self._items, self._lock = budget, OrderedDict(), threading.Lock()
        self._held = 0  # the sum of the items' nbytes, kept as they come and go

    def _nearest(self, index: int, data: bytes, shared: int) -> tuple[Seen | None, int]:
        """The cached trace of model ``index`` that shares the most leading bytes with ``data`` (its own first),
        if it shares at least ``shared`` (>= 1) bytes, and how many it shares (0 with None); marked as used now,
        so the least recently used go first."""
        with self._lock:
            found, most = self._items.get((index, data)), len(data)
            if found is None:  # the longest common start (max keeps the first: the least recently used of equals)
                most, key = max(((common_start(seen.data, data), key) for key, seen in self._items.items()
                                 if key[0] == index), key=lambda pair: pair[0], default=(0, None))
                found = self._items[key] if key is not None and most >= shared else None
            if found is None:
                return None, 0
            self._items.move_to_end((index, found.data))
            return found, most

    def get(self, index: int, served: Served, data: bytes) -> Seen:
        """What ``see`` gives for ``data`` under model ``index``: cached, continued from a cached trace that
        starts like it, or traced whole."""
        earlier, k = self._nearest(index, data, 1)
        if earlier is not None and earlier.data == data:
            return earlier
        found = see(served, data, earlier, k)  # outside the lock: other requests go on meanwhile
        key = (index, data)
        with self._lock:
            replaced = self._items.pop(key, None)  # another request saw the same text meanwhile
            if replaced is not None:
                self._held -= replaced.nbytes
            self._items[key] = found
            self._held += found.nbytes
            while self._items and self._held > self.budget:
                self._held -= self._items.popitem(last=False)[1].nbytes
        return found

    def state_after(self, index: int, served: Served, data: bytes, t: int) -> Hidden | None:
        """The state after byte ``t`` (>= 0) of ``data`` from a cached trace of model ``index`` that shares
        bytes 0..t with it, or None when no cached trace does."""
        seen, _ = self._nearest(index, data, t + 1)
        return None if seen is None else state_after(served, seen.trace, t)

    def held(self) -> int:
        """Bytes the cached traces take (for tests: the budget is kept as items come and go)."""
        return self._held


def look(served: Served, index: int, cache: TraceCache, text: str, state: str, layer: int, unit: int
         ) -> dict[str, Any]:
    """Everything the Look inside view draws for ``text`` and one unit (state, layer, unit).

    values[t], colours[t]: the unit after reading byte t (hidden states lie in [-1, 1]; cell states are
    scaled by their largest |value|, as on the static page); top[t]: the five likeliest next bytes
    with their probabilities; surprise[t]: bits for byte t (None for byte 0, which nothing predicts).
    """
    if state not in ("hidden", "cell"):
        raise LimitError(f"state must be hidden or cell, got {shown(state)}")
    for name, value in (("layer", layer), ("unit", unit)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise LimitError(f"{name} must be an integer, got {shown(value)}")
    size = served.loaded.model.hidden_size
    if not 0 <= unit < size:  # before check_view, whose message calls it a neuron (the page says unit)
        raise LimitError(f"unit must be in [0, {size - 1}] (hidden_size {size}), got {unit}")
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
    seen = cache.get(index, served, data)  # all but the unit's values: once per text
    tr, bits = seen.trace, seen.bits
    layer %= served.loaded.model.num_layers
    values = (tr.cell if state == "cell" else tr.hidden)[layer, :, unit]  # (N,)
    scale = 1.0 if state == "hidden" else max(1e-6, float(np.abs(values).max()))
    return {"chars": tr.text, "values": [round(float(v), 4) for v in values],
            "colours": [_colour(float(v) / scale) for v in values], "top": seen.top, "surprise": seen.surprise,
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


def saliency(served: Served, text: str, position: int, window: int = SALIENCY_WINDOW, *,
             cache: TraceCache | None = None, index: int = 0) -> dict[str, Any]:
    """How much each earlier byte mattered to the prediction of byte ``position + 1`` (made after reading
    byte ``position``): for the window of up to ``window`` bytes ending at ``position``, the L2 norm of
    d log p(actual next byte) / d embedding of each byte. The state entering the window is taken as given
    (no gradient flows past its start): from ``cache``'s trace of the text (model ``index``) when it has
    one, else read from byte 0. Returns {start, scores (window,), target, p}."""
    sent = text.encode()
    check_size(sent, MAX_LOOK, "The text")
    data, _ = known_bytes(sent, served.loaded.vocab)
    if len(data) < 2:
        raise LimitError(f"text needs two bytes the model knows at least for a saliency (one read, the next "
                         f"predicted); it has {len(data)}.")
    if isinstance(position, bool) or not isinstance(position, int) or not 0 <= position < len(data) - 1:
        raise LimitError(f"position must be a byte with a next byte to predict, in [0, {len(data) - 2}], "
                         f"got {shown(position)}")
    model, vocab = served.loaded.model, served.loaded.vocab
    device = next(model.parameters()).device
    ids = torch.as_tensor(vocab.encode(data[: position + 2]), dtype=torch.long, device=device)[None]  # (1, t+2)
    start = max(0, position + 1 - window)
    hidden = cache.state_after(index, served, data, start - 1) if cache is not None and start else None
    if start and hidden is None:
        with torch.inference_mode():
            _, hidden = read_prompt(model, ids[:, :start])  # the state entering the window: a constant here
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

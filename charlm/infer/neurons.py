"""What each neuron does: step a model through a text byte by byte, and rank neurons by features.

Activations come from stepping the model one byte at a time through the same weights
(``CharRNN.step``), since the fused cuDNN RNN returns only the top layer. ``rank_neurons`` finds
the units whose activation best tracks a few interpretable features (inside quotes, position in
the line, bracket depth, indentation), as in the post's cell visualisations. ``check_view``
refuses a state, layer or unit the model does not have. Numbers only: charlm.infer.neuron_page turns
them into the HTML page.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from charlm.infer.generate import Utf8Stream
from charlm.model import CharRNN, Hidden, hidden_tensors
from datamodules.io.vocab import Vocabulary

State = Literal["hidden", "cell"]


@dataclass
class Trace:
    """What ``trace`` recorded for a text of N bytes."""

    text: list[str]  # one display string per byte ('' for the inner bytes of a multi-byte character)
    hidden: np.ndarray  # (layers, N, H) hidden state after reading byte t
    cell: np.ndarray | None  # (layers, N, H) LSTM cell state, else None
    top_ids: np.ndarray  # (N, 5) most likely next bytes after byte t
    top_probs: np.ndarray  # (N, 5)
    symbols: tuple[int, ...]
    logp: np.ndarray  # (N-1,) ln p(byte t | bytes before it), t = 1..N-1: the text's own bytes, as charlm score reads

    @property
    def surprise(self) -> np.ndarray:
        """(N-1,) float64 bits: -log2 p(byte t | bytes before it), t = 1..N-1; its mean is the text's bpc."""
        return -self.logp.astype(np.float64) / np.log(2)


@torch.inference_mode()
def trace(model: CharRNN, vocab: Vocabulary, data: bytes, hidden: Hidden | None = None) -> Trace:
    """Step through ``data`` byte by byte, recording every layer's state, the top-5 guesses and the
    log-probability of each actual next byte (one pass: ``charlm score``'s numbers to float tolerance).

    Runs wherever the model is, in its current mode (call it in eval mode: dropout would draw
    random numbers), without autocast. ``hidden``: the state before the first byte (None: the
    model's initial state), so a text can be traced on from where an earlier trace stopped.
    """
    device = next(model.parameters()).device
    ids = torch.as_tensor(vocab.encode(data), dtype=torch.long, device=device)
    hs, cs, rows = [], [], []
    with torch.autocast(device.type, enabled=False):
        for token in ids:
            logits, hidden = model.step(token[None], hidden)
            rows.append(logits[0])
            h, *c = hidden_tensors(hidden)  # (layers, 1, H) each; c only for an LSTM
            hs.append(h[:, 0].float())
            if c:
                cs.append(c[0][:, 0].float())

    def stack(xs: list[torch.Tensor], dim: int = 0) -> np.ndarray:
        return torch.stack(xs, dim).cpu().numpy()  # one copy off the device, at the end

    # every byte's guesses in one call each, not one per stepped byte: (N, V) -> top-5 (N, 5); the guesses
    # after bytes 0..N-2 scored at the bytes that came: (N-1, V) -> (N-1,)
    logits = torch.stack(rows).float()  # (N, V)
    top = torch.topk(logits.softmax(-1), min(5, logits.shape[-1]))
    logp = logits[:-1].log_softmax(-1).gather(1, ids[1:, None])[:, 0].cpu().numpy()
    return Trace(display(data), stack(hs, 1), stack(cs, 1) if cs else None, top.indices.cpu().numpy(),
                 top.values.cpu().numpy(), vocab.symbols, logp)


def display(data: bytes) -> list[str]:
    """One display string per byte: its character on the first byte of a UTF-8 sequence, '' on the others."""
    stream = Utf8Stream()
    return [stream.feed(bytes([b])) for b in data]


def features(data: bytes) -> dict[str, np.ndarray]:
    """Per-byte features a neuron might track, each of shape (N,)."""
    n = len(data)
    quote, column, depth, indent = np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n)
    inside, col, level, lead, at_line_start = False, 0, 0, 0, True
    for i, b in enumerate(data):
        if b == ord('"'):
            inside = not inside
        if b in b"([{":
            level += 1
        elif b in b")]}":
            level = max(0, level - 1)
        if b == ord("\n"):
            col, lead, at_line_start = 0, 0, True
        else:
            col += 1
            if at_line_start and b in b" \t":
                lead += 1
            else:
                at_line_start = False
        quote[i], column[i], depth[i], indent[i] = inside, col, level, lead
    return {"inside quotes": quote, "position in line": column, "bracket depth": depth, "indentation": indent}


def rank_neurons(
    states: dict[str, np.ndarray], feats: dict[str, np.ndarray], top: int = 3
) -> dict[str, list[tuple[str, int, int, float]]]:
    """For each feature, the neurons whose activation correlates best with it (by |Pearson r|).

    states: name ("hidden"/"cell") -> (layers, N, H). Returns feature -> [(state, layer, unit, r)].
    """
    ranked = {}
    for fname, f in feats.items():
        if f.std() == 0:
            continue  # the text never varies this feature: nothing to find
        fz = (f - f.mean()) / f.std()
        candidates = []
        for sname, s in states.items():
            z = (s - s.mean(1, keepdims=True)) / (s.std(1, keepdims=True) + 1e-8)  # (L, N, H)
            r = np.einsum("lnh,n->lh", z, fz) / len(f)  # (L, H)
            for layer, unit in zip(*np.unravel_index(np.argsort(-np.abs(r), axis=None)[:top], r.shape), strict=True):
                candidates.append((sname, int(layer), int(unit), float(r[layer, unit])))
        ranked[fname] = sorted(candidates, key=lambda c: -abs(c[3]))[:top]
    return ranked


def check_view(model: CharRNN, state: State, layer: int, neuron: int, name: str = "--") -> None:
    """Refuse a state, layer or unit the model does not have; ``name`` prefixes the argument names
    in the message ("--" for the command line, "VisualizeNeurons " for the callback)."""
    if state == "cell" and model.cell != "lstm":
        raise ValueError(f"{name}state cell needs an LSTM; this model's cell is {model.cell}: use {name}state hidden.")
    if not -model.num_layers <= layer < model.num_layers:
        raise ValueError(f"{name}layer must be in [0, {model.num_layers - 1}] (or negative from the end), got {layer}")
    if not 0 <= neuron < model.hidden_size:
        raise ValueError(f"{name}neuron must be in [0, {model.hidden_size - 1}] (hidden_size {model.hidden_size}), "
                         f"got {neuron}")

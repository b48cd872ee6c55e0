"""``charlm visualize``: a self-contained HTML page of what the network sees, in the post's style.

Each character is coloured by one neuron's activation (blue negative, red positive; hidden state
or, for LSTMs, cell state, of any layer), with the model's top-5 guesses for the next character
under it, shaded by probability. ``--find`` ranks every neuron by how well it tracks a few
interpretable features (inside quotes, position in the line, bracket depth, indentation) and adds
a panel for the best neuron of each.

Activations come from stepping the model one byte at a time through the same weights
(``CharRNN.step``), since the fused cuDNN RNN returns only the top layer.
"""

from __future__ import annotations

import html
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from charlm.checkpoint import load_checkpoint
from charlm.model import CharRNN, hidden_tensors
from charlm.sampling import Utf8Stream
from charlm.score import drop_unknown
from datamodules.vocab import Vocabulary

State = Literal["hidden", "cell"]


@dataclass
class Trace:
    text: list[str]  # one display string per byte ('' for the inner bytes of a multi-byte character)
    hidden: np.ndarray  # (layers, N, H) hidden state after reading byte t
    cell: np.ndarray | None  # (layers, N, H) LSTM cell state, else None
    top_ids: np.ndarray  # (N, 5) most likely next bytes after byte t
    top_probs: np.ndarray  # (N, 5)
    symbols: tuple[int, ...]


@torch.inference_mode()
def trace(model: CharRNN, vocab: Vocabulary, data: bytes) -> Trace:
    """Step through ``data`` byte by byte, recording every layer's state and the top-5 guesses.

    Runs wherever the model is, in its current mode (call it in eval mode: dropout would draw
    random numbers), without autocast.
    """
    device = next(model.parameters()).device
    ids = torch.as_tensor(vocab.encode(data), dtype=torch.long, device=device)
    hidden, hs, cs, tops, probs = None, [], [], [], []
    with torch.autocast(device.type, enabled=False):
        for token in ids:
            logits, hidden = model.step(token[None], hidden)
            h, *c = hidden_tensors(hidden)  # (layers, 1, H) each; c only for an LSTM
            hs.append(h[:, 0].float())
            if c:
                cs.append(c[0][:, 0].float())
            top = torch.topk(logits[0].float().softmax(-1), min(5, logits.shape[-1]))
            tops.append(top.indices)
            probs.append(top.values)
    stream = Utf8Stream()
    text = [stream.feed(bytes([b])) for b in data]

    def stack(xs: list[torch.Tensor], dim: int = 0) -> np.ndarray:
        return torch.stack(xs, dim).cpu().numpy()  # one copy off the device, at the end

    return Trace(text, stack(hs, 1), stack(cs, 1) if cs else None, stack(tops), stack(probs), vocab.symbols)


# --- interpretable features ---------------------------------------------------------------------
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


def rank_neurons(states: dict[str, np.ndarray], feats: dict[str, np.ndarray], top: int = 3) -> dict[str, list[tuple[str, int, int, float]]]:
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
            for layer, unit in zip(*np.unravel_index(np.argsort(-np.abs(r), axis=None)[:top], r.shape)):
                candidates.append((sname, int(layer), int(unit), float(r[layer, unit])))
        ranked[fname] = sorted(candidates, key=lambda c: -abs(c[3]))[:top]
    return ranked


# --- HTML ---------------------------------------------------------------------------------------
def _colour(value: float) -> str:
    """-1 -> blue, 0 -> white, +1 -> red (the post's palette)."""
    v = max(-1.0, min(1.0, value))
    a = abs(v)
    return f"rgba(220,40,40,{a:.2f})" if v > 0 else f"rgba(40,90,220,{a:.2f})"


def _char(ch: str) -> str:
    return {"\n": "⏎", " ": "␣", "\t": "⇥"}.get(ch, ch)


def panel(tr: Trace, state: State, layer: int, unit: int, title: str, guesses: bool) -> str:
    values = (tr.cell if state == "cell" else tr.hidden)[layer, :, unit]
    scale = 1.0 if state == "hidden" else max(1e-6, float(np.abs(values).max()))  # cell states are unbounded
    cells = []
    for t, ch in enumerate(tr.text):
        if not ch:
            continue  # continuation byte of a multi-byte character, shown with its first byte
        guess = ""
        if guesses:
            rows = []
            for gid, gp in zip(tr.top_ids[t], tr.top_probs[t]):
                g = bytes([tr.symbols[gid]]).decode("latin-1")
                rows.append(f'<div class="g" style="background:rgba(60,160,60,{gp:.2f})">{html.escape(_char(g))}</div>')
            guess = "".join(rows)
        tip = f"{state} layer {layer} unit {unit}: {values[t]:+.3f}"
        cells.append(f'<span class="c" title="{tip}"><span class="ch" style="background:{_colour(values[t] / scale)}">'
                     f"{html.escape(_char(ch))}</span>{guess}</span>" + ("<br>" if ch == "\n" else ""))
    return f'<section><h2>{html.escape(title)}</h2><div class="text">{"".join(cells)}</div></section>'


PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>charlm: {title}</title><style>
body{{font-family:sans-serif;margin:2em;max-width:1200px}} h1{{font-size:1.3em}} h2{{font-size:1em;margin-top:2em}}
.text{{font-family:monospace;font-size:14px;line-height:1.1}} .c{{display:inline-block;vertical-align:top;margin:0 0 6px 0}}
.ch{{display:block;padding:1px 1px;text-align:center;min-width:0.6em;white-space:pre}}
.g{{font-size:9px;text-align:center;color:#222;white-space:pre}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:2px 8px;font-size:13px}}
</style></head><body><h1>{title}</h1><p>{intro}</p>{table}{panels}</body></html>"""


def render(tr: Trace, source: str, panels: list[tuple[State, int, int, str]], ranking: dict | None,
           guesses: bool) -> str:
    table = ""
    if ranking:
        rows = "".join(f"<tr><td>{html.escape(f)}</td><td>{s}</td><td>{layer}</td><td>{unit}</td><td>{r:+.3f}</td></tr>"
                       for f, best in ranking.items() for s, layer, unit, r in best)
        table = f"<h2>Neurons that track a feature (Pearson r)</h2><table><tr><th>feature</th><th>state</th>" \
                f"<th>layer</th><th>unit</th><th>r</th></tr>{rows}</table>"
    intro = (f"{html.escape(source)}. Each character is coloured by one neuron's value after "
             f"reading it (blue negative, red positive); the green rows under it are the model's five best "
             f"guesses for the next character, shaded by probability. Hover for the exact value.")
    body = "".join(panel(tr, s, layer, unit, title, guesses) for s, layer, unit, title in panels)
    return PAGE.format(title="what the network sees", intro=intro, table=table, panels=body)


def build_page(model: CharRNN, vocab: Vocabulary, data: bytes, source: str, state: State = "hidden", layer: int = -1,
               neuron: int = 0, find: bool = True, guesses: bool = True) -> tuple[str, dict | None, int]:
    """The HTML page for ``data``: the chosen neuron's panel, plus the best neuron per feature if ``find``.

    Returns (html, ranking or None, number of panels). Raises ValueError for bytes outside the vocabulary.
    """
    tr = trace(model, vocab, data)
    layer = layer % model.num_layers
    panels: list[tuple[State, int, int, str]] = [(state, layer, neuron, f"{state} state, layer {layer}, unit {neuron}")]
    ranking = None
    if find:
        states = {"hidden": tr.hidden} | ({"cell": tr.cell} if tr.cell is not None else {})
        ranking = rank_neurons(states, features(data))
        for fname, best in ranking.items():
            s, lay, unit, r = best[0]
            panels.append((s, lay, unit, f"best for {fname}: {s} state, layer {lay}, unit {unit} (r = {r:+.3f})"))
    return render(tr, source, panels, ranking, guesses), ranking, len(panels)


def check_view(model: CharRNN, state: State, layer: int, neuron: int, name: str = "--") -> None:
    """Refuse a state, layer or unit the model does not have; ``name`` prefixes the argument names
    in the message ("--" for the command line, "VisualizeNeurons " for the callback)."""
    if state == "cell" and model.cell != "lstm":
        raise ValueError(f"{name}state cell needs an LSTM; this model's cell is {model.cell}: use {name}state hidden.")
    if not -model.num_layers <= layer < model.num_layers:
        raise ValueError(f"{name}layer must be in [0, {model.num_layers - 1}] (or negative from the end), got {layer}")
    if not 0 <= neuron < model.hidden_size:
        raise ValueError(f"{name}neuron must be in [0, {model.hidden_size - 1}] (hidden_size {model.hidden_size}), got {neuron}")


MAX_BYTES = 100_000  # a page holds ~300 bytes of HTML per character: 30 MB at this bound


def read_passage(path: str, max_bytes: int, name: str = "--text_file") -> bytes:
    """The first ``max_bytes`` of a text file (only those are read), refusing a missing or empty one."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise FileNotFoundError(f"{name}: {file} does not exist (or is not a file).")
    with file.open("rb") as f:
        data = f.read(max_bytes)
    if not data:
        raise ValueError(f"{name}: {file} is empty; there is nothing to visualise.")
    return data


def check_out(out: str, name: str = "--out") -> Path:
    """The page's path, refusing a folder (the page is one file: name it) and a path through a file."""
    target = Path(out).expanduser()
    if target.is_dir():
        raise ValueError(f"{name} {out} is a folder; give the page a file name, e.g. {name} {target / 'visualize.html'}")
    parent = next((p for p in target.absolute().parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise ValueError(f"{name} {out}: {parent} is a file, not a folder; choose another path for the page.")
    return target


def write_page(target: Path, page: str) -> Path:
    """Write to a temporary file beside ``target``, then rename: an existing page is never left
    half-written, and a failed write leaves no temporary file behind.

    A name that is not a regular file (``/dev/stdout``, a FIFO, a device) is written through, as
    a rename would put a file in its place; a symlink keeps pointing at the page it names."""
    if target.exists() and not target.is_file():  # exists() and is_file() follow links
        try:
            with open(target, "w", encoding="utf-8") as f:
                f.write(page)
        except OSError as err:
            if err.filename is None and err.errno is not None:  # a failed write(): name the page
                raise type(err)(err.errno, err.strerror, str(target)) from err
            raise
        return target
    if target.is_symlink():
        target = Path(os.path.realpath(target))  # the page it names, renamed over; the link stays
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(page, encoding="utf-8")
        tmp.replace(target)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, OSError) and err.filename is None and err.errno is not None:  # a failed write(): name the page
            raise type(err)(err.errno, err.strerror, str(target)) from err
        raise
    return target


def visualize(
    ckpt_path: str,
    text_file: str,
    out: str = "visualize.html",
    layer: int = -1,
    state: State = "hidden",
    neuron: int = 0,
    find: bool = False,
    max_bytes: int = 3000,
    guesses: bool = True,
    unknown: Literal["error", "skip"] = "error",
) -> Path:
    """Write a self-contained HTML page colouring a text by neuron activations.

    Args:
        ckpt_path: a charlm checkpoint.
        text_file: the text to read through the model.
        out: the HTML file to write.
        layer: which layer (0 = first, -1 = last).
        state: hidden, or cell (LSTM only).
        neuron: which unit of that layer to show (besides those --find picks).
        find: rank all neurons against interpretable features and show the best ones.
        max_bytes: read at most this many bytes of the text (1 to 100,000).
        guesses: show the top-5 next-character guesses under each character.
        unknown: bytes the model never saw: refuse the text (error) or leave them out (skip).
    """
    if not 1 <= max_bytes <= MAX_BYTES:
        raise ValueError(f"--max_bytes must lie in [1, {MAX_BYTES:,}] (a page holds ~300 bytes of HTML per "
                         f"character), got {max_bytes}")
    target = check_out(out)
    loaded = load_checkpoint(ckpt_path, "cpu")
    check_view(loaded.model, state, layer, neuron)
    data = drop_unknown(read_passage(text_file, max_bytes), [(f"--ckpt_path {ckpt_path}", loaded)], unknown)
    page, ranking, num_panels = build_page(loaded.model, loaded.vocab, data, f"Checkpoint {ckpt_path}", state, layer,
                                           neuron, find, guesses)
    target = write_page(target, page)
    print(f"wrote {target} ({len(data):,} bytes, {num_panels} panels)")
    if ranking:
        for fname, best in ranking.items():
            s, lay, unit, r = best[0]
            print(f"  {fname}: {s} layer {lay} unit {unit}, r = {r:+.3f}")
    return target

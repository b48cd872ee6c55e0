"""The neuron page: a self-contained HTML file colouring a text by one neuron per panel, in the post's style.

Each character is coloured by one neuron's activation (blue negative, red positive; hidden state
or, for LSTMs, cell state, of any layer), with the model's top-5 guesses for the next character
under it, shaded by probability; with ``find``, a table of the neurons that track a feature and a
panel for the best of each. The numbers come from charlm.infer.neurons (``trace``, ``rank_neurons``);
this module reads the passage (``read_passage``) and lays the numbers out as HTML (``build_page``).
``charlm visualize`` and the VisualizeNeurons callback both use it and write the file, so the page a run
logs is the page the command writes.
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np

from charlm.infer.neurons import State, Trace, features, rank_neurons, trace
from charlm.model import CharRNN
from datamodules.io.vocab import Vocabulary


def _colour(value: float) -> str:
    """-1 -> blue, 0 -> white, +1 -> red (the post's palette)."""
    v = max(-1.0, min(1.0, value))
    a = abs(v)
    return f"rgba(220,40,40,{a:.2f})" if v > 0 else f"rgba(40,90,220,{a:.2f})"


def _char(ch: str) -> str:
    return {"\n": "⏎", " ": "␣", "\t": "⇥"}.get(ch, ch)


# Colours as classes (a page holds thousands of characters per panel): v0 .. v20 for -1 .. +1 in steps of 0.1,
# w0 .. w10 for a guess's probability
_STEPS = 10
_CSS_CLASSES = (
    "".join(f".v{k}{{background:{_colour((k - _STEPS) / _STEPS)}}}" for k in range(2 * _STEPS + 1))
    + "".join(f".w{k}{{background:rgba(60,160,60,{k / _STEPS:.1f})}}" for k in range(_STEPS + 1))
)


def _value_class(value: float) -> str:
    return f"v{round(max(-1.0, min(1.0, value)) * _STEPS) + _STEPS}"


def _guesses(tr: Trace, t: int) -> str:
    """The model's top-5 guesses for the byte after position ``t``, shaded by probability."""
    return "".join(f'<u class="w{round(float(gp) * _STEPS)}">{html.escape(_char(chr(tr.symbols[gid])))}</u>'
                   for gid, gp in zip(tr.top_ids[t], tr.top_probs[t], strict=True))


def panel(tr: Trace, state: State, layer: int, unit: int, title: str, guesses: bool) -> str:
    """One ``<section>``: the text coloured by one unit of ``state`` in ``layer`` (top-5 guesses under each
    character if ``guesses``); hidden states lie in [-1, 1], cell states are scaled by their largest value.
    Hovering a character shows its value."""
    values = (tr.cell if state == "cell" else tr.hidden)[layer, :, unit]
    scale = 1.0 if state == "hidden" else max(1e-6, float(np.abs(values).max()))  # cell states are unbounded
    cells = []
    for t, ch in enumerate(tr.text):
        if not ch:
            continue  # continuation byte of a multi-byte character, shown with its first byte
        char = f'<a class="{_value_class(values[t] / scale)}" title="{values[t]:+.2f}">{html.escape(_char(ch))}</a>'
        cells.append((f'<span class="c">{char}{_guesses(tr, t)}</span>' if guesses else char)
                     + ("<br>" if ch == "\n" else ""))
    return f'<section><h2>{html.escape(title)}</h2><div class="text">{"".join(cells)}</div></section>'


# Sized for a W&B HTML panel (600 x 450 by default) as much as for a browser window: a one-line header, the
# first panel right under it, the ranking table last
PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>charlm: {title}</title><style>
body{{font-family:sans-serif;margin:8px;max-width:1200px}} h1{{font-size:15px;margin:0}} p{{font-size:12px;margin:2px 0 6px}}
h2{{font-size:13px;margin:10px 0 4px}} .text{{font-family:monospace;font-size:14px;line-height:1.25}}
.text a{{display:inline-block;padding:1px;text-align:center;min-width:0.6em;white-space:pre;color:#000}}
.c{{display:inline-block;vertical-align:top;margin:0 0 4px 0}} .c a{{display:block}}
.c u{{display:block;font-size:11px;text-align:center;text-decoration:none;color:#222;white-space:pre}}
table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;padding:2px 8px;font-size:12px}} {classes}
</style></head><body><h1>{title}</h1><p>{intro}</p>{panels}{table}</body></html>"""  # noqa: E501  (CSS as written: the page's bytes)


def render(tr: Trace, source: str, panels: list[tuple[State, int, int, str]], ranking: dict | None,
           guesses: bool) -> str:
    """The whole page: a line naming ``source``, one panel per (state, layer, unit, title) in order (the
    model's guesses under the first panel's characters only: they are the same in every panel), then the
    ranking table (if any)."""
    table = ""
    if ranking:
        rows = "".join(f"<tr><td>{html.escape(f)}</td><td>{s}</td><td>{layer}</td><td>{unit}</td><td>{r:+.3f}</td></tr>"
                       for f, best in ranking.items() for s, layer, unit, r in best)
        table = (f"<h2>Neurons that track a feature (Pearson r)</h2><table><tr><th>feature</th><th>state</th>"
                 f"<th>layer</th><th>unit</th><th>r</th></tr>{rows}</table>")
    shown = " Under each character of the first panel, in green, the model's five best guesses for the next one." \
        if guesses else ""
    intro = (f"{html.escape(source)}. Each character is coloured by one neuron's value after reading it (blue "
             f"negative, red positive; hover for the number).{shown}")
    body = "".join(panel(tr, s, layer, unit, title, guesses and i == 0) for i, (s, layer, unit, title) in
                   enumerate(panels))
    return PAGE.format(title="what the network sees", intro=intro, table=table, panels=body, classes=_CSS_CLASSES)


def build_page(model: CharRNN, vocab: Vocabulary, data: bytes, source: str, state: State = "hidden", layer: int = -1,
               neuron: int = 0, find: bool = True, guesses: bool = True) -> tuple[str, dict | None, int]:
    """The HTML page for ``data``: with ``find``, the best neuron per feature first, the one that tracks its
    feature most closely at the top, then the chosen neuron; without, the chosen neuron alone.

    Returns (html, ranking or None, number of panels). Raises ValueError for bytes outside the vocabulary.
    """
    tr = trace(model, vocab, data)
    layer = layer % model.num_layers
    chosen: tuple[State, int, int, str] = (state, layer, neuron, f"{state} state, layer {layer}, unit {neuron}")
    panels: list[tuple[State, int, int, str]] = []
    ranking = None
    if find:
        states = {"hidden": tr.hidden} | ({"cell": tr.cell} if tr.cell is not None else {})
        ranking = rank_neurons(states, features(data))
        best = sorted(((fname, *found[0]) for fname, found in ranking.items()), key=lambda b: -abs(b[4]))
        for fname, s, lay, unit, r in best:
            panels.append((s, lay, unit, f"best for {fname}: {s} state, layer {lay}, unit {unit} (r = {r:+.3f})"))
    panels.append(chosen)
    return render(tr, source, panels, ranking, guesses), ranking, len(panels)


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

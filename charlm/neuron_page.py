"""The neuron page: a self-contained HTML file colouring a text by one neuron per panel, in the post's style.

Each character is coloured by one neuron's activation (blue negative, red positive; hidden state
or, for LSTMs, cell state, of any layer), with the model's top-5 guesses for the next character
under it, shaded by probability; with ``find``, a table of the neurons that track a feature and a
panel for the best of each. The numbers come from charlm.neurons (``trace``, ``rank_neurons``);
this module reads the passage (``read_passage``) and lays the numbers out as HTML (``build_page``);
charlm.commands.output_path.write_output writes the file. ``charlm visualize`` and the VisualizeNeurons
callback both use it, so the page a run logs is the page the command writes.
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np

from charlm.model import CharRNN
from charlm.neurons import State, Trace, features, rank_neurons, trace
from datamodules.vocab import Vocabulary


def _colour(value: float) -> str:
    """-1 -> blue, 0 -> white, +1 -> red (the post's palette)."""
    v = max(-1.0, min(1.0, value))
    a = abs(v)
    return f"rgba(220,40,40,{a:.2f})" if v > 0 else f"rgba(40,90,220,{a:.2f})"


def _char(ch: str) -> str:
    return {"\n": "⏎", " ": "␣", "\t": "⇥"}.get(ch, ch)


def panel(tr: Trace, state: State, layer: int, unit: int, title: str, guesses: bool) -> str:
    """One ``<section>``: the text coloured by one unit of ``state`` in ``layer`` (top-5 guesses under each
    character if ``guesses``); hidden states lie in [-1, 1], cell states are scaled by their largest value."""
    values = (tr.cell if state == "cell" else tr.hidden)[layer, :, unit]
    scale = 1.0 if state == "hidden" else max(1e-6, float(np.abs(values).max()))  # cell states are unbounded
    cells = []
    for t, ch in enumerate(tr.text):
        if not ch:
            continue  # continuation byte of a multi-byte character, shown with its first byte
        guess = ""
        if guesses:
            rows = []
            for gid, gp in zip(tr.top_ids[t], tr.top_probs[t], strict=True):
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
</style></head><body><h1>{title}</h1><p>{intro}</p>{table}{panels}</body></html>"""  # noqa: E501  (CSS as written: the page's bytes)


def render(tr: Trace, source: str, panels: list[tuple[State, int, int, str]], ranking: dict | None,
           guesses: bool) -> str:
    """The whole page: an introduction naming ``source``, the ranking table (if any), then one panel per
    (state, layer, unit, title)."""
    table = ""
    if ranking:
        rows = "".join(f"<tr><td>{html.escape(f)}</td><td>{s}</td><td>{layer}</td><td>{unit}</td><td>{r:+.3f}</td></tr>"
                       for f, best in ranking.items() for s, layer, unit, r in best)
        table = (f"<h2>Neurons that track a feature (Pearson r)</h2><table><tr><th>feature</th><th>state</th>"
                 f"<th>layer</th><th>unit</th><th>r</th></tr>{rows}</table>")
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

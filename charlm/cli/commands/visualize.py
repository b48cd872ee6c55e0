"""``charlm visualize``: write the neuron page (charlm.infer.neuron_page) for a checkpoint and a text."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from charlm.checkpoint import load_checkpoint
from charlm.cli.output_path import check_output_path, write_output
from charlm.infer.neuron_page import MAX_BYTES, build_page, read_passage
from charlm.infer.neurons import State, check_view
from datamodules.io.vocab import drop_unknown


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
    overwrite: bool = False,
) -> Path:
    """Write a page colouring a text by neuron activations.

    The page is one self-contained HTML file.

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
        overwrite: replace --out if it exists (never the checkpoint or the text read).
    """
    if not 1 <= max_bytes <= MAX_BYTES:
        raise ValueError(f"--max_bytes must lie in [1, {MAX_BYTES:,}] (a page holds ~300 bytes of HTML per "
                         f"character), got {max_bytes}")
    target = check_output_path(out, "--out", "the page", "visualize.html", folder_made=True, overwrite=overwrite,
                               inputs={"--ckpt_path": ckpt_path, "--text_file": text_file})
    loaded = load_checkpoint(ckpt_path, "cpu")
    check_view(loaded.model, state, layer, neuron)
    data = drop_unknown(read_passage(text_file, max_bytes), {f"--ckpt_path {ckpt_path}": loaded.vocab}, unknown)
    page, ranking, num_panels = build_page(loaded.model, loaded.vocab, data, f"Checkpoint {ckpt_path}", state, layer,
                                           neuron, find, guesses)
    target = write_output(target, page.encode("utf-8"), "--out")
    print(f"wrote {target} ({len(data):,} bytes, {num_panels} panel{'s' * (num_panels != 1)})")
    if ranking:
        for fname, best in ranking.items():
            s, lay, unit, r = best[0]
            print(f"  {fname}: {s} layer {lay} unit {unit}, r = {r:+.3f}")
    return target

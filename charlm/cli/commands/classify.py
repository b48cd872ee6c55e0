"""``charlm classify``: compression as classification.

The model that compresses a passage best (fewest bits per byte, ``charlm score``) most likely
learned from the same kind of text ("Shakespeare or Hemingway?").

    python -m charlm classify --ckpt_path shakespeare.ckpt python.ckpt --text_file passage.txt
    cat passage.txt | python -m charlm classify --ckpt_path a.ckpt b.ckpt

``--unknown skip`` removes every byte that any of the models never saw, so all models score the
same bytes; ``--unknown error`` (the default) refuses such a text, naming the bytes.
"""

from __future__ import annotations

from typing import Literal

from charlm.checkpoint import load_checkpoint
from charlm.cli.commands.score import read_text
from charlm.devices import KNOWN as KNOWN_DEVICES
from charlm.devices import resolve_device
from charlm.infer.score import bits_per_byte, ranking
from datamodules.io.vocab import drop_unknown


def classify(
    ckpt_path: list[str],
    text_file: str | None = None,
    text: str | None = None,
    unknown: Literal["error", "skip"] = "error",
    device: str = "auto",
) -> list[tuple[str, float]]:
    """Which model's training text does a passage resemble?

    The model that compresses it best: the fewest bpc.

    Args:
        ckpt_path: two or more charlm checkpoints, one after another (--ckpt_path a.ckpt b.ckpt).
        text_file: the text to classify ('-' or nothing: standard input).
        text: the text to classify, given inline.
        unknown: bytes some model never saw: refuse the text (error) or leave them out for all models (skip).
        device: {devices} (auto: a GPU if there is one).
    """
    if len(ckpt_path) < 2:
        raise ValueError("--ckpt_path: classify needs at least two checkpoints to choose between.")
    resolved = resolve_device(device)
    models = [(path, load_checkpoint(path, resolved)) for path in ckpt_path]  # a path given twice is scored twice
    data = drop_unknown(read_text(text, text_file), {path: loaded.vocab for path, loaded in models}, unknown)
    (best_path, best, _, _), *others = ranked = ranking(
        [(path, bits_per_byte(loaded, data)[0]) for path, loaded in models], len(data))
    print(f"most likely: {best_path} ({best:.4f} bpc over {len(data) - 1:,} bytes)")
    for path, bpc, margin, more in others:
        print(f"  {path}: {bpc:.4f} bpc (+{margin:.4f}, {more:,.0f} bytes more to encode)")
    return [(path, bpc) for path, bpc, _, _ in ranked]


classify.__doc__ = classify.__doc__.replace("{devices}", KNOWN_DEVICES)  # --help lists the devices charlm knows

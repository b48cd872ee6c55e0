"""``charlm score``: the bpc of a text under a checkpoint.

A model that predicts a text well compresses it to few bits per byte (``charlm classify`` compares
several models on one text this way).

    python -m charlm score --ckpt_path a.ckpt --text_file passage.txt
    cat passage.txt | python -m charlm score --ckpt_path a.ckpt

Bytes a model never saw in training have no probability under it: ``--unknown error`` (the
default) refuses such a text, naming the bytes; ``--unknown skip`` removes them before scoring.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal

from charlm.checkpoint import load_checkpoint
from charlm.devices import KNOWN as KNOWN_DEVICES
from charlm.devices import resolve_device
from charlm.infer.score import bits_per_byte
from datamodules.io.vocab import drop_unknown


def read_text(text: str | None, text_file: str | None) -> bytes:
    """The text to score: ``--text``, ``--text_file`` ('-': standard input), or standard input."""
    if text is not None and text_file is not None:
        raise ValueError("Give --text or --text_file, not both.")
    if text is not None:
        data = text.encode()
    elif text_file is not None and text_file != "-":
        path = Path(text_file).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"--text_file: {path} does not exist (or is not a file).")
        data = path.read_bytes()
    elif not sys.stdin.isatty():
        data = sys.stdin.buffer.read()
    else:
        raise ValueError("Give the text with --text_file FILE, --text '...', or on standard input.")
    return data  # fewer than two bytes: bits_per_byte says there is nothing to score


def score(
    ckpt_path: str,
    text_file: str | None = None,
    text: str | None = None,
    unknown: Literal["error", "skip"] = "error",
    device: str = "auto",
) -> float:
    """The bpc of a text under a checkpoint.

    The fewer bits per character, the better the model predicts (compresses) the text.

    Args:
        ckpt_path: a charlm checkpoint.
        text_file: the text to score ('-' or nothing: standard input).
        text: the text to score, given inline.
        unknown: bytes the model never saw: refuse the text (error) or leave them out (skip).
        device: {devices} (auto: a GPU if there is one).
    """
    loaded = load_checkpoint(ckpt_path, resolve_device(device))
    data = drop_unknown(read_text(text, text_file), {ckpt_path: loaded.vocab}, unknown)
    bpc, count = bits_per_byte(loaded, data)
    print(f"{bpc:.4f} bpc over {count:,} bytes ({ckpt_path})")
    return bpc


score.__doc__ = score.__doc__.replace("{devices}", KNOWN_DEVICES)  # --help lists the devices charlm knows

"""``charlm score`` and ``charlm classify``: compression as classification.

A model that predicts a text well compresses it to few bits per byte; the model that compresses
a passage best most likely learned from the same kind of text ("Shakespeare or Hemingway?").

    python -m charlm score --ckpt_path a.ckpt --text_file passage.txt
    python -m charlm classify --ckpt_path shakespeare.ckpt python.ckpt --text_file passage.txt
    cat passage.txt | python -m charlm classify --ckpt_path a.ckpt b.ckpt

Bytes a model never saw in training have no probability under it. ``--unknown error`` (the
default) refuses such a text, naming the bytes; ``--unknown skip`` removes them before scoring
(for ``classify``: every byte that any of the models lacks, so all models score the same bytes).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from charlm.checkpoint import LoadedModel, load_checkpoint
from charlm.devices import KNOWN as KNOWN_DEVICES
from charlm.devices import resolve_device
from charlm.parse_errors import OneLineErrors


@torch.inference_mode()
def bits_per_byte(loaded: LoadedModel, data: bytes, window: int = 4096) -> tuple[float, int]:
    """bpc of ``data`` under the model, and how many bytes were predicted (each from all bytes
    before it; the first byte is context only). Reads in windows, carrying the hidden state."""
    ids = torch.as_tensor(loaded.vocab.encode(data), dtype=torch.long)[None]  # (1, N)
    device = next(loaded.model.parameters()).device
    ids = ids.to(device)
    nats, hidden = 0.0, None
    for start in range(0, ids.shape[1] - 1, window):
        x, y = ids[:, start : start + window], ids[:, start + 1 : start + window + 1]
        logits, hidden = loaded.model(x[:, : y.shape[1]], hidden)
        nats += F.cross_entropy(logits[0].float(), y[0], reduction="sum").item()
    count = ids.shape[1] - 1
    return nats / count / math.log(2), count


def read_text(text: str | None, text_file: str | None) -> bytes:
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
    if len(data) < 2:
        raise ValueError("The text is empty (or one byte): there is nothing to score.")
    return data


def drop_unknown(data: bytes, models: list[tuple[str, LoadedModel]], unknown: str) -> bytes:
    """Apply the --unknown policy for bytes that some model's vocabulary lacks."""
    missing = {}
    for name, loaded in models:
        if loaded.vocab.missing_bytes(data):
            missing[name] = loaded.vocab
    if not missing:
        return data
    if unknown == "error":
        name, vocab = next(iter(missing.items()))
        raise ValueError(f"{name}: the text contains {vocab.describe_missing(data)}, which this model never saw; "
                         f"use --unknown skip to leave them out.")
    lacking = set().union(*(set(v.missing_bytes(data)) for v in missing.values()))
    kept = bytes(b for b in data if b not in lacking)
    print(f"note: skipped {len(data) - len(kept)} bytes ({len(lacking)} distinct values) that "
          f"{', '.join(missing)} never saw", file=sys.stderr)
    if len(kept) < 2:
        raise ValueError("Nothing is left after skipping the unknown bytes.")
    return kept


class _Parser(OneLineErrors, argparse.ArgumentParser):
    """argparse with one-line errors, like the other commands."""


def _parser(prog: str, many: bool) -> argparse.ArgumentParser:
    parser = _Parser(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt_path", nargs="+" if many else None, required=True,
                        help="charlm checkpoints" if many else "a charlm checkpoint")
    parser.add_argument("--text_file", help="the text to score ('-' or nothing: standard input)")
    parser.add_argument("--text", help="the text to score, given inline")
    parser.add_argument("--unknown", choices=["error", "skip"], default="error",
                        help="bytes a model never saw: refuse the text (default) or drop them")
    parser.add_argument("--device", default="cpu", help=f"{KNOWN_DEVICES} (auto: a GPU if there is one)")
    return parser


def score_main(argv: list[str]) -> float:
    args = _parser("charlm score", many=False).parse_args(argv)
    loaded = load_checkpoint(args.ckpt_path, resolve_device(args.device))
    data = drop_unknown(read_text(args.text, args.text_file), [(args.ckpt_path, loaded)], args.unknown)
    bpc, count = bits_per_byte(loaded, data)
    print(f"{bpc:.4f} bpc over {count:,} bytes ({args.ckpt_path})")
    return bpc


def classify_main(argv: list[str]) -> list[tuple[str, float]]:
    args = _parser("charlm classify", many=True).parse_args(argv)
    if len(args.ckpt_path) < 2:
        raise ValueError("--ckpt_path: classify needs at least two checkpoints to choose between.")
    device = resolve_device(args.device)
    models = [(path, load_checkpoint(path, device)) for path in args.ckpt_path]
    data = drop_unknown(read_text(args.text, args.text_file), models, args.unknown)
    scores = sorted(((path, bits_per_byte(loaded, data)[0]) for path, loaded in models), key=lambda s: s[1])
    best_path, best = scores[0]
    print(f"most likely: {best_path} ({best:.4f} bpc over {len(data) - 1:,} bytes)")
    for path, bpc in scores[1:]:
        print(f"  {path}: {bpc:.4f} bpc (+{bpc - best:.4f}, {len(data) * (bpc - best) / 8:,.0f} bytes more to encode)")
    return scores

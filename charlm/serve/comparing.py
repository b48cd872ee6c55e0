"""Who wrote this: a passage scored by every model, as ``charlm classify`` does, with per-byte surprise.

The bytes some model never saw are left out for all (classify's ``--unknown skip``), so every model
scores the same bytes; the verdict is the model with the fewest bits per byte, with its margin in
bits per byte and in bytes more to encode, as classify prints it.
"""

from __future__ import annotations

from typing import Any

from charlm.commands.score import bits_per_byte
from charlm.serve.limits import MAX_COMPARE, LimitError, check_size
from charlm.serve.looking import display, known_bytes, surprise_bits
from charlm.serve.models import Served


def compare(models: list[Served], text: str) -> dict[str, Any]:
    """Per model: bits per byte (charlm score's) and per-byte surprise; the verdict with its margin."""
    data, notes = text.encode(), []
    check_size(data, MAX_COMPARE, "The text")
    for served in models:  # one after another: what model 1 lacks is gone before model 2 looks
        data, note = known_bytes(data, served.loaded.vocab)
        if note:
            notes.append(f"{served.name}: {note}")
    if len(data) < 2:
        raise LimitError("Give at least two characters the models know: the first byte is context only.")
    scores = []
    for index, served in enumerate(models):
        bpc, count = bits_per_byte(served.loaded, data)
        bits = surprise_bits(served, data)
        scores.append({"model": index, "name": served.name, "bpc": round(bpc, 4), "count": count,
                       "surprise": [None, *(round(float(b), 3) for b in bits)]})
    ranked = sorted(scores, key=lambda s: s["bpc"])
    best = ranked[0]
    verdict = {"model": best["model"], "name": best["name"], "bpc": best["bpc"], "count": best["count"],
               "others": [{"name": s["name"], "bpc": s["bpc"], "margin": round(s["bpc"] - best["bpc"], 4),
                           "bytes_more": round(len(data) * (s["bpc"] - best["bpc"]) / 8)} for s in ranked[1:]]}
    return {"chars": display(data), "scores": scores, "verdict": verdict, "notes": notes}

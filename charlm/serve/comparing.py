"""Who wrote this: a passage scored by every model, as ``charlm classify`` does, with per-byte surprise.

The bytes some model never saw are left out for all (classify's ``--unknown skip``,
datamodules.vocab.skip_unknown), so every model scores the same bytes; the verdict is the model
with the fewest bits per byte, with its margin in bits per byte and in bytes more to encode, as
classify prints it.
"""

from __future__ import annotations

from typing import Any

from charlm.serve.limits import MAX_COMPARE, LimitError, check_size
from charlm.serve.looking import display, surprise_bits
from charlm.serve.models import Served
from datamodules.vocab import skip_unknown


def compare(models: list[Served], text: str) -> dict[str, Any]:
    """Per model: bits per byte (charlm score's: the mean of its per-byte surprise, one pass) and per-byte
    surprise; the verdict with its margin."""
    sent = text.encode()
    check_size(sent, MAX_COMPARE, "The text")
    data, missing = skip_unknown(sent, {served.name: served.loaded.vocab for served in models})
    notes = []
    for name, vocab in missing.items():
        lacking = set(vocab.missing_bytes(sent))
        notes.append(f"{name}: left out {sum(b in lacking for b in sent):,} bytes it never saw: "
                     f"{vocab.describe_missing(sent)}")
    if len(data) < 2:
        raise LimitError("Give at least two characters the models know: the first byte is context only.")
    scores = []
    for index, served in enumerate(models):
        bits = surprise_bits(served, data)  # (N-1,)
        scores.append({"model": index, "name": served.name, "bpc": round(float(bits.mean()), 4), "count": len(bits),
                       "surprise": [None, *(round(float(b), 3) for b in bits)]})
    ranked = sorted(scores, key=lambda s: s["bpc"])
    best = ranked[0]
    verdict = {"model": best["model"], "name": best["name"], "bpc": best["bpc"], "count": best["count"],
               "others": [{"name": s["name"], "bpc": s["bpc"], "margin": round(s["bpc"] - best["bpc"], 4),
                           "bytes_more": round(len(data) * (s["bpc"] - best["bpc"]) / 8)} for s in ranked[1:]]}
    return {"chars": display(data), "scores": scores, "verdict": verdict, "notes": notes}

"""Who wrote this: a passage scored by every model, as ``charlm classify`` does, with per-byte surprise.

The bytes some model never saw are left out for all (classify's ``--unknown skip``,
datamodules.io.vocab.skip_unknown), so every model scores the same bytes; the verdict is the model
with the fewest bits per character (bpc), with its margin in bpc and in bytes more to encode, as
classify prints it. The page gets the passage as pasted, with the bytes left out named by position,
so that it can mark them in place rather than show a text nobody wrote.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from charlm.infer.neurons import display
from charlm.infer.score import ranking
from charlm.serve.limits import MAX_COMPARE, LimitError, check_size
from charlm.serve.looking import known_bytes, rounded, surprise_bits
from charlm.serve.models import Served
from datamodules.io.vocab import skip_unknown


def compare(models: list[Served], text: str) -> dict[str, Any]:
    """Per model: bpc (charlm score's: the mean of its per-byte surprise, one pass) and per-byte surprise, one
    value per byte of the passage as sent (None for the first byte read and for the bytes left out, whose
    positions are ``skipped``); the verdict with its margin."""
    sent = text.encode()
    check_size(sent, MAX_COMPARE, "The text")
    data, missing = skip_unknown(sent, {served.name: served.loaded.vocab for served in models})
    notes = [f"{name}: {known_bytes(sent, vocab)[1]}" for name, vocab in missing.items()]
    if len(data) < 2:
        raise LimitError(f"text needs two bytes every model knows at least (the first byte is context only); it "
                         f"has {len(data)}.")
    sent_bytes = np.frombuffer(sent, np.uint8)
    kept = np.ones(len(sent), bool)
    for vocab in missing.values():
        kept &= vocab.byte_to_id[sent_bytes] >= 0
    where = np.flatnonzero(kept)  # (len(data),): where each byte scored sits in the passage
    scores, bpcs = [], []
    for index, served in enumerate(models):
        bits = surprise_bits(served, data)  # (N-1,)
        bpcs.append((index, float(bits.mean())))
        surprise: list[float | None] = [None] * len(sent)
        for position, value in zip(where[1:].tolist(), rounded(bits), strict=True):
            surprise[position] = value
        scores.append({"model": index, "name": served.name, "bpc": round(bpcs[-1][1], 4), "count": len(bits),
                       "surprise": surprise})
    (best, _, _, _), *others = ranking(bpcs, len(data))  # classify's verdict
    verdict = {key: scores[best][key] for key in ("model", "name", "bpc", "count")} | {
        "others": [{"name": scores[i]["name"], "bpc": scores[i]["bpc"], "margin": round(margin, 4),
                    "bytes_more": round(more)} for i, _, margin, more in others]}
    return {"chars": display(sent), "skipped": np.flatnonzero(~kept).tolist(), "scores": scores,
            "verdict": verdict, "notes": notes}

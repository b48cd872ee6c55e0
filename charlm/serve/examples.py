"""Example prompts for the page, chosen per model from what it knows.

A checkpoint does not say what it was trained on, but its vocabulary and its weights do: a prompt is a
candidate only if the model knows every byte of it (a Shakespeare model has no ``{`` or ``#``, so it is
never offered C), and the candidates are ranked by the model's own surprise over them (its bpc, read
after a newline, as a line of its corpus starts): the prompts most like its training text come first.
An untrained model ranks them by chance, but still offers only bytes it knows; a vocabulary that holds
none of the candidates gets a few of its letters.
"""

from __future__ import annotations

from charlm.infer.score import bits_per_byte
from charlm.serve.models import Served

# A few per kind of corpus charlm trains on, in no order (the model's surprise orders them); each holds a byte
# its kind's vocabulary has and others lack, so that a vocabulary alone already rules out the foreign ones.
CANDIDATES = (
    "ROMEO:\n", "JULIET:\nO ", "First Citizen:\n", "KING RICHARD III:\n", "MENENIUS:\nWhat ",  # plays
    "static int __init ", "#include <linux/", "/*\n * ", "\tif (err)\n\t\treturn ",  # C (Linux)
    "def __init__(self", "if __name__ == \"__main__\":\n", "class Model(nn.Module):\n",  # Python
    "[[Category:", "<page>\n  <title>", "{{Infobox ", "== History ==\n",  # Wikipedia's markup (enwik8)
    "The ", "Once upon a time, ", "It was ", "In the beginning ",  # prose
)
SHOWN = 4  # examples a model offers


def examples(served: Served, shown: int = SHOWN) -> list[str]:
    """Up to ``shown`` prompts made only of bytes ``served`` knows, the least surprising to it first."""
    vocab = served.loaded.vocab
    known = [c for c in CANDIDATES if not vocab.missing_bytes(c.encode())]
    if not known:  # an unusual vocabulary: a few of its ASCII letters, if it has any
        letters = "".join(chr(s) for s in vocab.symbols if chr(s).isascii() and chr(s).isalpha())
        return [letters[:8]] if letters else []
    lead = b"" if vocab.missing_bytes(b"\n") else b"\n"  # read as the start of a line (then every byte is scored)
    cost = {c: bits_per_byte(served.loaded, lead + c.encode())[0] for c in known}
    return sorted(known, key=cost.__getitem__)[:shown]

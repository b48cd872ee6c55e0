"""Write: a sample streamed piece by piece as charlm.infer.generate produces it.

The same steps as ``charlm sample`` with one sample (charlm.infer.engine): the prompt as a
(1, P) batch, a ``torch.Generator`` seeded with the seed on the model's device, the model's own
``generate`` loop and ``Utf8Stream``; so a seed gives the same bytes here as on the command line.
Each stream owns its generator and hidden state (inside ``generate``): two tabs never share one.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from charlm.infer.engine import Settings, check_settings
from charlm.infer.generate import Utf8Stream, generate
from charlm.serve.body import Body
from charlm.serve.limits import MAX_LENGTH, LimitError
from charlm.serve.models import Served


@dataclass
class WriteRequest:
    """What the page asks for (the flags of ``charlm sample``)."""

    ids: np.ndarray  # (P,) the prompt's token ids, checked against the model's vocabulary
    length: int
    temperature: float
    top_k: int | None
    top_p: float | None
    seed: int


def parse(body: Body, served: Served) -> WriteRequest:
    """Check a Write request against the sampling rules (charlm.infer.engine.check_settings, worded for the page:
    ``seed``, not ``--seed``), the server's limits and ``served``'s vocabulary, before a generation slot is
    taken (one message each, naming the field); null in a number field means its default, as the page sends
    an empty box."""
    prompt = body.text(default="\n")  # at most MAX_PROMPT bytes: read_body was told so
    if not prompt:
        raise LimitError("prompt is empty; give at least one character (a newline will do).")
    length = body.integer("length", 500)
    if not 0 <= length <= MAX_LENGTH:
        raise LimitError(f"length must lie in [0, {MAX_LENGTH:,}] bytes (this server's limit), got {length:,}")
    temperature = body.number("temperature", 0.8)
    top_k, top_p = body.integer("top_k", None), body.number("top_p", None)
    seed = body.integer("seed", None)
    if seed is None:
        seed = random.randrange(2**31)  # told to the page, so the sample can be had again
    try:
        check_settings(Settings(length, temperature, top_k, top_p, 1, seed))
    except ValueError as err:
        raise LimitError(str(err).replace("--", "")) from None
    try:
        ids = served.loaded.vocab.encode(prompt.encode())
    except ValueError as err:
        raise LimitError(f"prompt: {err} Leave them out, or choose a model that knows them.") from None
    return WriteRequest(ids, length, temperature, top_k, top_p, seed)


def pieces(served: Served, request: WriteRequest) -> Iterator[str]:
    """The sample's text as it is generated, one decoded piece per step ('' inside a multi-byte character).

    Lazy: a step runs only when the next piece is asked for, so a consumer that stops asking
    (a closed tab) stops the work; ``close()`` ends it at once.
    """
    loaded = served.loaded
    device = next(loaded.model.parameters()).device
    prompt_ids = torch.as_tensor(request.ids, dtype=torch.long, device=device)[None]  # (1, P), as sample's batch
    generator = torch.Generator(device=device)
    generator.manual_seed(request.seed)
    stream = Utf8Stream()
    byte_of = [bytes((symbol,)) for symbol in loaded.vocab.symbols]  # token id -> its byte, built once
    steps = generate(loaded.model, prompt_ids, request.length, request.temperature, request.top_k, request.top_p,
                     generator)
    try:
        for tokens in steps:  # (1,) on the CPU
            yield stream.feed(byte_of[int(tokens[0])])
        yield stream.finish()
    finally:
        steps.close()


def take(steps: Iterator[str], budget_s: float = 0.05, most: int = 256) -> tuple[str, bool, int]:
    """Run steps until ``budget_s`` has passed or ``most`` steps are done: (text, whether the sample is
    over, steps run).

    Called in a worker thread; one call is one message to the page, so the page sees text every
    ``budget_s`` at least, and the first byte as soon as it exists.
    """
    start, parts = time.perf_counter(), []
    for _ in range(most):
        try:
            parts.append(next(steps))
        except StopIteration:
            return "".join(parts), True, len(parts)
        if parts[-1] and time.perf_counter() - start > budget_s:
            break
    return "".join(parts), False, len(parts)

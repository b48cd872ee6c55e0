"""Write: a sample streamed piece by piece as charlm.generate produces it.

The same steps as ``charlm sample`` with one sample (charlm.commands.sample): the prompt as a
(1, P) batch, a ``torch.Generator`` seeded with the seed on the model's device, the model's own
``generate`` loop and ``Utf8Stream``; so a seed gives the same bytes here as on the command line.
Each stream owns its generator and hidden state (inside ``generate``): two tabs never share one.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from charlm.commands.sample import SEEDS
from charlm.generate import Utf8Stream, check_sampling_args, generate
from charlm.serve.limits import MAX_LENGTH, MAX_PROMPT, LimitError, check_size
from charlm.serve.models import Served


@dataclass
class WriteRequest:
    """What the page asks for (the flags of ``charlm sample``)."""

    prompt: bytes
    length: int
    temperature: float
    top_k: int | None
    top_p: float | None
    seed: int


def _number(body: dict[str, Any], key: str, kind: type, default: Any) -> Any:
    value = body.get(key, default)
    if value is None or value == "":
        return default
    # no NaN or infinity gets here: app.read_json refuses them in every body
    if isinstance(value, bool) or not isinstance(value, int | float) or (kind is int and int(value) != value):
        raise LimitError(f"{key} must be {'an integer' if kind is int else 'a number'}, got {value!r}")
    return kind(value)


def parse(body: dict[str, Any]) -> WriteRequest:
    """Check a Write request against the sampling rules and the server's limits (one message each)."""
    prompt = body.get("prompt", "\n")
    if not isinstance(prompt, str):
        raise LimitError(f"prompt must be text, got {type(prompt).__name__}")
    data = prompt.encode()
    if not data:
        raise LimitError("The prompt is empty; give at least one character (a newline will do).")
    check_size(data, MAX_PROMPT, "The prompt")
    length = _number(body, "length", int, 500)
    if not 0 <= length <= MAX_LENGTH:
        raise LimitError(f"length must lie in [0, {MAX_LENGTH:,}] bytes (this server's limit), got {length:,}")
    temperature = _number(body, "temperature", float, 0.8)
    top_k, top_p = _number(body, "top_k", int, None), _number(body, "top_p", float, None)
    try:
        check_sampling_args(temperature, top_k, top_p)
    except ValueError as err:
        raise LimitError(str(err).replace("--", "")) from None
    seed = _number(body, "seed", int, None)
    if seed is None:
        seed = random.randrange(2**31)  # told to the page, so the sample can be had again
    if not 0 <= seed < SEEDS:
        raise LimitError(f"seed must lie in [0, 2^64), got {seed}")
    return WriteRequest(data, length, temperature, top_k, top_p, seed)


def pieces(served: Served, request: WriteRequest) -> Iterator[str]:
    """The sample's text as it is generated, one decoded piece per step ('' inside a multi-byte character).

    Lazy: a step runs only when the next piece is asked for, so a consumer that stops asking
    (a closed tab) stops the work; ``close()`` ends it at once.
    """
    loaded = served.loaded
    try:
        ids = loaded.vocab.encode(request.prompt)
    except ValueError as err:
        raise LimitError(f"prompt: {err}") from None
    device = next(loaded.model.parameters()).device
    prompt_ids = torch.as_tensor(ids, dtype=torch.long, device=device)[None]  # (1, P), as sample's batch of one
    generator = torch.Generator(device=device)
    generator.manual_seed(request.seed)
    stream, symbols = Utf8Stream(), loaded.vocab.symbols
    steps = generate(loaded.model, prompt_ids, request.length, request.temperature, request.top_k, request.top_p,
                     generator)
    try:
        for tokens in steps:  # (1,) on the CPU
            yield stream.feed(bytes((symbols[int(tokens[0])],)))
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

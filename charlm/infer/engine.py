"""The sampling engine that ``charlm sample``, ``--interactive`` and the Python API share (the page checks its
settings with it too).

``Settings`` shape a sample; ``encode_prompt`` turns a prompt into token ids under the ``--unknown``
policy; ``write_samples`` streams N samples of a prompt to a text stream (``StopAt`` ends a sample at a
stop string without taking back anything written); ``write_beams`` writes the best continuations of a beam
search; ``seeded`` seeds a generator. Memory is checked before a batch is started (``check_memory``).
"""

from __future__ import annotations

import re
import sys
import time
from dataclasses import dataclass
from typing import Literal, TextIO

import numpy as np
import torch

from charlm.checkpoint import LoadedModel
from charlm.devices import check_fits
from charlm.infer.beam import beam_search, check_beam, check_beam_memory
from charlm.infer.generate import PROMPT_POSITIONS_PER_CALL, Utf8Stream, generate
from charlm.infer.logits import check_sampling_args
from charlm.model import CharRNN
from datamodules.io.vocab import Vocabulary, skip_unknown

SEEDS = 2**64  # torch.Generator.manual_seed takes [0, 2^64)
DEFAULT_TEMPERATURE = 0.8


class StopAt:
    """Collects one stream's text, ends it at the first stop string, and hands out only text that
    can no longer turn out to be the start of a stop string (so nothing printed must be taken back)."""

    def __init__(self, stops: list[str]) -> None:
        self.stops = [s for s in stops if s]
        self.hold = max((len(s) for s in self.stops), default=1) - 1
        self.text, self.emitted, self.done = "", 0, False

    def add(self, piece: str) -> str:
        if self.done:
            return ""
        start = len(self.text)
        self.text += piece
        hits = [i for s in self.stops if (i := self.text.find(s, max(0, start - len(s) + 1))) >= 0]
        if hits:
            self.text, self.done = self.text[: min(hits)], True  # the stop string itself is not output
            return self.flush()
        safe = max(self.emitted, len(self.text) - self.hold)
        out, self.emitted = self.text[self.emitted : safe], safe
        return out

    def flush(self) -> str:
        out, self.emitted = self.text[self.emitted :], len(self.text)
        return out


def check_memory(model: CharRNN, num_samples: int, prompt_len: int, length: int, device: torch.device) -> None:
    """Refuse a run whose batch cannot fit: the prompt's ids, and its pass, a slice of at most
    PROMPT_POSITIONS_PER_CALL rows x bytes at a time (charlm.infer.generate.read_prompt), holding embeddings,
    recurrent states and logits in float32 on ``device``; several samples keep their texts (N x length) in RAM."""
    h, e, v = model.hidden_size, model.embed.embedding_dim, model.head.out_features
    positions = min(num_samples * prompt_len, PROMPT_POSITIONS_PER_CALL)
    on_device = prompt_len + 4 * positions * (e + 5 * h + v)  # 5H: the gates and the output of a layer
    in_ram = num_samples * (length + 2048) if num_samples > 1 else 0  # the texts, and each stream's objects
    check_fits(device, on_device, in_ram, f"--num_samples {num_samples} with a {prompt_len:,}-byte prompt and "
               f"--length {length:,}", "Ask for fewer samples at a time (several runs with different --seed), or a "
               "shorter prompt.")


def unescape(text: str) -> str:
    """``\\n``, ``\\t`` and ``\\\\`` typed on a command line -> newline, tab, backslash."""
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m[1], m[1]), text)


@dataclass(frozen=True)
class Settings:
    """What shapes each sample; ``charlm sample --interactive`` changes them between prompts."""

    length: int = 1000
    temperature: float = DEFAULT_TEMPERATURE
    top_k: int | None = None
    top_p: float | None = None
    num_samples: int = 1
    seed: int | None = None
    beam: int | None = None  # None: sample; N: beam search of width N


def check_settings(s: Settings) -> None:
    """Refuse settings that cannot run, one line naming the flag (``--temperature`` ...); the memory a
    beam needs is checked once the model is loaded (check_beam_memory)."""
    check_sampling_args(s.temperature, s.top_k, s.top_p)
    if s.length < 0:
        raise ValueError(f"--length must be >= 0, got {s.length}")
    if s.num_samples < 1:
        raise ValueError(f"--num_samples must be a positive integer, got {s.num_samples}")
    if s.seed is not None and not 0 <= s.seed < SEEDS:
        raise ValueError(f"--seed must lie in [0, 2^64), got {s.seed}")
    if s.beam is not None:
        check_beam(s.beam, s.num_samples)


def encode_prompt(vocab: Vocabulary, data: bytes, unknown: Literal["error", "skip"],
                  name: str) -> tuple[bytes, np.ndarray]:
    """The prompt the model reads and its token ids (P,): bytes outside the vocabulary are refused
    naming them (``error``), or left out with a note on stderr (``skip``). ``name`` is what the user
    gave the prompt with. The ``--unknown`` policy of datamodules.io.vocab.drop_unknown, worded for a
    prompt (which may be one byte long). An empty prompt is refused: the model needs a byte to start from."""
    if not data:
        raise ValueError("The prompt is empty; give at least one character (the default is a newline).")
    kept, missing = skip_unknown(data, {name: vocab})
    if missing and unknown == "error":
        raise ValueError(f"{name}: the prompt contains {vocab.describe_missing(data)}, which the model's vocabulary "
                         f"lacks (it never saw them in training); leave them out, or use --unknown skip. Known "
                         f"symbols: {vocab.printable()}")
    if missing:
        print(f"note: {name}: skipped {len(data) - len(kept)} bytes that the model never saw "
              f"({vocab.describe_missing(data)})", file=sys.stderr)
        if not kept:
            raise ValueError(f"{name}: nothing is left of the prompt after skipping the bytes the model never saw.")
    return kept, vocab.encode(kept)


def decode(data: bytes) -> str:
    """Bytes as text to print (invalid UTF-8 becomes U+FFFD)."""
    return data.decode("utf-8", errors="replace")


def write_samples(loaded: LoadedModel, prompt: bytes, ids: np.ndarray, s: Settings, generator: torch.Generator,
                  stop_strings: list[str], echo_prompt: bool, out: TextIO) -> list[str]:
    """Sample ``s.num_samples`` continuations of ``prompt`` (token ids ``ids`` (P,)) and write them to
    ``out``: one sample streams as it is written; several are printed when done, each under a
    ``===== sample i/N =====`` line. Returns the continuations."""
    num_samples, device = s.num_samples, next(loaded.model.parameters()).device
    check_memory(loaded.model, num_samples, len(ids), s.length, device)
    prompt_ids = torch.as_tensor(ids, device=device).expand(num_samples, -1)  # (N, P) uint8: read_prompt widens
    streams = [Utf8Stream() for _ in range(num_samples)]
    stops = [StopAt(stop_strings) for _ in range(num_samples)]
    live = num_samples == 1  # one sample streams as it is written; several print when done
    if live and echo_prompt:
        out.write(decode(prompt))
        out.flush()
    byte_of = [bytes((symbol,)) for symbol in loaded.vocab.symbols]  # token id -> its byte, built once
    for tokens in generate(loaded.model, prompt_ids, s.length, s.temperature, s.top_k, s.top_p, generator):
        for i, token in enumerate(tokens.tolist()):
            piece = stops[i].add(streams[i].feed(byte_of[token]))
            if live and piece:
                out.write(piece)
                out.flush()
        if stop_strings and all(stop.done for stop in stops):  # without --stop no sample ends early
            break
    texts = []
    for i in range(num_samples):
        tail = stops[i].add(streams[i].finish()) + stops[i].flush()
        if live:
            out.write(tail + "\n")
        texts.append(stops[i].text)
    if not live:
        head = decode(prompt) if echo_prompt else ""
        for i, text in enumerate(texts):
            out.write(f"===== sample {i + 1}/{num_samples} =====\n{head}{text}\n")
    out.flush()
    return texts


def write_beams(loaded: LoadedModel, prompt: bytes, ids: np.ndarray, s: Settings, echo_prompt: bool,
                out: TextIO) -> list[str]:
    """Beam search of width ``s.beam``; the best ``s.num_samples`` continuations, best first, each
    under a ``===== beam i/k: B bpc =====`` line. Returns the continuations."""
    device = next(loaded.model.parameters()).device
    check_beam_memory(s.beam, s.length, loaded.model, device, len(ids), s.num_samples)
    prompt_ids = torch.as_tensor(ids, device=device)  # (P,) uint8: read_prompt widens a slice at a time
    beams = beam_search(loaded.model, prompt_ids, s.length, s.beam, keep=s.num_samples)
    head = decode(prompt) if echo_prompt else ""
    texts = [decode(loaded.vocab.decode(b.ids)) for b in beams]
    for i, (b, text) in enumerate(zip(beams, texts, strict=True)):
        out.write(f"===== beam {i + 1}/{len(beams)}: {b.bpc:.4f} bpc =====\n{head}{text}\n")
    out.flush()
    return texts


def seeded(generator: torch.Generator, seed: int | None) -> torch.Generator:
    """``generator`` seeded with ``seed``, or from the clock if there is none."""
    generator.manual_seed(seed if seed is not None else int(time.time_ns() % 2**63))
    return generator

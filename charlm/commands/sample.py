"""``python -m charlm sample``: generate text from a checkpoint, streamed to stdout as it comes."""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path
from typing import TextIO

import torch

from charlm.checkpoint import load_checkpoint
from charlm.devices import KNOWN as KNOWN_DEVICES
from charlm.devices import resolve_device
from charlm.generate import Utf8Stream, check_sampling_args, generate
from charlm.model import CharRNN
from charlm.model_size import available_memory, gib

SEEDS = 2**64  # torch.Generator.manual_seed takes [0, 2^64)


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
    """Refuse a run whose batch cannot fit: the prompt pass holds (N, P) embeddings, recurrent states
    and logits in float32 on ``device``; several samples keep their texts (N x length) in RAM."""
    h, e, v = model.hidden_size, model.embed.embedding_dim, model.head.out_features
    on_device = 4 * num_samples * prompt_len * (e + 5 * h + v)  # 5H: the gates and the output of a layer
    in_ram = num_samples * (length + 2048) if num_samples > 1 else 0  # the texts, and each stream's objects
    if device.type == "cuda":
        checks = [(on_device, torch.cuda.mem_get_info(device)[0], "free GPU memory"),
                  (in_ram, available_memory(), "memory")]
    else:
        checks = [(on_device + in_ram, available_memory(), "memory")]
    for need, have, name in checks:
        if have is not None and need > have:
            raise ValueError(f"--num_samples {num_samples} with a {prompt_len:,}-byte prompt and --length {length:,} "
                             f"needs about {gib(need)}, more than the {gib(have)} of {name} available here. Ask for "
                             f"fewer samples at a time (several runs with different --seed), or a shorter prompt.")


def unescape(text: str) -> str:
    """``\\n``, ``\\t`` and ``\\\\`` typed on a command line -> newline, tab, backslash."""
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m[1], m[1]), text)


def sample(
    ckpt_path: str,
    prompt: str = "\n",
    prompt_file: str | None = None,
    length: int = 1000,
    temperature: float = 0.8,
    top_k: int | None = None,
    top_p: float | None = None,
    num_samples: int = 1,
    seed: int | None = None,
    stop: str | list[str] | None = None,
    echo_prompt: bool = True,
    device: str = "auto",
) -> list[str]:
    """Generate text from a trained charlm checkpoint.

    Args:
        ckpt_path: a checkpoint written by ``charlm fit`` (trained on any device).
        prompt: text the model reads before it starts writing (default: a newline).
        prompt_file: read the prompt from this file instead of ``--prompt``.
        length: bytes to generate per sample.
        temperature: 0 = always the most likely byte; below 1 more conservative, above 1 wilder.
        top_k: sample only among the k most likely bytes.
        top_p: sample only among the most likely bytes whose probabilities add up to p, in (0, 1].
        num_samples: independent samples, generated together as one batch.
        seed: random seed; the same seed gives the same text (on the same device).
        stop: end a sample when it writes this string (or any string of a list; not printed).
            ``\\n`` and ``\\t`` mean newline and tab: --stop "\\n\\n" ends at a blank line.
        echo_prompt: print the prompt before the generated text.
        device: {devices} (auto: a GPU if there is one).
    """
    check_sampling_args(temperature, top_k, top_p)
    if length < 0:
        raise ValueError(f"--length must be >= 0, got {length}")
    if num_samples < 1:
        raise ValueError(f"--num_samples must be a positive integer, got {num_samples}")
    if seed is not None and not 0 <= seed < SEEDS:
        raise ValueError(f"--seed must lie in [0, 2^64), got {seed}")
    device = resolve_device(device)  # before loading: a device this machine lacks is named as such
    loaded = load_checkpoint(ckpt_path, device)
    if prompt_file is not None:
        file = Path(prompt_file).expanduser()
        if not file.is_file():
            raise FileNotFoundError(f"--prompt_file: {file} does not exist (or is not a file).")
        prompt_bytes = file.read_bytes()
    else:
        prompt_bytes = prompt.encode()
    if not prompt_bytes:
        raise ValueError("The prompt is empty; give at least one character (the default is a newline).")
    try:
        ids = loaded.vocab.encode(prompt_bytes)
    except ValueError as err:
        raise ValueError(f"{'--prompt_file' if prompt_file is not None else '--prompt'}: {err}") from None
    check_memory(loaded.model, num_samples, len(ids), length, device)
    prompt_ids = torch.as_tensor(ids, dtype=torch.long, device=device).expand(num_samples, -1)  # (N, P)
    generator = torch.Generator(device=device)
    generator.manual_seed(seed if seed is not None else int(time.time_ns() % 2**63))

    streams = [Utf8Stream() for _ in range(num_samples)]
    stop_strings = [unescape(s) for s in ([stop] if isinstance(stop, str) else stop or [])]
    stops = [StopAt(stop_strings) for _ in range(num_samples)]
    out: TextIO = sys.stdout
    live = num_samples == 1  # one sample streams as it is written; several print when done
    if live and echo_prompt:
        out.write(prompt_bytes.decode("utf-8", errors="replace"))
        out.flush()
    symbols = loaded.vocab.symbols
    for tokens in generate(loaded.model, prompt_ids, length, temperature, top_k, top_p, generator):
        for i, token in enumerate(tokens.tolist()):
            piece = stops[i].add(streams[i].feed(bytes((symbols[token],))))
            if live and piece:
                out.write(piece)
                out.flush()
        if all(s.done for s in stops):
            break
    texts = []
    for i in range(num_samples):
        tail = stops[i].add(streams[i].finish()) + stops[i].flush()
        if live:
            out.write(tail + "\n")
        texts.append(stops[i].text)
    if not live:
        head = prompt_bytes.decode("utf-8", errors="replace") if echo_prompt else ""
        for i, text in enumerate(texts):
            out.write(f"===== sample {i + 1}/{num_samples} =====\n{head}{text}\n")
    out.flush()
    return texts


sample.__doc__ = sample.__doc__.replace("{devices}", KNOWN_DEVICES)  # --help lists the devices charlm knows

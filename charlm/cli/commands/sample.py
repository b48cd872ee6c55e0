"""``python -m charlm sample``: generate text from a checkpoint, streamed to stdout as it comes."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal

import torch

from charlm.checkpoint import load_checkpoint
from charlm.devices import KNOWN as KNOWN_DEVICES
from charlm.devices import resolve_device
from charlm.infer.beam import check_beam_memory
from charlm.infer.engine import (
    DEFAULT_TEMPERATURE,
    Settings,
    check_settings,
    encode_prompt,
    seeded,
    unescape,
    write_beams,
    write_samples,
)


def sample(
    ckpt_path: str,
    prompt: str = "\n",
    prompt_file: str | None = None,
    length: int = 1000,
    temperature: float | None = None,
    top_k: int | None = None,
    top_p: float | None = None,
    num_samples: int = 1,
    seed: int | None = None,
    stop: list[str] | None = None,
    echo_prompt: bool = True,
    device: str = "auto",
    beam: int | None = None,
    interactive: bool = False,
    unknown: Literal["error", "skip"] = "error",
) -> list[str]:
    """Generate text from a trained charlm checkpoint.

    Args:
        ckpt_path: a checkpoint written by ``charlm fit`` (trained on any device).
        prompt: text the model reads before it starts writing ("\\n", a new line, by default).
        prompt_file: read the prompt from this file instead of ``--prompt``.
        length: bytes to generate per sample.
        temperature: 0 = always the most likely byte; below 1 more conservative, above 1 wilder
            (default when sampling: {temperature}; not with --beam).
        top_k: sample only among the k most likely bytes.
        top_p: sample only among the most likely bytes whose probabilities add up to p, in (0, 1].
        num_samples: independent samples, generated together as one batch (with --beam: how many of
            the best continuations to print, at most --beam).
        seed: random seed; the same seed gives the same text (on the same device).
        stop: end a sample when it writes one of these strings (not printed), one after another
            (--stop "THE END" "\\n\\n"). ``\\n`` and ``\\t`` mean newline and tab: "\\n\\n" is a blank line.
        echo_prompt: print the prompt before the generated text.
        device: {devices} (auto: a GPU if there is one).
        beam: beam search of this width instead of sampling: the most likely continuations of --length
            bytes by the model's own total log-probability (all of one length, so no normalisation),
            printed with their bpc; 1 = greedy. Deterministic; takes no --temperature,
            --top_k, --top_p or --stop. At most 10,000.
        interactive: read prompts from standard input, one per line, keeping the model loaded; a line
            ending in a backslash goes on with the next; ``:help`` lists the commands that change the
            settings between prompts. Each sample ends with a line ``===== end of sample N =====``.
            Ctrl-C stops a sample; Ctrl-C twice at the prompt, or end of input, ends the session.
        unknown: prompt bytes the model never saw: refuse the prompt (error) or leave them out (skip).
    """
    if beam is not None:
        given = [flag for flag, on in [("--temperature", temperature is not None),
                                       ("--top_k", top_k is not None), ("--top_p", top_p is not None),
                                       ("--stop", bool(stop))] if on]
        if given:
            raise ValueError(f"--beam ranks continuations by the model's own probabilities and runs them to --length; "
                             f"{', '.join(given)} {'does' if len(given) == 1 else 'do'} not apply to it: leave "
                             f"{'it' if len(given) == 1 else 'them'} "
                             f"out, or sample without --beam.")
    settings = Settings(length, DEFAULT_TEMPERATURE if temperature is None else temperature, top_k, top_p,
                        num_samples, seed, beam)
    if interactive:
        extra = [flag for flag, on in [("--prompt", prompt != "\n"), ("--prompt_file", prompt_file is not None),
                                       ("--num_samples", num_samples > 1 and beam is None)] if on]
        if extra:
            raise ValueError(f"--interactive reads its prompts from standard input and streams one sample each; "
                             f"leave out {', '.join(extra)} (with --beam, --num_samples prints that many beams).")
    device = resolve_device(device)  # before loading: a device this machine lacks is named as such
    check_settings(settings)
    loaded = load_checkpoint(ckpt_path, device)
    if interactive and beam is not None:  # before the first prompt; write_beams checks each with its length
        check_beam_memory(beam, length, loaded.model, device, keep=num_samples)
    stop_strings = [unescape(s) for s in ([stop] if isinstance(stop, str) else stop or [])]
    generator = torch.Generator(device=device)
    if interactive:
        from charlm.cli.commands.interactive import Session

        Session(loaded, settings, seeded(generator, seed), stop_strings, echo_prompt, unknown).run()
        return []  # the samples went to stdout, none kept
    if prompt_file is not None:
        file = Path(prompt_file).expanduser()
        if not file.is_file():
            raise FileNotFoundError(f"--prompt_file: {file} does not exist (or is not a file).")
        prompt_bytes = file.read_bytes()
    else:
        prompt_bytes = prompt.encode()
    name = "--prompt_file" if prompt_file is not None else "--prompt"
    prompt_bytes, ids = encode_prompt(loaded.vocab, prompt_bytes, unknown, name)  # what the model reads and echoes
    if beam is not None:
        return write_beams(loaded, prompt_bytes, ids, settings, echo_prompt, sys.stdout)
    return write_samples(loaded, prompt_bytes, ids, settings, seeded(generator, seed), stop_strings, echo_prompt,
                         sys.stdout)


# --help lists the devices charlm knows, and the temperature a sample takes when none is given
sample.__doc__ = sample.__doc__.replace("{devices}", KNOWN_DEVICES).replace("{temperature}", str(DEFAULT_TEMPERATURE))

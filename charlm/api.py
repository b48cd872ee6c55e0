"""The Python front door: load a checkpoint and do what the commands do with it, or train a model.

    import charlm

    m = charlm.load("runs/shakespeare/version_0/checkpoints/best-step4899-bpc1.9795.ckpt")
    m.sample("ROMEO:", length=200, temperature=0.8, seed=1)   # the bytes `charlm sample --seed 1` writes
    m.sample("ROMEO:", length=200, num_samples=4)           # four, drawn together
    m.beam("ROMEO:", length=40, beam=8, num_samples=3)       # [(text, bpc), ...], best first
    m.score(open("passage.txt", "rb").read())                # bpc, as `charlm score`
    m.trace("To be, or not to be")                           # per-byte states, top-5 guesses, surprise
    m.export("model.onnx")                                   # as `charlm export`

    m = charlm.fit(trainer={"max_steps": 200}, model={"hidden_size": 128})  # `charlm fit`, then load its best

Each method is a thin user of the functions the commands use (charlm.infer), so it gives the same bytes
for the same seed and the same one-line errors, raised as exceptions (ValueError, FileNotFoundError).
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from charlm.checkpoint import LoadedModel, load_checkpoint
from charlm.devices import resolve_device
from charlm.infer.beam import beam_search, check_beam_memory
from charlm.infer.engine import DEFAULT_TEMPERATURE, Settings, check_settings, encode_prompt, seeded, write_samples
from charlm.infer.export import export_bytes
from charlm.infer.neurons import Trace, trace
from charlm.infer.score import bits_per_byte
from charlm.model import CharRNNConfig
from datamodules.io.atomic_files import write_file
from datamodules.io.vocab import Vocabulary, drop_unknown

Unknown = Literal["error", "skip"]


def _bytes(text: str | bytes) -> bytes:
    return text.encode("utf-8") if isinstance(text, str) else bytes(text)


@dataclass(frozen=True)
class Beam:
    """One continuation of a beam search: its text and its bpc under the model."""

    text: str
    bpc: float


class Model:
    """A trained charlm model, loaded once: sample, beam-search, score, trace and export it."""

    def __init__(self, loaded: LoadedModel, path: Path, device: torch.device) -> None:
        self._loaded, self.path, self.device = loaded, path, device

    @property
    def config(self) -> CharRNNConfig:
        """The network's shape (cell, layers, units, ...): what the checkpoint rebuilds it from."""
        return self._loaded.model.config

    @property
    def vocab(self) -> Vocabulary:
        """The bytes the model reads and writes (``vocab.symbols``); the corpus's, from the checkpoint."""
        return self._loaded.vocab

    @property
    def network(self) -> torch.nn.Module:
        """The ``CharRNN`` itself (in eval mode), for what the methods do not cover."""
        return self._loaded.model

    def __repr__(self) -> str:
        return f"charlm.Model({str(self.path)!r}: {self.config.describe()}, {len(self.vocab)} symbols)"

    def sample(self, prompt: str | bytes = "\n", length: int = 1000, temperature: float = DEFAULT_TEMPERATURE,
               top_k: int | None = None, top_p: float | None = None, num_samples: int = 1, seed: int | None = None,
               stop: list[str] | None = None, unknown: Unknown = "error") -> str | list[str]:
        """The text the model writes after ``prompt`` (without the prompt): one string, or a list of
        ``num_samples`` drawn together. The same seed gives the same text as ``charlm sample --seed``.

        Args:
            prompt: what the model reads before it writes.
            length: bytes to write (per sample).
            temperature: 0 = always the most likely byte; below 1 more conservative, above 1 wilder.
            top_k: draw only among the k most likely bytes.
            top_p: draw only among the most likely bytes whose probabilities add up to p.
            num_samples: samples drawn together, as one batch.
            seed: random seed (None: from the clock).
            stop: end a sample where it writes one of these strings (not included).
            unknown: prompt bytes the model never saw: refuse the prompt (error) or leave them out (skip).
        """
        settings = Settings(length, temperature, top_k, top_p, num_samples, seed)
        check_settings(settings)
        data, ids = self._prompt(prompt, unknown)
        generator = seeded(torch.Generator(device=self.device), seed)
        texts = write_samples(self._loaded, data, ids, settings, generator, list(stop or []), False, io.StringIO())
        return texts[0] if num_samples == 1 else texts

    def beam(self, prompt: str | bytes = "\n", length: int = 100, beam: int = 8, num_samples: int = 1,
             unknown: Unknown = "error") -> list[Beam]:
        """The ``num_samples`` most likely continuations of ``length`` bytes, best first, by beam search of
        width ``beam`` (as ``charlm sample --beam``), each with its bpc."""
        check_settings(Settings(length=length, num_samples=num_samples, beam=beam))
        _, ids = self._prompt(prompt, unknown)
        check_beam_memory(beam, length, self._loaded.model, self.device, len(ids), num_samples)
        found = beam_search(self._loaded.model, torch.as_tensor(ids, device=self.device), length, beam, num_samples)
        return [Beam(self.vocab.decode(b.ids).decode("utf-8", errors="replace"), b.bpc) for b in found]

    def score(self, text: str | bytes, unknown: Unknown = "error") -> float:
        """The bpc of ``text`` under the model, as ``charlm score`` prints it (the first byte is context)."""
        data = drop_unknown(_bytes(text), {str(self.path): self.vocab}, unknown)
        return bits_per_byte(self._loaded, data)[0]

    def trace(self, text: str | bytes, unknown: Unknown = "error") -> Trace:
        """What the model does at each byte of ``text`` (what the page's Look inside shows): every layer's
        hidden (and LSTM cell) state after the byte, its top-5 guesses for the next byte, and the surprise of
        each byte that came (``Trace.surprise``, bits; its mean is ``score``)."""
        data = drop_unknown(_bytes(text), {str(self.path): self.vocab}, unknown)
        if not data:
            raise ValueError("The text is empty: there is nothing to trace.")
        return trace(self._loaded.model, self.vocab, data)

    def export(self, path: str | os.PathLike, format: Literal["onnx", "torchscript"] = "onnx",
               overwrite: bool = False) -> Path:
        """Write the network as one step that samples without charlm (as ``charlm export``) and return where.

        An existing file is replaced only with ``overwrite``; never the checkpoint itself."""
        target = Path(path).expanduser()
        if target.exists() and os.path.samefile(target, self.path):
            raise ValueError(f"{target} is the checkpoint this model was loaded from; export elsewhere.")
        if target.is_file() and not overwrite:
            raise ValueError(f"{target} already exists. Pass overwrite=True to replace it, or choose another name.")
        data, _ = export_bytes(self._loaded, format, self.path)
        return write_file(target, data)

    def _prompt(self, prompt: str | bytes, unknown: Unknown) -> tuple[bytes, Any]:
        return encode_prompt(self.vocab, _bytes(prompt), unknown, "--prompt")


def load(ckpt_path: str | os.PathLike, device: str = "auto") -> Model:
    """Load a checkpoint written by ``charlm fit`` (any of its files: best, last, interrupted).

    Args:
        ckpt_path: the checkpoint.
        device: cpu, cuda, cuda:N, mps or auto (a GPU if there is one).
    """
    resolved = resolve_device(device)
    return Model(load_checkpoint(ckpt_path, resolved), Path(ckpt_path), resolved)


def fit_arguments(config: str | os.PathLike | None = None, **sections: dict[str, Any]) -> list[str]:
    """``charlm fit``'s command line for ``fit``: ``--config`` and one flag per setting of each section
    (``trainer={"max_steps": 200}`` -> ``--trainer.max_steps=200``; lists and mappings as JSON)."""
    args = ["fit", *(["--config", str(config)] if config is not None else [])]
    for section, settings in sections.items():
        if section not in ("trainer", "model", "data", "seed_everything", "ckpt_path"):
            raise ValueError(f"charlm.fit: no section {section!r}; use trainer, model, data, seed_everything "
                             f"or ckpt_path (as in a config file).")
        if not isinstance(settings, dict):
            args.append(f"--{section}={settings}")
            continue
        for key, value in settings.items():
            shown = json.dumps(value) if isinstance(value, (list, dict, bool)) or value is None else value
            args.append(f"--{section}.{key}={shown}")
    return args


def fit(config: str | os.PathLike | None = None, **sections: Any) -> Model:
    """Run ``charlm fit`` from Python and load the best checkpoint it wrote (``Model.path`` names it).

    The default run, then ``config`` (a YAML file, as ``--config``), then the settings given per section, as
    a config file nests them: ``charlm.fit(trainer={"max_steps": 200}, model={"cell": "gru"},
    data={"path": "input.txt"})``. A bad setting raises ValueError with the line the command prints.
    """
    from charlm.cli.commands.fit import main  # Lightning: imported only to train
    from charlm.cli.errors import errors_raised

    with errors_raised():
        cli = main(fit_arguments(config, **sections))
    callback = cli.trainer.checkpoint_callback
    best = getattr(callback, "best_model_path", "") or getattr(callback, "last_model_path", "")
    if not best:
        raise ValueError("charlm.fit: the fit wrote no checkpoint (no ModelCheckpoint, or no step trained).")
    return load(best, str(next(cli.model.parameters()).device.type))

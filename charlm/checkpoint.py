"""Loading a charlm checkpoint for inference, with errors that say what is wrong with the file."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from charlm.model import CharRNN, CharRNNConfig
from datamodules.io.atomic_files import atomic_replace
from datamodules.io.vocab import Vocabulary


@dataclass
class LoadedModel:
    """What a checkpoint holds for inference."""

    model: CharRNN  # in eval mode
    vocab: Vocabulary
    hparams: dict[str, Any]


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The contents of a checkpoint file, memory-mapped (only what is used is read), with ``weights_only=True``.

    ``fit --ckpt_path`` looks into its file several times before Lightning restores it (its checks, its batch
    settings, its step, its W&B run): the same file, unchanged, is read once (keyed by path, size and mtime)."""
    stat = os.stat(path)
    return _read(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=4)
def _read(path: str, size: int, mtime_ns: int) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=True, mmap=True)


def check_checkpoint_file(path: str | Path, arg: str = "--ckpt_path") -> dict[str, Any]:
    """Load a checkpoint file (onto the CPU) and check that charlm wrote it; returns its contents.

    Loads with ``weights_only=True``: a checkpoint cannot run code on this machine. Raises
    FileNotFoundError or ValueError with a one-line message naming ``arg`` and the file.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{arg}: {path} does not exist (or is not a file).")
    with open(path, "rb") as file:
        head = file.read(4)
    if head != b"PK\x03\x04":  # torch.save writes a zip archive
        raise ValueError(f"{arg}: {path} is not a checkpoint (torch.save writes a zip archive; this file starts with "
                         f"{head!r}). Pass a .ckpt file written by `charlm fit`.")
    try:
        ckpt = read_checkpoint(path)
    except Exception as err:  # torch.load raises many kinds for a damaged file  # noqa: BLE001
        why = str(err).split(". ")[0]  # torch's first sentence; the rest is advice about saving
        raise ValueError(f"{arg}: {path} is not a readable checkpoint (truncated or corrupted?): {type(err).__name__}: "
                         f"{why}. Use an earlier checkpoint of that run, or train again.") from None
    hparams = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    state = ckpt.get("state_dict") if isinstance(ckpt, dict) else None
    if not isinstance(hparams, dict) or "vocab" not in hparams or not isinstance(state, dict):
        what = None
        if isinstance(ckpt, dict) and ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
            what = "a bare state dict"
        elif isinstance(ckpt, dict) and "pytorch-lightning_version" in ckpt:
            what = "a Lightning checkpoint of another model"
        raise ValueError(
            f"{arg}: {path} is not a charlm checkpoint (it has no vocabulary and model weights"
            f"{'; it is ' + what if what else ''}). Pass a .ckpt file written by `charlm fit`."
        )
    floats = [w for w in state.values() if isinstance(w, torch.Tensor) and w.is_floating_point()]
    if not all(torch.isfinite(w).all() for w in floats):
        raise ValueError(
            f"{arg}: {path} holds weights that are not finite (NaN or infinity): the run that wrote it diverged. "
            f"Use an earlier checkpoint of that run, or train again with a lower --model.lr."
        )
    return ckpt


def check_resume_checkpoint(path: str | Path, arg: str = "--ckpt_path") -> dict[str, Any]:
    """``check_checkpoint_file``, and that the file can resume training (not weights only)."""
    ckpt = check_checkpoint_file(path, arg)
    if "optimizer_states" not in ckpt or "loops" not in ckpt:
        raise ValueError(
            f"{arg}: {Path(path).expanduser()} holds model weights only (ModelCheckpoint(save_weights_only=True)), "
            "so `fit` cannot resume from it; `validate`, `test` and `sample` can use it."
        )
    return ckpt


def check_ckpt_path(ckpt_path: str | Path | None, subcommand: str, root_dir: str | Path = ".") -> None:
    """Check ``fit/validate/test --ckpt_path`` before Lightning loads it (a traceback for a bad file).

    Lightning's names "last" and "best" are refused: they look in this run's own checkpoint folder,
    which for a new charlm run (a new ``version_N``) is empty, so ``test --ckpt_path last`` would
    quietly score an untrained model. "hpc", "registry..." and URLs are left to Lightning.
    """
    if not ckpt_path or "://" in str(ckpt_path):
        return
    name = str(ckpt_path)
    if name in ("last", "best") and not Path(name).exists():
        raise ValueError(
            f"--ckpt_path {name}: a new {subcommand} has no checkpoints of its own to pick from (each run gets a "
            f"new version_N folder); give the checkpoint file, e.g. --ckpt_path {_example_checkpoint(root_dir)}"
        )
    if (name == "hpc" or name.lower().startswith("registry")) and not Path(name).exists():
        return
    (check_resume_checkpoint if subcommand == "fit" else check_checkpoint_file)(ckpt_path)


def _example_checkpoint(root_dir: str | Path) -> Path:
    """The newest ``last.ckpt`` under ``root_dir``'s run folders, for a message (a placeholder if none)."""
    newest = sorted(Path(root_dir).glob("*/version_*/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)
    return newest[-1] if newest else Path(root_dir) / "<corpus>/version_N/checkpoints/last.ckpt"


def check_weights_to_evaluate(subcommand: str, ckpt_path: str | None, init_from: str | None,
                              root_dir: str | Path = ".") -> None:
    """``validate`` / ``test`` score a checkpoint's weights (``--ckpt_path``, or ``--model.init_from`` for a
    fine-tune's starting point on another corpus): without either the model is untrained, and its bpc
    (about log2 of the vocabulary size) says nothing, so that is refused in one line."""
    if subcommand in ("validate", "test") and not ckpt_path and not init_from:
        raise ValueError(
            f"`charlm {subcommand}` scores a trained model: give its checkpoint, e.g. --ckpt_path "
            f"{_example_checkpoint(root_dir)} (without one the model is untrained and its bpc means nothing; "
            f"--model.init_from FILE scores a checkpoint's weights on another corpus before fine-tuning)."
        )


# what a resumed fit must batch as before: the carried hidden state is (layers, batch_size, hidden) and the
# position in the epoch is a count of (batch_size x seq_len) batches
BATCHING = ("batch_size", "seq_len")


def check_resume_batching(ckpt_path: str | Path, data_args: Any) -> None:
    """Refuse ``fit --ckpt_path FILE`` with another ``--data.batch_size`` or ``--data.seq_len`` than FILE was
    trained with (``charlm.batching`` in the checkpoint; files written before it are not checked): its hidden
    state would restart and its place in the epoch would mean another stretch of the corpus."""
    if not Path(ckpt_path).is_file():
        return  # "hpc", a URL: Lightning's
    saved = (read_checkpoint(ckpt_path).get("charlm") or {}).get("batching") or {}
    given = {name: data_args.get(name) for name in BATCHING}
    differ = [name for name in BATCHING if name in saved and given[name] is not None and given[name] != saved[name]]
    if not differ:
        return
    ours = " ".join(f"--data.{name} {given[name]}" for name in differ)
    theirs = " ".join(f"--data.{name} {saved[name]}" for name in differ)
    raise ValueError(
        f"--ckpt_path {ckpt_path} was trained with {theirs}, and this fit asks for {ours}: resuming would restart "
        f"the hidden state it carries and read its place in the epoch as another stretch of the corpus. Resume "
        f"with {theirs}, or start a new run from its weights with --model.init_from {ckpt_path} (instead of "
        f"--ckpt_path: fresh optimizer, schedule and step count)."
    )


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu", arg: str = "--ckpt_path") -> LoadedModel:
    """Rebuild the network and vocabulary from a checkpoint (any device it was saved on).

    Loads with ``weights_only=True``: a checkpoint cannot run code on this machine.
    """
    ckpt = check_checkpoint_file(path, arg)
    hparams, state = ckpt["hyper_parameters"], ckpt["state_dict"]
    vocab = Vocabulary(tuple(hparams["vocab"]))
    model = CharRNN(checked_model_config(ckpt, path, arg))
    weights = {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:
        raise ValueError(
            f"{arg}: {Path(path).expanduser()} does not match the architecture it describes (a damaged file?): {err}. "
            "Use another checkpoint of that run.") from None
    return LoadedModel(model.to(device).eval(), vocab, hparams)


def save_model_checkpoint(path: str | Path, model: CharRNN, vocab: Vocabulary) -> Path:
    """Write ``model`` and ``vocab`` as a weights-only checkpoint in the layout ``charlm fit`` saves and
    :func:`load_checkpoint` reads (the vocabulary and the flat shape in ``hyper_parameters``, ``model_config``,
    the weights under ``model.``): for models built outside training (tests, benchmarks). Written whole or
    not at all (datamodules.io.atomic_files); returns ``path``."""
    path = Path(path)
    ckpt = {"hyper_parameters": {"vocab": list(vocab.symbols), **model.config.to_hparams()},
            "model_config": model.config.to_dict(),
            "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}
    atomic_replace(path, lambda file: torch.save(ckpt, file))
    return path


def checked_model_config(ckpt: dict[str, Any], path: str | Path, arg: str = "--ckpt_path") -> CharRNNConfig:
    """:func:`model_config` of a file :func:`check_checkpoint_file` passed (``ckpt``, from ``path``), checked
    against its vocabulary; no weights are read. Raises ValueError with a one-line message naming ``arg``."""
    try:
        config = model_config(ckpt)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{arg}: {Path(path).expanduser()} describes a model charlm cannot build: {err}. "
                         "Load it with the charlm version that wrote it, or use another checkpoint.") from None
    vocab_size = len(ckpt["hyper_parameters"]["vocab"])
    if config.vocab_size != vocab_size:
        raise ValueError(f"{arg}: {Path(path).expanduser()} describes a model of {config.vocab_size} symbols but "
                         f"holds a vocabulary of {vocab_size}: the file is damaged. Use another checkpoint of the run.")
    return config


def model_config(ckpt: dict[str, Any]) -> CharRNNConfig:
    """The network's shape as a checkpoint records it: ``model_config`` (CharLM writes it), or, in files
    written before CharRNNConfig existed, CharLM's flat hyperparameters (``cell``, ``hidden_size``, ...);
    tests/fixtures/lstm_1x16_v0.ckpt is such a file."""
    if "model_config" in ckpt:
        return CharRNNConfig(**ckpt["model_config"])
    hparams = ckpt["hyper_parameters"]
    return CharRNNConfig.from_hparams(hparams, vocab_size=len(hparams["vocab"]))

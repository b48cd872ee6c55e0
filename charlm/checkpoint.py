"""Loading a charlm checkpoint for inference, with errors that say what is wrong with the file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from charlm.model import CharRNN
from datamodules.vocab import Vocabulary

_ARCHITECTURE = ("cell", "num_layers", "hidden_size", "embedding_dim")


@dataclass
class LoadedModel:
    model: CharRNN  # in eval mode
    vocab: Vocabulary
    hparams: dict[str, Any]


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu", arg: str = "--ckpt_path") -> LoadedModel:
    """Rebuild the network and vocabulary from a checkpoint (any device it was saved on).

    Loads with ``weights_only=True``: a checkpoint cannot run code on this machine.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{arg}: {path} does not exist (or is not a file).")
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # torch.load raises many kinds for a damaged file  # noqa: BLE001
        raise ValueError(f"{arg}: {path} is not a readable checkpoint (truncated or corrupted?): {type(err).__name__}: {err}") from None
    hparams = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    state = ckpt.get("state_dict") if isinstance(ckpt, dict) else None
    if not isinstance(hparams, dict) or "vocab" not in hparams or not isinstance(state, dict):
        raise ValueError(f"{arg}: {path} is not a charlm checkpoint (it has no vocabulary and model weights).")
    vocab = Vocabulary(tuple(hparams["vocab"]))
    model = CharRNN(len(vocab), **{k: hparams[k] for k in _ARCHITECTURE if k in hparams})
    weights = {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:
        raise ValueError(f"{arg}: {path} does not match the architecture its hyperparameters describe: {err}") from None
    return LoadedModel(model.to(device).eval(), vocab, hparams)

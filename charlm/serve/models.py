"""The checkpoints ``charlm serve`` was started with. A request names one by its index in that list,
never by a path: nothing a browser sends is ever opened as a file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from charlm.checkpoint import LoadedModel, load_checkpoint
from charlm.serve.limits import LimitError, shown


@dataclass
class Served:
    """One checkpoint as the page knows it."""

    name: str  # the file's name, told apart from others of the same name by its folder
    loaded: LoadedModel

    def describe(self) -> dict[str, Any]:
        model = self.loaded.model
        return {"name": self.name, "cell": model.cell, "layers": model.num_layers, "hidden_size": model.hidden_size,
                "states": ["hidden", "cell"] if model.cell == "lstm" else ["hidden"],
                "vocab": self.loaded.vocab.printable(), "symbols": len(self.loaded.vocab)}


def names(paths: list[str]) -> list[str]:
    """Short names for the checkpoints: the file name, with as many folders as tell two apart."""
    parts = [Path(p).expanduser().absolute().parts for p in paths]
    out = []
    for i, p in enumerate(parts):
        depth = 1
        while depth < len(p) and any(q != p and q[-depth:] == p[-depth:] for j, q in enumerate(parts) if j != i):
            depth += 1
        out.append("/".join(p[-depth:]))
    return out


def load_all(paths: list[str], device: torch.device) -> list[Served]:
    """Load every checkpoint (a bad one is a one-line error naming it, before the server starts)."""
    return [Served(name, load_checkpoint(path, device)) for name, path in zip(names(paths), paths, strict=True)]


def pick(models: list[Served], index: Any) -> Served:
    """The model a request names by ``index`` (an integer); anything else is refused."""
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(models):
        raise LimitError(f"model must be an index in [0, {len(models) - 1}] (the models this server was started "
                         f"with), got {shown(index)}")
    return models[index]

"""charlm: character-level (byte-level) RNN / GRU / LSTM language models on PyTorch Lightning.

From Python (charlm.api): ``m = charlm.load("best.ckpt"); m.sample("ROMEO:", seed=1)``, and
``charlm.fit(trainer={"max_steps": 200})`` (``charlm fit``). From a shell: ``charlm --help`` (charlm.cli).

The house, floor by floor (imports run down): ``datamodules`` (corpora, imports nothing from charlm);
the network and its checkpoint (model.py, checkpoint.py, devices.py, compat.py); ``infer/`` (using a
trained network) and ``train/`` (the LightningModule, run folders, loggers); ``callbacks/`` and ``serve/``
(the page); ``cli/`` (the command table and one module per command); this front door (api.py) and
``__main__.py`` at the top.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from typing import Any

from charlm.version import __version__

__all__ = ["Model", "__version__", "fit", "load"]

# Modules that moved when the package was split into rooms (0.2): a class path a user's config file (or a
# run's saved config.yaml) still names, such as charlm.wandb_logger.WandbLogger, imports the module it now is.
MOVED = {
    "charlm.csv_logger": "charlm.train.csv_logger",
    "charlm.wandb_logger": "charlm.train.wandb_logger",
    "charlm.lit": "charlm.train.lightning_module",
    "charlm.faults": "charlm.train.faults",
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports a module of MOVED as the module it now is (the same object, under both names)."""

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        return importlib.util.spec_from_loader(name, self) if name in MOVED else None

    def create_module(self, spec: Any) -> Any:
        return importlib.import_module(MOVED[spec.name])

    def exec_module(self, module: Any) -> None:
        pass  # already executed under its own name


if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
    sys.meta_path.append(_MovedModules())


def __getattr__(name: str) -> Any:
    # the front door, imported on first use: `import charlm` alone loads no torch
    if name in ("Model", "fit", "load"):
        return getattr(importlib.import_module("charlm.api"), name)
    raise AttributeError(f"module 'charlm' has no attribute {name!r}")

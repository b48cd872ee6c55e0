"""Byte-level corpora as LightningDataModules; this package imports nothing from ``charlm``.

The data modules are imported on first use (``datamodules.ShakespeareDataModule``), so the light
parts (``datamodules.io.vocab``, ``datamodules.io.fetch``) load without Lightning: ``charlm sample``
starts in half the time (3 s instead of 6 s on a 2-core CPU, most of it importing torch).
"""

from __future__ import annotations

import importlib

_WHERE = {
    "CharDataModule": "datamodules.base",
    "Enwik8DataModule": "datamodules.enwik8",
    "LinuxDataModule": "datamodules.linux",
    "ShakespeareDataModule": "datamodules.shakespeare",
    "TextDataModule": "datamodules.text",
    "Vocabulary": "datamodules.io.vocab",
}
__all__ = list(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'datamodules' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)

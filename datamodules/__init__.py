"""Byte-level corpora as LightningDataModules; this package imports nothing from ``charlm``."""

from datamodules.base import CharDataModule
from datamodules.shakespeare import ShakespeareDataModule
from datamodules.vocab import Vocabulary

__all__ = ["CharDataModule", "ShakespeareDataModule", "Vocabulary"]

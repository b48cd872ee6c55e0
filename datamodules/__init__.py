"""Byte-level corpora as LightningDataModules; this package imports nothing from ``charlm``."""

from datamodules.base import CharDataModule
from datamodules.enwik8 import Enwik8DataModule
from datamodules.linux import LinuxDataModule
from datamodules.shakespeare import ShakespeareDataModule
from datamodules.text import TextDataModule
from datamodules.vocab import Vocabulary

__all__ = ["CharDataModule", "Enwik8DataModule", "LinuxDataModule", "ShakespeareDataModule", "TextDataModule",
           "Vocabulary"]

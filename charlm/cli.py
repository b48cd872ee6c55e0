"""``python -m charlm {fit,validate,test,sample}``.

fit / validate / test go through LightningCLI over CharLM and any corpus data module; ``sample``
needs only a checkpoint (no corpus, no Trainer), so it has its own small parser.
"""

from __future__ import annotations

import sys

from jsonargparse import CLI
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

import charlm.callbacks  # noqa: F401  (registers charlm's callbacks for configs)
import datamodules  # noqa: F401  (registers every corpus data module by class name)
from charlm.lit import CharLM
from charlm.sample import sample
from datamodules.base import CharDataModule

EXTRA_COMMANDS = {"sample": sample}

DESCRIPTION = """Character-level RNN / GRU / LSTM language models.

Also: `charlm sample --help` (generate text from a checkpoint)."""


class CharLMCLI(LightningCLI):
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # the model's vocabulary is the corpus's: read once the data module exists
        parser.link_arguments("data.vocab_symbols", "model.vocab", apply_on="instantiate")


def main(args: list[str] | None = None) -> CharLMCLI | object:
    argv = sys.argv[1:] if args is None else args
    if argv and argv[0] in EXTRA_COMMANDS:
        return CLI(EXTRA_COMMANDS[argv[0]], args=argv[1:], as_positional=False, prog=f"charlm {argv[0]}")
    return CharLMCLI(
        CharLM,
        CharDataModule,
        subclass_mode_data=True,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"description": DESCRIPTION},
        args=args,
    )

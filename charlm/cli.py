"""``python -m charlm {fit,validate,test,...}``: LightningCLI over CharLM and any corpus data module."""

from __future__ import annotations

from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

import charlm.callbacks  # noqa: F401  (registers InterruptCheckpoint for configs)
import datamodules  # noqa: F401  (registers every corpus data module by class name)
from charlm.lit import CharLM
from datamodules.base import CharDataModule


class CharLMCLI(LightningCLI):
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # the model's vocabulary is the corpus's: read once the data module exists
        parser.link_arguments("data.vocab_symbols", "model.vocab", apply_on="instantiate")


def main(args: list[str] | None = None) -> CharLMCLI:
    return CharLMCLI(
        CharLM,
        CharDataModule,
        subclass_mode_data=True,
        save_config_kwargs={"overwrite": True},
        args=args,
    )

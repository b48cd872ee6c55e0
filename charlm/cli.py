"""``python -m charlm {fit,validate,test}``: LightningCLI over CharLM and any corpus data module.

The commands that need only a checkpoint (sample, visualize, score, classify) are in
``charlm.commands``; ``charlm.__main__`` picks between the two.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import yaml
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import WandbLogger

import charlm.callbacks  # noqa: F401  (registers charlm's callbacks for configs)
import charlm.sample_callback  # noqa: F401
import charlm.wandb_logger  # noqa: F401
import charlm.visualize_callback  # noqa: F401
from charlm.callbacks import run_log_dir
from charlm.lit import CharLM
from datamodules import (  # noqa: F401  (imported so that --data accepts each corpus by class name)
    CharDataModule,
    Enwik8DataModule,
    LinuxDataModule,
    ShakespeareDataModule,
    TextDataModule,
)

DESCRIPTION = """Character-level RNN / GRU / LSTM language models.

Also: `charlm sample --help` (generate text from a checkpoint), `charlm score --help` (bpc of a
text), `charlm classify --help` (which model's training text does a passage resemble?),
`charlm visualize --help` (an HTML page of neuron activations)."""


class RunConfig(SaveConfigCallback):
    """Record the resolved configuration with the run: ``config.yaml`` in the run's own log folder
    (never a folder shared by several runs) and, for W&B, in the run's config and files."""

    def save_config(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        text = self.parser.dump(self.config, skip_none=False)
        log_dir = run_log_dir(trainer)  # rank 0 only here: trainer.log_dir would hang under DDP
        if log_dir is not None:
            log_dir.mkdir(parents=True, exist_ok=True)
            (log_dir / self.config_filename).write_text(text)
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.experiment.config.update(yaml.safe_load(text), allow_val_change=True)
                # not config.yaml: W&B keeps its own run config under that name in the same folder
                (Path(logger.experiment.dir) / "charlm-config.yaml").write_text(text)


class CharLMCLI(LightningCLI):
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # the model's vocabulary is the corpus's: read once the data module exists
        parser.link_arguments("data.vocab_symbols", "model.vocab", apply_on="instantiate")

    def before_instantiate_classes(self) -> None:
        # a CSVLogger without a name is named after the corpus: runs/enwik8/version_0, ...
        config = self.config[self.subcommand] if self.subcommand else self.config
        corpus = str(config.data.class_path).rsplit(".", 1)[-1].removesuffix("DataModule").lower() or "charlm"
        loggers = config.trainer.logger if isinstance(config.trainer.logger, list) else [config.trainer.logger]
        for logger in loggers:
            if str(getattr(logger, "class_path", "")).endswith("CSVLogger") and logger.init_args.get("name") is None:
                logger.init_args.name = corpus


def main(args: list[str] | None = None) -> CharLMCLI:
    """fit / validate / test (``charlm.__main__`` sends the checkpoint-only commands elsewhere)."""
    return CharLMCLI(
        CharLM,
        CharDataModule,
        subclass_mode_data=True,
        save_config_callback=RunConfig,
        save_config_kwargs={"save_to_log_dir": False},
        parser_kwargs={"description": DESCRIPTION},
        args=args,
    )

"""``python -m charlm {fit,validate,test}``: LightningCLI over CharLM and any corpus data module.

The commands that need only a checkpoint (sample, visualize, score, classify) are in
``charlm.commands``; ``charlm.__main__`` picks between the two.
"""

from __future__ import annotations

from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

import charlm.callbacks  # noqa: F401  (registers charlm's callbacks for configs)
import charlm.lr_monitor  # noqa: F401
import charlm.sample_callback  # noqa: F401
import charlm.wandb_logger  # noqa: F401
import charlm.visualize_callback  # noqa: F401
from charlm.checkpoint import check_ckpt_path
from charlm.checkpoint_io import use_atomic_checkpoints
from charlm.lit import CharLM
from charlm.run_config import RunConfig, resume_wandb_run
from charlm.run_folders import check_run_folders, follow_root_dir
from charlm.wandb_logger import check_logger_config
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


class CharLMCLI(LightningCLI):
    def parse_arguments(self, parser: LightningArgumentParser, args) -> None:
        super().parse_arguments(parser, args)
        # before LightningCLI reads hyperparameters from --ckpt_path (a traceback for a bad file)
        subcommand = self.config.get("subcommand")
        if subcommand:
            check_ckpt_path(self.config[subcommand].get("ckpt_path"), subcommand)

    def instantiate_trainer(self, **kwargs):
        # every checkpoint this Trainer writes: temp file beside it, fsync, os.replace (charlm.checkpoint_io)
        return use_atomic_checkpoints(super().instantiate_trainer(**kwargs))

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
        # W&B and the run folders: loggers with an empty save_dir follow default_root_dir; every folder the
        # run writes is checked now, not at the first checkpoint; a resumed fit continues its W&B run
        follow_root_dir(config.trainer)
        check_run_folders(config.trainer)
        check_logger_config(config.trainer)
        if self.subcommand == "fit":
            resume_wandb_run(config)


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

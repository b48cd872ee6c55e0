"""``python -m charlm {fit,validate,test}``: LightningCLI over CharLM and any corpus data module.

The commands that need only a checkpoint (sample, score, classify, visualize) are in
``charlm.cli.parser``, whose table lists every command and hands these three to :func:`main`.
"""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities.exceptions import MisconfigurationException

import charlm.callbacks
import charlm.train.wandb_logger  # noqa: F401
from charlm.callbacks.fit_guard import FitGuard
from charlm.callbacks.run_summary import attach as attach_run_summary
from charlm.checkpoint import check_ckpt_path, check_resume_batching, check_weights_to_evaluate
from charlm.cli.errors import OneLineErrors
from charlm.cli.fit_flags import (
    check_training_size,
    drop_init_from_when_resuming,
    given_model_settings,
    take_shape_from_init_from,
    warn_overridden_model_flags,
)
from charlm.cli.quiet import quiet_library_noise
from charlm.cli.table import DESCRIPTION, TRAINING
from charlm.compat import (
    drop_old_defaults_on_class_switch,
    entry_is,
    original_error,
    parser_actions,
    subcommand_parsers,
)
from charlm.devices import check_accelerator
from charlm.train.checkpoint_io import use_atomic_checkpoints
from charlm.train.lightning_module import CharLM
from charlm.train.run_folder import check_run_folders, continue_run_folder, follow_root_dir, loggers_of
from charlm.train.run_record import RunConfig, name_wandb_runs, resume_wandb_run
from charlm.train.wandb_logger import check_logger_config
from datamodules import (  # noqa: F401  (imported so that --data accepts each corpus by class name)
    CharDataModule,
    Enwik8DataModule,
    LinuxDataModule,
    ShakespeareDataModule,
    TextDataModule,
)

# the default run, installed with the package: `charlm fit` works in any folder (cli.yaml is optional)
DEFAULTS = Path(__file__).resolve().parents[2] / "defaults.yaml"  # charlm/defaults.yaml, package data


CKPT_PATH_HELP = {
    "fit": "a checkpoint to resume (weights, optimizer, step count, hidden state and position in the epoch), "
           "with the batch size and window it was trained with; one in a run folder (runs/<corpus>/version_N) "
           "continues that folder. To start a new run from a checkpoint's weights instead, use --model.init_from.",
    "validate": "the checkpoint whose weights are evaluated (required, unless --model.init_from names them).",
    "test": "the checkpoint whose weights are evaluated (required, unless --model.init_from names them).",
}


class CharLMParser(OneLineErrors, LightningArgumentParser):
    """LightningCLI's parser, with one-line errors (charlm.cli.errors)."""


class CharLMCLI(LightningCLI):
    """LightningCLI with charlm's checks before anything runs, atomic checkpoints and one-line errors."""

    def setup_parser(self, add_subcommands: bool, main_kwargs: dict, subparser_kwargs: dict) -> None:
        super().setup_parser(add_subcommands, main_kwargs, subparser_kwargs)
        # one usage form for every command ("charlm fit", as "charlm sample"), and --ckpt_path described as
        # charlm takes it: Lightning's help offers "last", "hpc" and "registry", which charlm refuses
        for name, parser in subcommand_parsers(self).items():
            parser.prog = f"charlm {name}"
            for action in parser_actions(parser):
                if action.dest == "ckpt_path":
                    action.help = CKPT_PATH_HELP[name]

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        # no `predict`: a language model has no predict_dataloader; `charlm sample` generates text
        return {name: skip for name, skip in LightningCLI.subcommands().items() if name != "predict"}

    def instantiate_classes(self) -> None:
        try:
            super().instantiate_classes()
        except (ValueError, TypeError) as err:
            # jsonargparse wraps what a class's __init__ raised ("--data.batch_size must be ...") in a
            # report on every Union subtype it tried: raise the original, the one that says what is wrong
            root = original_error(err)
            if root is err:
                raise
            raise root.with_traceback(root.__traceback__) from None

    def parse_arguments(self, parser: LightningArgumentParser, args) -> None:
        super().parse_arguments(parser, args)
        # before LightningCLI reads hyperparameters from --ckpt_path (a traceback for a bad file)
        subcommand = self.config.get("subcommand")
        self._given_model: dict = {}
        if subcommand:
            config = self.config[subcommand]
            root = config.trainer.get("default_root_dir") or "."
            check_ckpt_path(config.get("ckpt_path"), subcommand, root)
            check_weights_to_evaluate(subcommand, config.get("ckpt_path"), config.model.get("init_from"), root)
            if subcommand == "fit" and config.get("ckpt_path"):
                check_resume_batching(config.ckpt_path, config.data.get("init_args") or {})
            drop_init_from_when_resuming(config, subcommand)  # the checkpoint's weights, not init_from's
            if config.get("ckpt_path") or config.model.get("init_from"):
                self._given_model = given_model_settings(parser, args, self.config, subcommand)
            if config.model.get("init_from"):
                take_shape_from_init_from(config, self._given_model)

    def instantiate_trainer(self, **kwargs):
        try:
            trainer = super().instantiate_trainer(**kwargs)
        except MisconfigurationException as err:  # Trainer's own check of a --trainer.* value: one line
            raise ValueError(f"--trainer: {err}") from None
        trainer.callbacks.append(FitGuard())  # Ctrl-C at a safe point, exit 143 on SIGTERM, a non-finite loss
        if self.subcommand == "fit":
            attach_run_summary(trainer)  # fit ends by naming what it made; the bar shows the run folder's version
            name_wandb_runs(trainer, self.model)  # shakespeare-lstm-2x256-v0, tagged shakespeare and lstm
        # every checkpoint this Trainer writes: temp file beside it, fsync, os.replace (charlm.train.checkpoint_io)
        return use_atomic_checkpoints(trainer)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # the model's vocabulary is the corpus's: read once the data module exists
        parser.link_arguments("data.vocab_symbols", "model.vocab", apply_on="instantiate")

    def before_instantiate_classes(self) -> None:
        # a CSVLogger without a name is named after the corpus: runs/enwik8/version_0, ...
        config = self.config[self.subcommand] if self.subcommand else self.config
        corpus = str(config.data.class_path).rsplit(".", 1)[-1].removesuffix("DataModule").lower() or "charlm"
        for logger in loggers_of(config.trainer):
            if entry_is(logger, CSVLogger) and logger.init_args.get("name") is None:
                logger.init_args.name = corpus
        # W&B and the run folders: loggers with an empty save_dir follow default_root_dir; every folder the
        # run writes is checked now, not at the first checkpoint; a resumed fit continues its run folder
        # (runs/<corpus>/version_N, when the checkpoint is in it) and its W&B run
        if self.subcommand and config.get("ckpt_path"):  # LightningCLI gave config.model the checkpoint's values
            warn_overridden_model_flags(self._given_model, config.model, config.ckpt_path, self.subcommand)
        follow_root_dir(config.trainer)
        check_run_folders(config.trainer)
        check_logger_config(config.trainer)
        if self.subcommand == "fit":
            continue_run_folder(config)
            resume_wandb_run(config)
        # before the corpus is prepared or anything allocated: the devices exist, the model fits
        check_accelerator(config.trainer.accelerator, config.trainer.devices)
        interval = config.trainer.val_check_interval
        if isinstance(interval, (int, float)) and not interval > 0:  # Lightning: ZeroDivisionError mid-epoch
            raise ValueError(f"--trainer.val_check_interval must be > 0 (a fraction of an epoch, or a number of "
                             f"batches), got {interval}")
        check_training_size(config.model, config.trainer.accelerator, self.subcommand)
        quiet_library_noise(self.subcommand)


def main(args: list[str] | None = None) -> CharLMCLI:
    """fit / validate / test (``charlm.cli.parser.run_command`` sends the checkpoint-only commands elsewhere)."""
    quiet_library_noise()
    drop_old_defaults_on_class_switch()  # --data X gets X's own url, sha256, ... (not the default run's class's)
    defaults = {"default_config_files": [str(DEFAULTS)]}
    # each command's parser: the default run, and the line `charlm --help` shows for it (charlm.cli.parser)
    commands = {name: {**defaults, "description": line} for name, line in TRAINING.items()}
    return CharLMCLI(
        CharLM,
        CharDataModule,
        subclass_mode_data=True,
        save_config_callback=RunConfig,
        save_config_kwargs={"save_to_log_dir": False},
        parser_kwargs={"prog": "charlm", "description": DESCRIPTION, **commands},
        parser_class=CharLMParser,
        # the optimizer and its schedule are CharLM's (--model.lr, --model.warmup_steps, ...): LightningCLI's
        # --optimizer / --lr_scheduler would silently replace AdamW and drop warmup and cosine decay
        auto_configure_optimizers=False,
        args=args,
    )

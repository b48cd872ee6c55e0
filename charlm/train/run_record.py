"""What a run records about itself: its resolved configuration (``config.yaml`` in its own log
folder, and in its W&B run), and the W&B run's id inside every checkpoint, so that
``fit --ckpt_path`` continues the same W&B run instead of opening a second one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import yaml
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.loggers import WandbLogger as LightningWandbLogger

from charlm.checkpoint import read_checkpoint
from charlm.compat import callback_state, entry_is, started_wandb_run
from charlm.train.run_folder import loggers_of, run_log_dir
from charlm.train.wandb_logger import wandb_loggers
from datamodules.common.rank_zero import rank_zero_note


class RunConfig(SaveConfigCallback):
    """Record the resolved configuration with the run: ``config.yaml`` in the run's own log folder
    (never a folder shared by several runs) and, for W&B, in the run's config and files. Checkpoints
    carry the W&B run id (``wandb_run_id`` in the callback's state, ``charlm.compat.callback_state``)."""

    wandb_run_id: str | None = None

    def save_config(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        text = self.parser.dump(self.config, skip_unset=False)  # skip_none: gone in jsonargparse 5
        log_dir = run_log_dir(trainer)  # rank 0 only here: trainer.log_dir would hang under DDP
        if log_dir is not None:
            log_dir.mkdir(parents=True, exist_ok=True)
            (log_dir / self._filename(trainer, log_dir, text)).write_text(text)
        for logger in wandb_loggers(trainer):  # not a disabled one: it has no run folder
            run = logger.experiment
            if getattr(logger, "resolved_mode", "online") == "online" and getattr(run, "url", None):
                rank_zero_note(f"W&B run: {run.url}")  # wandb's own lines are silenced (charlm.train.wandb_logger)
            run.config.update(wandb_config(yaml.safe_load(text)), allow_val_change=True)
            # not config.yaml: W&B keeps its own run config under that name in the same folder
            (Path(run.dir) / "charlm-config.yaml").write_text(text)
            self.wandb_run_id = self.wandb_run_id or run.id

    def _filename(self, trainer: L.Trainer, log_dir: Path, text: str) -> str:
        # a fit continuing its run folder (charlm.train.run_folder) keeps the run's own config.yaml and
        # writes what the resumed part ran with beside it (its ckpt_path, version, ... differ)
        step = next((logger.continue_from_step for logger in trainer.loggers
                     if getattr(logger, "continue_from_step", None) is not None), None)
        original = log_dir / self.config_filename
        if step is None or not original.is_file() or original.read_text() == text:
            return self.config_filename
        return f"{Path(self.config_filename).stem}-resume-step{step}{Path(self.config_filename).suffix}"

    def state_dict(self) -> dict[str, Any]:
        # written by rank 0, where save_config ran
        return {"wandb_run_id": self.wandb_run_id} if self.wandb_run_id else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # resumed with W&B off: later checkpoints still name the run to continue
        self.wandb_run_id = self.wandb_run_id or state_dict.get("wandb_run_id")


def wandb_config(settings: dict[str, Any]) -> dict[str, Any]:
    """The resolved configuration as a W&B run's config: each setting once, nested as the file nests it
    (W&B shows ``model.lr``, ``data.seq_len``, ``trainer.precision``), without what is internal to charlm:
    the vocabulary (a list of byte values; the checkpoint has it) and keys starting with ``_``."""
    def keep(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: keep(v) for k, v in value.items() if not str(k).startswith("_")}
        return value

    config = keep(settings)
    if isinstance(config.get("model"), dict):
        config["model"].pop("vocab", None)
    return config


def name_wandb_runs(trainer: L.Trainer, pl_module: L.LightningModule) -> None:
    """Name each W&B run of ``trainer`` (charlm's logger, not yet started: Lightning starts it in its setup,
    before any callback's) after the corpus, the network and the run folder, and tag it (run_name_and_tags)."""
    for logger in wandb_loggers(trainer):
        if hasattr(logger, "name_and_tag") and started_wandb_run(logger) is None:
            logger.name_and_tag(*run_name_and_tags(pl_module, run_log_dir(trainer)))


def run_name_and_tags(pl_module: L.LightningModule, log_dir: Path | None) -> tuple[str, list[str]]:
    """``shakespeare-lstm-2x256-v0`` (corpus, cell, layers x units, run folder version) and the tags
    ``[corpus, cell]``: the corpus and version from the run folder (runs/<corpus>/version_N)."""
    corpus = log_dir.parent.name if log_dir is not None else "charlm"
    version = log_dir.name.removeprefix("version_") if log_dir is not None else None
    config = pl_module.model.config
    name = f"{corpus}-{config.cell}-{config.num_layers}x{config.hidden_size}" + (f"-v{version}" if version else "")
    return name, [corpus, config.cell]


def recorded_wandb_run_id(ckpt_path: str | Path) -> str | None:
    """The W&B run id a checkpoint was saved from, if it has one (charlm.checkpoint.read_checkpoint)."""
    try:
        run_id = callback_state(read_checkpoint(ckpt_path), RunConfig).get("wandb_run_id")
    except Exception:  # noqa: BLE001  (no id to resume: an unreadable file is refused by the fit itself)
        return None
    return run_id if isinstance(run_id, str) and run_id else None


def resume_wandb_run(config: Any) -> None:
    """For ``fit --ckpt_path FILE``: the first W&B logger (unless given an id) continues the run the
    checkpoint was saved from (``resume="allow"``: a new run with that id if it is gone)."""
    ckpt_path = config.get("ckpt_path")
    if not ckpt_path or not Path(ckpt_path).is_file():
        return  # none, or "last"/"hpc": Lightning finds that file later
    run_id = recorded_wandb_run_id(ckpt_path)
    if run_id is None:
        return
    for logger in loggers_of(config.trainer):
        if entry_is(logger, LightningWandbLogger):
            if logger.init_args.get("id") is None and logger.init_args.get("version") is None:
                logger.init_args.id, logger.init_args.resume = run_id, "allow"
                rank_zero_note(f"W&B: continuing run {run_id}, recorded in {ckpt_path}.")
            return

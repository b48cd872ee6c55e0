"""Watch neurons learn: after validation, write the ``charlm visualize`` page and log it to W&B.

The page (the same one the ``visualize`` command writes) goes to the run's folder as
``neurons/step-<N>.html`` and, when a W&B logger is configured, into the run as an HTML panel
(``neurons/page``) with the ranked neurons as a table (``neurons/ranking``). It reads the text
one byte at a time in eval mode, with no random numbers drawn, so training is unchanged.
"""

from __future__ import annotations

import lightning as L

from charlm.infer.neuron_page import build_page, read_passage
from charlm.infer.neurons import State, check_view
from charlm.model import eval_mode
from charlm.train.run_folder import run_log_dir
from charlm.train.wandb_logger import GrowingTable, wandb_loggers
from datamodules.io.atomic_files import write_file

RANKING_COLUMNS = ["global_step", "feature", "state", "layer", "unit", "r"]


class VisualizeNeurons(L.Callback):
    """Write the neuron page (charlm.infer.neuron_page) of the model being trained every N validations (rank 0 only)."""

    def __init__(
        self,
        text_file: str | None = None,
        max_bytes: int = 1000,
        every_n_validations: int = 1,
        at_end: bool = True,
        state: State = "hidden",
        layer: int = -1,
        neuron: int = 0,
        find: bool = True,
        guesses: bool = True,
        key: str = "neurons",
    ) -> None:
        """
        Args:
            text_file: the passage to read through the model (default: the start of the validation split).
            max_bytes: read at most this many bytes of it.
            every_n_validations: render after every N-th validation during fit (1: each).
            at_end: also render when training ends, unless the last validation just did (so even a
                short run gets a page of its final model).
            state: the panel always shown: hidden, or cell (LSTM only) ...
            layer: ... of this layer (-1: the last) ...
            neuron: ... and this unit.
            find: also rank all neurons against interpretable features and show the best ones.
            guesses: show the top-5 next-character guesses under each character.
            key: prefix of the W&B keys and name of the local folder.
        """
        if max_bytes < 1 or every_n_validations < 1:
            raise ValueError(f"VisualizeNeurons max_bytes and every_n_validations must be positive, got {max_bytes} "
                             f"and {every_n_validations}")
        self.text_file, self.max_bytes, self.every_n_validations = text_file, max_bytes, every_n_validations
        self.at_end = at_end
        self._rendered_step: int | None = None  # global step of the last page
        self.state, self.layer, self.neuron = state, layer, neuron
        self.find, self.guesses, self.key = find, guesses, key
        self._validations = 0
        self._table = GrowingTable(RANKING_COLUMNS)
        self._passage: bytes | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        check_view(pl_module.model, self.state, self.layer, self.neuron, "VisualizeNeurons ")  # now, not an hour in
        if self.text_file is None and "val" not in getattr(trainer.datamodule, "splits", {}):
            raise ValueError("VisualizeNeurons reads the validation text of a charlm data module; this run has none, "
                             "so give it text_file: a passage to visualise.")
        if self.text_file is not None:
            self._passage = read_passage(self.text_file, self.max_bytes, "VisualizeNeurons text_file")
            missing = pl_module.vocab.missing_bytes(self._passage)
            if missing:
                raise ValueError(f"VisualizeNeurons text_file {self.text_file}: it contains "
                                 f"{pl_module.vocab.describe_missing(self._passage)}, which the corpus does not; "
                                 f"give a passage written with the corpus's characters.")

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        self._validations += 1
        if self._validations % self.every_n_validations == 0 and trainer.is_global_zero:
            self.render_and_log(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.at_end and trainer.is_global_zero and self._rendered_step != trainer.global_step:
            self.render_and_log(trainer, pl_module)

    def passage(self, trainer: L.Trainer, pl_module: L.LightningModule) -> bytes:
        if self._passage is None:
            val = trainer.datamodule.splits["val"][: self.max_bytes]  # (N,) token ids
            self._passage = pl_module.vocab.decode(val.tolist())
        return self._passage

    def render_and_log(self, trainer: L.Trainer, pl_module: L.LightningModule) -> str:
        model, step = pl_module.model, trainer.global_step
        self._rendered_step = step
        reading = f"reading {self.text_file}" if self.text_file else "reading the validation text"
        source = f"Step {step} of training, {reading}"
        with eval_mode(model):
            page, ranking, _ = build_page(model, pl_module.vocab, self.passage(trainer, pl_module), source, self.state,
                                          self.layer, self.neuron, self.find, self.guesses)
        log_dir = run_log_dir(trainer)
        if log_dir is not None:
            write_file(log_dir / self.key / f"step-{step}.html", page.encode("utf-8"))
        rows = [[step, f, s, layer, unit, round(r, 4)]
                for f, best in (ranking or {}).items() for s, layer, unit, r in best]
        self._log_wandb(trainer, page, rows)
        return page

    def _log_wandb(self, trainer: L.Trainer, page: str, rows: list[list]) -> None:
        for logger in wandb_loggers(trainer):
            import wandb  # only when a W&B logger is configured

            entry = {f"{self.key}/page": wandb.Html(page, inject=False, data_is_not_path=True),
                     "trainer/global_step": trainer.global_step}
            if rows:
                entry[f"{self.key}/ranking"] = self._table.extend(logger, rows)
            logger.experiment.log(entry)

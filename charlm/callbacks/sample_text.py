"""Watch samples evolve while training: print them, and log them to one growing W&B table.

Sampling never changes training: it uses its own random generator (not the global one dropout
draws from), its own hidden state, runs in eval mode without autocast, and restores the mode it
found. Under DDP only rank 0 samples; the other ranks go on and meet it at the next all-reduce.
"""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import torch

from charlm.infer.generate import Utf8Stream, generate
from charlm.infer.logits import check_sampling_args
from charlm.model import eval_mode
from charlm.train.run_folder import run_log_dir
from charlm.train.wandb_logger import GrowingTable, wandb_loggers
from datamodules.common.rank_zero import rank_zero_note
from datamodules.io.atomic_files import write_atomically
from datamodules.io.vocab import Vocabulary

COLUMNS = ["global_step", "epoch", "val_bpc", "temperature", "prompt", "sample"]
SAMPLES_FILE = "samples.jsonl"  # in the run's log folder: one JSON object (COLUMNS) per line
DEFAULT_PROMPT = "\n"  # a line starts: what char-rnn's samples began with


def fallback_prompt(vocab: Vocabulary) -> str | None:
    """A one-character prompt the vocabulary has, for a corpus without newlines: a space if it has one, else
    its first printable ASCII character (None if it has none)."""
    have = set(vocab.symbols)
    return next((chr(b) for b in (ord(" "), *sorted(have)) if b in have and 32 <= b < 127), None)


def drop_rows_after(path: Path, step: int) -> None:
    """Rewrite the samples file ``path`` without its rows of ``global_step > step`` (atomically: a temp
    file in the same folder, fsynced, renamed over it); untouched when there are none."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)

    def after(line: str) -> bool:
        try:
            return json.loads(line)["global_step"] > step
        except (ValueError, KeyError, TypeError):
            return False  # a line cut short by a kill, or not ours: kept as it is

    kept = [line for line in lines if not after(line)]
    if len(kept) == len(lines):
        return
    write_atomically(path, lambda file: file.write("".join(kept).encode("utf-8")))


class SampleText(L.Callback):
    """Sample at several temperatures every N steps and/or after each validation."""

    def __init__(
        self,
        prompts: list[str] | None = None,
        temperatures: list[float] | None = None,
        length: int = 300,
        every_n_steps: int | None = None,
        on_validation: bool = True,
        seed: int = 0,
        table_key: str = "samples",
        print_samples: bool = True,
    ) -> None:
        """
        Args:
            prompts: texts each sample starts from (default: one newline; for a corpus without newlines, a
                character it has, with a note).
            temperatures: one sample per prompt per temperature (default: 0.5, 0.8, 1.0).
            length: bytes per sample.
            every_n_steps: also sample every N optimizer steps (None: only after validation).
            on_validation: sample after each validation run.
            seed: seed of the sampler's own generator (combined with the step number).
            table_key: name of the W&B table.
            print_samples: print samples to the console too.
        """
        self.prompts = prompts if prompts is not None else ["\n"]
        self.temperatures = temperatures if temperatures is not None else [0.5, 0.8, 1.0]
        for t in self.temperatures:
            check_sampling_args(t, None, None)
        if length < 1:
            raise ValueError(f"SampleText length must be a positive integer, got {length}")
        self.length, self.every_n_steps, self.on_validation = length, every_n_steps, on_validation
        self.seed, self.table_key, self.print_samples = seed, table_key, print_samples
        self._table = GrowingTable(COLUMNS)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # fail now, not after the first hour of training
        self.prompts = [self._usable(prompt, pl_module.vocab) for prompt in self.prompts]

    @staticmethod
    def _usable(prompt: str, vocab: Vocabulary) -> str:
        """``prompt`` if the vocabulary has its bytes; the default newline becomes a character the corpus has
        (with a note); any other prompt is a one-line error."""
        try:
            vocab.encode(prompt.encode())
            return prompt
        except ValueError as err:
            fallback = fallback_prompt(vocab) if prompt == DEFAULT_PROMPT else None
            if fallback is None:
                raise ValueError(f"SampleText prompt {prompt!r}: {err}; write the prompt in the corpus's "
                                 f"characters (trainer.callbacks ... SampleText init_args.prompts)") from None
        rank_zero_note(f"charlm: the corpus has no newline, so the samples start from {fallback!r} instead "
                       f"(SampleText init_args.prompts chooses).")
        return fallback

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # a fit resumed in its own run folder (charlm.train.run_folder) appends to the samples.jsonl
        # there: first drop the rows of steps after the checkpoint's, which it samples again
        log_dir = run_log_dir(trainer) if trainer.is_global_zero and trainer.global_step > 0 else None
        if log_dir is not None and (log_dir / SAMPLES_FILE).is_file():
            drop_rows_after(log_dir / SAMPLES_FILE, trainer.global_step)

    # --- when ---------------------------------------------------------------------------------
    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: object, batch: object, batch_idx: int
    ) -> None:
        if self.every_n_steps and trainer.global_step % self.every_n_steps == 0:
            self.sample_and_log(trainer, pl_module)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.on_validation and not trainer.sanity_checking and trainer.state.fn == "fit":
            self.sample_and_log(trainer, pl_module)

    # --- what ---------------------------------------------------------------------------------
    def sample_and_log(self, trainer: L.Trainer, pl_module: L.LightningModule) -> list[list]:
        if not trainer.is_global_zero:
            return []
        val_bpc = trainer.callback_metrics.get("val/bpc")
        val_bpc = None if val_bpc is None else round(float(val_bpc), 4)
        rows = [
            [trainer.global_step, trainer.current_epoch, val_bpc, t, prompt, text]
            for prompt, texts in zip(self.prompts, self._generate(pl_module, trainer.global_step), strict=True)
            for t, text in zip(self.temperatures, texts, strict=True)
        ]
        if self.print_samples:
            self._print(trainer, rows)
        self._write_local(trainer, rows)
        self._log_wandb(trainer, rows)
        return rows

    def _generate(self, pl_module: L.LightningModule, step: int) -> list[list[str]]:
        model, vocab = pl_module.model, pl_module.vocab
        device = next(model.parameters()).device
        generator = torch.Generator(device=device).manual_seed(self.seed * 1_000_003 + step)
        with eval_mode(model), torch.inference_mode(), torch.autocast(device.type, enabled=False):
            out = []
            for prompt in self.prompts:
                ids = torch.as_tensor(vocab.encode(prompt.encode()), dtype=torch.long, device=device)[None]
                texts = []
                for t in self.temperatures:
                    tokens = torch.cat(list(generate(model, ids, self.length, t, generator=generator)))
                    stream = Utf8Stream()
                    texts.append(stream.feed(vocab.decode(tokens.tolist())) + stream.finish())
                out.append(texts)
            return out

    def _print(self, trainer: L.Trainer, rows: list[list]) -> None:
        lines = []
        for step, epoch, bpc, t, prompt, text in rows:
            lines.append(f"----- step {step} (epoch {epoch}, val bpc {bpc}), temperature {t} -----\n{prompt}{text}")
        message = "\n".join(lines)
        bar = trainer.progress_bar_callback
        (bar.print if bar is not None and hasattr(bar, "print") else print)(message)

    def _write_local(self, trainer: L.Trainer, rows: list[list]) -> None:
        log_dir = run_log_dir(trainer)
        if log_dir is None:
            return
        path = log_dir / SAMPLES_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(dict(zip(COLUMNS, row, strict=True)), ensure_ascii=False) + "\n")

    def _log_wandb(self, trainer: L.Trainer, rows: list[list]) -> None:
        for logger in wandb_loggers(trainer):
            logger.experiment.log({self.table_key: self._table.extend(logger, rows),
                                   "trainer/global_step": trainer.global_step})

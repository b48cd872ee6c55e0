"""The LightningModule: stateful truncated BPTT, bits per byte, AdamW with warmup and cosine decay."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Literal

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.accelerators import CUDAAccelerator
from lightning.pytorch.utilities import rank_zero_warn

from charlm.checkpoint import BATCHING
from charlm.compat import attached_trainer, fit_interrupted
from charlm.model import CharRNN, CharRNNConfig, Hidden, detach_hidden, hidden_batch_size, hidden_device, map_hidden
from charlm.train.faults import (
    DivergedError,
    LossWatch,
    diverged_message,
    divergence,
    refuse_untrainable_precision,
    refuse_untrainable_settings,
    weights_finite,
)
from charlm.train.init_from import pretrained_shape, read_pretrained, transplant
from charlm.train.metrics import BitsPerByte
from charlm.train.precision import describe_fp32_math, use_tf32
from charlm.train.resume import fix_loop_state
from datamodules.batches.streams import IGNORE
from datamodules.common.rank_zero import rank_zero_note
from datamodules.io.vocab import Vocabulary

LN2 = math.log(2)


class CharLM(L.LightningModule):
    """A CharRNN trained by stateful truncated BPTT: each batch continues the previous one's streams."""

    def __init__(
        self,
        vocab: Sequence[int],
        lr: float = 2e-3,
        weight_decay: float = 0.01,
        betas: tuple[float, float] = (0.9, 0.99),
        warmup_steps: int = 100,
        lr_schedule: Literal["cosine", "constant"] = "cosine",
        min_lr_ratio: float = 0.1,
        grad_clip: float = 1.0,
        tf32: bool | None = None,
        init_from: str | None = None,
        **shape: Any,
    ) -> None:
        """
        Args:
            vocab: the byte values the model predicts (set from the data module by the CLI).
            lr: peak learning rate of AdamW.
            weight_decay: AdamW decoupled weight decay, applied to weight matrices only.
            betas: AdamW's moment coefficients.
            warmup_steps: optimizer steps of linear warmup from 0 to ``lr``.
            lr_schedule: after warmup, cosine decay to ``min_lr_ratio * lr`` by the last step, or constant.
            min_lr_ratio: the final learning rate as a fraction of ``lr`` (cosine schedule).
            grad_clip: clip the global gradient norm to this value before each step; 0 disables.
            tf32: on a CUDA GPU, let float32 work (cuDNN's RNN and the output head's matmuls) round its inputs
                to TF32, 10-bit mantissas: true allows it, false forbids it (IEEE float32), null leaves torch's
                settings (torch 2.13: TF32 for cuDNN's RNNs, IEEE for matmuls). Set for the fit, validate or test
                and put back after; one line says what it runs in. Ignored on a CPU.
            init_from: fine-tune: a checkpoint (.ckpt) whose weights this new model starts from, with a fresh
                optimizer, schedule, step count and hidden state (``--ckpt_path`` resumes a run instead, and
                this is then ignored: a fine-tuned run resumes with its own command plus --ckpt_path). The
                network's shape is the checkpoint's (a contradicting cell, num_layers, hidden_size or
                embedding_dim is refused); dropout and weight_drop are too, unless set. Bytes of both
                vocabularies keep their embedding and output rows, new bytes get fresh rows, bytes the new
                corpus lacks are dropped (charlm.train.init_from).
            **shape: the network's shape, the fields of ``charlm.model.CharRNNConfig`` (cell, num_layers,
                hidden_size, embedding_dim, dropout, weight_drop). jsonargparse reads them, with their types, defaults
                and help, from that dataclass (it follows ``**shape`` into the call below), so they are
                flat flags (--model.cell gru) and flat keys in configs and ``hyper_parameters``.
        """
        super().__init__()
        checks = [
            (lr > 0, "lr", lr, "a positive number"),
            (weight_decay >= 0, "weight_decay", weight_decay, "non-negative"),
            (all(0 <= b < 1 for b in betas), "betas", betas, "two numbers in [0, 1)"),
            (warmup_steps >= 0, "warmup_steps", warmup_steps, "non-negative"),
            (0 <= min_lr_ratio <= 1, "min_lr_ratio", min_lr_ratio, "in [0, 1]"),
            (grad_clip >= 0, "grad_clip", grad_clip, "non-negative (0 disables clipping)"),
        ]
        for ok, name, value, expected in checks:
            if not ok:
                raise ValueError(f"--model.{name} must be {expected}, got {value!r}")
        self.vocab = Vocabulary(tuple(vocab))
        pretrained = read_pretrained(init_from) if init_from is not None else None  # each DDP rank reads it
        if pretrained is not None:  # the checkpoint's shape; raises naming any contradicting --model.* flag
            shape = pretrained_shape(pretrained.model.config, shape, init_from)
        try:
            self.model = CharRNN(CharRNNConfig(vocab_size=len(self.vocab), **shape))
        except ValueError as err:  # each message starts with the field's name (or the sizes, for a model too big)
            raise ValueError(f"--model.{err}") from None
        if pretrained is not None:  # at construction: every DDP rank builds the same weights, before any step
            rank_zero_note(f"charlm: {init_from} (--model.init_from): "
                           f"{transplant(self.model, self.vocab, pretrained).describe()}")
        # save_hyperparameters reads the arguments from this frame, **shape as given: rebound to the whole
        # shape, the hyperparameters (checkpoints, logged configs) hold its defaults too. Not init_from: the
        # weights are in the checkpoint, and a resumed run (--ckpt_path) must not fine-tune again
        shape = self.model.config.to_hparams()
        self.save_hyperparameters(ignore=["init_from"])
        self.train_bpc, self.val_bpc, self.test_bpc = BitsPerByte(), BitsPerByte(), BitsPerByte()
        self._train_hidden: Hidden | None = None  # carried across consecutive training batches
        self._eval_hidden: Hidden | None = None  # validation/test have their own
        self._restored_rng: dict[str, Any] | None = None  # applied at the first batch after a resume
        self._total_steps_cache: int | None = None
        self.loss_watch = LossWatch()  # first non-finite training loss, kept on the device
        self._validation_open = False  # a validation (not the sanity check) is under way in fit
        self._validated_at_step: int | None = None  # the global step of the last validation fit finished
        self._restore_fp32_math: Callable[[], None] | None = None  # undoes --model.tf32 after the run

    def configure_callbacks(self) -> list[L.Callback]:
        # Lightning asks for these on every process before any logger starts: the earliest point
        # that sees the trainer, so a precision that cannot train is refused before anything runs
        refuse_untrainable_precision(self.trainer)
        refuse_untrainable_settings(self.trainer)
        self._set_fp32_math()
        # FitGuard (Ctrl-C, SIGTERM, a non-finite loss) is attached by the CLI (it lives in charlm.callbacks, a
        # floor above this module); a Trainer built by hand adds charlm.callbacks.fit_guard.FitGuard() itself
        return []

    def _set_fp32_math(self) -> None:
        # here, before Lightning's CUDA set-up reads torch's matmul precision (its Tensor Cores hint)
        if not on_cuda(self.trainer):
            return
        if self.hparams.tf32 is not None and self._restore_fp32_math is None:
            self._restore_fp32_math = use_tf32(self.hparams.tf32)
        rank_zero_note(describe_fp32_math(self.hparams.tf32))

    def teardown(self, stage: str) -> None:
        if self._restore_fp32_math is not None:  # the process's torch settings, as they were before the run
            self._restore_fp32_math()
            self._restore_fp32_math = None

    def forward(self, tokens: torch.Tensor, hidden: Hidden | None = None) -> tuple[torch.Tensor, Hidden]:
        return self.model(tokens, hidden)

    # --- training -------------------------------------------------------------------------------
    def on_train_batch_start(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        # Readies what training_step carries, right before it (the batch is already on the device). Not in
        # on_train_start / on_train_epoch_start: what runs between those and the first batch of a resumed run
        # would draw from the restored RNG (callbacks' on_train_epoch_start runs again for the resumed epoch;
        # a torch DataLoader draws its base seed as the epoch's iterator is made, charlm's streams do not),
        # and a resumed epoch must keep its restored hidden state. batch_idx counts within the epoch (a
        # resumed run continues the count), so batch 0 is a new epoch's first batch.
        if self._restored_rng is not None:  # resume: dropout masks continue as if never stopped
            torch.set_rng_state(self._restored_rng["cpu"])
            if torch.cuda.is_available() and self._restored_rng.get("cuda") is not None:
                torch.cuda.set_rng_state(self._restored_rng["cuda"])
            self._restored_rng = None
        x = batch[0]  # (B, T)
        hidden = self._train_hidden
        if batch_idx == 0 or hidden is None or hidden_batch_size(hidden) != x.shape[0]:
            self._train_hidden = None  # a new epoch starts every stream from the beginning of the corpus
        elif hidden_device(hidden) != x.device:  # restored from a checkpoint onto another device
            self._train_hidden = map_hidden(lambda h: h.to(x.device), hidden)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch  # (B, T) each
        logits, hidden = self.model(x, self._train_hidden)  # (B, T, V); the state on_train_batch_start left
        self._train_hidden = detach_hidden(hidden)  # BPTT stops at the window edge
        loss = F.cross_entropy(logits.flatten(0, 1).float(), y.flatten())  # mean nats per byte
        self.train_bpc.update(loss.detach() * y.numel(), y.numel())
        self.loss_watch.update(loss.detach(), self.global_step + 1)  # no sync: FitGuard reads it on logging steps
        if attached_trainer(self) is None or (self.global_step + 1) % self.trainer.log_every_n_steps == 0:
            # only on the steps Lightning writes logs: each self.log costs host time on the hot path
            self.log("train/loss", loss, prog_bar=True)
            self.log("train/bpc", loss / LN2)
        return loss

    def on_train_epoch_end(self) -> None:
        self.log("train/bpc_epoch", self.train_bpc)

    # --- evaluation -----------------------------------------------------------------------------
    def _eval_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int, metric: BitsPerByte,
                   stage: str) -> None:
        x, y = batch
        hidden = None if batch_idx == 0 else self._eval_hidden
        logits, self._eval_hidden = self.model(x, hidden)
        nats = F.cross_entropy(logits.flatten(0, 1).float(), y.flatten(), reduction="sum", ignore_index=IGNORE)
        metric.update(nats, (y != IGNORE).sum())
        self.log(f"{stage}/bpc", metric, prog_bar=True)

    def on_validation_start(self) -> None:
        self._validation_open = attached_trainer(self) is not None and not self.trainer.sanity_checking

    def on_validation_epoch_end(self) -> None:
        if self._validation_open and self.trainer.state.fn == "fit":
            bpc = self.val_bpc.compute()  # before ModelCheckpoint sees it (its hook comes later)
            if not torch.isfinite(bpc):
                what = f"the validation bpc is {float(bpc)} at step {self.global_step}"
                raise DivergedError(diverged_message(self, what))

    def on_validation_end(self) -> None:
        if self._validation_open and self.trainer.state.fn == "fit":
            self._validated_at_step = self.global_step  # for a resume after it (charlm.train.resume)
        self._validation_open = False  # after every callback's on_validation_end (ModelCheckpoint's too)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, batch_idx, self.val_bpc, "val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, batch_idx, self.test_bpc, "test")

    # --- optimisation ---------------------------------------------------------------------------
    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        matrices = [p for n, p in self.model.named_parameters() if p.dim() >= 2 and not n.startswith("embed")]
        others = [p for n, p in self.model.named_parameters() if not (p.dim() >= 2 and not n.startswith("embed"))]
        groups = [{"params": matrices, "weight_decay": hp.weight_decay}, {"params": others, "weight_decay": 0.0}]
        # fused AdamW on GPUs: one kernel for all parameters, and under 16-mixed's GradScaler no host sync per
        # step (a plain optimizer's scaler.step reads found_inf on the host; a fused one skips on the device)
        fused = self.device.type == "cuda"
        optimizer = torch.optim.AdamW(groups, lr=hp.lr, betas=tuple(hp.betas), fused=fused or None)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: lr_factor(step, hp.warmup_steps, self._total_steps, hp.lr_schedule, hp.min_lr_ratio)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def _total_steps(self) -> int:
        # asked only once warmup is over: calling estimated_stepping_batches inside
        # configure_optimizers would build the training loader before a resumed run restores its
        # position in the epoch
        if self._total_steps_cache is None:
            self._total_steps_cache = max(1, int(self.trainer.estimated_stepping_batches))
        return self._total_steps_cache

    def configure_gradient_clipping(self, optimizer: torch.optim.Optimizer, gradient_clip_val=None,
                                    gradient_clip_algorithm=None) -> None:
        # --trainer.gradient_clip_val still wins if set
        clip = gradient_clip_val if gradient_clip_val is not None else self.hparams.grad_clip
        algorithm = str(getattr(gradient_clip_algorithm, "value", gradient_clip_algorithm) or "norm").lower()
        scaler = getattr(self.trainer.precision_plugin, "scaler", None)
        if clip and scaler is not None and getattr(optimizer, "_step_supports_amp_scaling", False):
            # 16-mixed with a fused AdamW: Lightning unscales only optimizers that do not unscale in their
            # step, so clipping would see gradients times the loss scale. Unscaled here, the scaler's step
            # hands the fused AdamW no scale, only the device flag that skips a step that overflowed
            scaler.unscale_(optimizer)
        if clip and algorithm == "value":
            torch.nn.utils.clip_grad_value_(self.parameters(), clip)  # --trainer.gradient_clip_algorithm value
        elif clip:
            torch.nn.utils.clip_grad_norm_(self.parameters(), clip)

    # --- checkpoints carry the vocabulary, the carried hidden state and the dropout RNG -------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if not weights_finite(self):  # the last guard: no file, "best" or last, ever holds NaN weights
            raise DivergedError(diverged_message(self, divergence(self, weights=True)))
        hidden = self._train_hidden
        if hidden is not None and self.trainer.world_size > 1:
            # Ctrl-C: ranks may not all be here, so no collective and the resumed run starts fresh;
            # else every rank's state, (world, layers, B, H) each
            hidden = None if fit_interrupted(self.trainer) else detach_hidden(self.all_gather(hidden))
        # the network's shape, for loaders without Lightning (load_checkpoint, the commands); hyper_parameters
        # holds it too, flat among CharLM's arguments, for LightningCLI's --ckpt_path and load_from_checkpoint
        checkpoint["model_config"] = self.model.config.to_dict()
        checkpoint["charlm"] = {
            "train_hidden": hidden,
            "world_size": self.trainer.world_size,
            "rng": {"cpu": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state() if torch.cuda.is_available() else None},
            # written because fit stopped (Ctrl-C, SIGTERM, a crash) while a validation was under way:
            # a resumed run must redo that validation, whose partial sums this file does not hold
            "mid_validation": self._validation_open and fit_interrupted(self.trainer),
            # a SIGTERM after this step's validation is resumed differently from last.ckpt (charlm.train.resume)
            "validated_at_step": self._validated_at_step,
            # the epoch's train/bpc_epoch so far, so that a resumed epoch logs the whole epoch's mean
            "train_bpc": self._train_bpc_sums(),
            # --data.batch_size and --data.seq_len: a resume with others is refused (charlm.checkpoint)
            "batching": {name: getattr(self.trainer.datamodule, name) for name in BATCHING
                         if isinstance(getattr(self.trainer.datamodule, name, None), int)},
        }

    def _train_bpc_sums(self) -> dict[str, float] | None:
        """The summed nats and byte count of this epoch's training batches so far, every rank's; None under
        DDP when fit stopped (the ranks may not all be here: no collective)."""
        metric = self.train_bpc
        nats, count = metric.nats - metric.nats_carry, metric.count
        if self.trainer.world_size > 1:
            if fit_interrupted(self.trainer):
                return None
            nats, count = self.all_gather(nats).sum(0), self.all_gather(count).sum(0)
        return {"nats": float(nats), "count": int(count)}

    def _restore_train_bpc(self, sums: dict[str, float] | None, rank: int) -> None:
        # rank 0 holds every rank's sums, the others none: the epoch's mean sums them across ranks
        if not sums or rank != 0:
            return
        metric = self.train_bpc
        metric.nats = torch.tensor(sums["nats"], dtype=metric.nats.dtype, device=metric.nats.device)
        metric.nats_carry = torch.zeros_like(metric.nats)
        metric.count = torch.tensor(sums["count"], dtype=metric.count.dtype, device=metric.count.device)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        theirs = list(checkpoint.get("hyper_parameters", {}).get("vocab", []))
        if theirs != list(self.vocab.symbols):
            raise ValueError(
                f"The checkpoint was trained on a different vocabulary ({len(theirs)} symbols) than this data "
                f"module's ({len(self.vocab)} symbols), so its token ids mean other bytes. Use the corpus it was "
                f"trained on, or train a new model."
            )
        weights = checkpoint.get("state_dict", {})
        if not all(torch.isfinite(w).all() for w in weights.values() if torch.is_floating_point(w)):
            raise ValueError("The checkpoint's weights are not finite (NaN or infinity): its run diverged. "
                             "Use an earlier checkpoint of that run, or train again with a lower --model.lr.")
        trainer = attached_trainer(self)
        fix_loop_state(checkpoint, trainer.accumulate_grad_batches if trainer else 1)  # before Lightning reads it
        state = checkpoint.get("charlm", {})
        hidden, world = state.get("train_hidden"), state.get("world_size", 1)
        rank, my_world = (trainer.global_rank, trainer.world_size) if trainer else (0, 1)
        if hidden is not None and world != my_world:
            rank_zero_warn("Resuming on a different number of processes: the carried hidden state restarts.")
            hidden = None
        elif hidden is not None and world > 1:
            hidden = map_hidden(lambda h: h[rank], hidden)
        self._train_hidden = hidden
        self._restored_rng = state.get("rng")
        self._validated_at_step = state.get("validated_at_step")
        self._restore_train_bpc(state.get("train_bpc"), rank)


def on_cuda(trainer: L.Trainer) -> bool:
    """Whether ``trainer`` runs on CUDA GPUs (asked before its devices are set up)."""
    return isinstance(trainer.accelerator, CUDAAccelerator)


def lr_factor(step: int, warmup: int, total_steps: Callable[[], int], schedule: str, min_ratio: float) -> float:
    """Multiplier of the peak learning rate at optimizer step ``step`` (0-based)."""
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    total = total_steps()
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

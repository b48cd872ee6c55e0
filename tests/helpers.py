"""Callbacks that let tests see inside a training run (including one in other processes, DDP) or
change it; configs name them ``tests.helpers.<Name>``, so no test module is imported by another."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import lightning as L
import torch


class RecordBatches(L.Callback):
    """Save the first ``count`` training input batches of each rank to ``<folder>/rank<r>.pt``."""

    def __init__(self, folder: str, count: int = 3) -> None:
        self.folder, self.count, self.batches = Path(folder), count, []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if len(self.batches) < self.count:
            self.batches.append(batch[0].detach().cpu().clone())

    def on_train_end(self, trainer, pl_module) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        torch.save(self.batches, self.folder / f"rank{trainer.global_rank}.pt")


class DumpMetrics(L.Callback):
    """Append ``trainer.callback_metrics`` after every validation/test run and at the end of
    training to a JSON-lines file (rank 0)."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def _dump(self, trainer) -> None:
        if trainer.global_rank == 0 and not trainer.sanity_checking:
            row = {k: float(v) for k, v in trainer.callback_metrics.items()}
            row["step"] = trainer.global_step
            with open(self.path, "a") as f:
                f.write(json.dumps(row) + "\n")

    def on_validation_end(self, trainer, pl_module) -> None:
        self._dump(trainer)

    def on_test_end(self, trainer, pl_module) -> None:
        self._dump(trainer)

    def on_train_end(self, trainer, pl_module) -> None:
        self._dump(trainer)


def read_metrics(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


class InterruptAt(L.Callback):
    """Raise KeyboardInterrupt (as Ctrl-C would) just before optimizer step ``step + 1`` begins."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            raise KeyboardInterrupt


class TouchAt(L.Callback):
    """Create the file ``path`` once training reaches ``step``, so a test knows when to act."""

    def __init__(self, step: int, path: str) -> None:
        self.step, self.path = step, Path(path)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step >= self.step and not self.path.exists():
            self.path.touch()


class SignalAt(L.Callback):
    """Send this process the signal named ``name`` (SIGINT, SIGTERM) once, at one boundary after
    optimizer step ``step``: ``batch_end`` (that step's batch), ``validation_end`` (the validation after
    it) or ``epoch_end`` (the epoch that ended with it). The handlers charlm and Lightning installed run
    as for a signal from outside, but at a chosen point."""

    def __init__(self, name: str, at: str, step: int) -> None:
        hooks = {"batch_end": "on_train_batch_end", "validation_end": "on_validation_end",
                 "epoch_end": "on_train_epoch_end"}
        self.signum, self.hook, self.step, self.sent = getattr(signal, name), hooks[at], step, False

    def _maybe_send(self, trainer, hook: str) -> None:
        if hook == self.hook and not self.sent and not trainer.sanity_checking and trainer.global_step == self.step:
            self.sent = True
            os.kill(os.getpid(), self.signum)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._maybe_send(trainer, "on_train_batch_end")

    def on_validation_end(self, trainer, pl_module) -> None:
        self._maybe_send(trainer, "on_validation_end")

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._maybe_send(trainer, "on_train_epoch_end")


class InterruptInValidation(L.Callback):
    """Raise KeyboardInterrupt (as Ctrl-C would) at the start of validation batch ``batch`` of the
    validation that runs after optimizer step ``step``."""

    def __init__(self, step: int, batch: int) -> None:
        self.step, self.batch = step, batch

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        if not trainer.sanity_checking and trainer.global_step == self.step and batch_idx == self.batch:
            raise KeyboardInterrupt


class _SendsSigintWhenFinalized:
    def __del__(self) -> None:
        os.kill(os.getpid(), signal.SIGINT)  # os.kill runs the Python handler at once: here, in __del__


class SigintInFinalizer(L.Callback):
    """Send this process SIGINT from inside an object's finalizer after optimizer step ``step``.

    A KeyboardInterrupt raised inside a finalizer (or a weakref callback) is printed as
    "Exception ignored in ..." and lost: a deterministic case of a Ctrl-C landing at an unlucky moment.
    """

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            _SendsSigintWhenFinalized()  # dropped at once, so finalized here


class RecordCheckpointIO(L.Callback):
    """Write the trainer's CheckpointIO class and the paths it saved to ``path`` (JSON) when fit
    ends or is interrupted (after InterruptCheckpoint, which comes earlier in the callback list)."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def _record(self, trainer: L.Trainer) -> None:
        io = trainer.strategy.checkpoint_io
        saved = [str(p) for p in getattr(io, "saved", [])]
        self.path.write_text(json.dumps({"class": type(io).__name__, "saved": saved}))

    def on_train_end(self, trainer, pl_module) -> None:
        self._record(trainer)

    def on_exception(self, trainer, pl_module, exception) -> None:
        self._record(trainer)


class Scramble(L.Callback):
    """When a fit resumes, add N(0, 1) noise to every weight: its validations are then worse than
    the best before the interrupt, so a "best" of the resumed part alone would be a worse checkpoint."""

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_step > 0:
            generator = torch.Generator().manual_seed(0)
            with torch.no_grad():
                for p in pl_module.parameters():
                    p.add_(torch.randn(p.shape, generator=generator).to(p))


class SaveAtBatchStart(L.Callback):
    """Save a checkpoint where Ctrl-C stops a charlm fit: at the start of a training batch."""

    def __init__(self, path: Path, step: int) -> None:
        self.path, self.step = path, step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step and not self.path.exists():
            trainer.save_checkpoint(self.path)


def assert_ranks_trained_their_own_streams(batches: Path, corpus: Path, world: int) -> None:
    """Each rank's first 3 batches (RecordBatches in ``batches``, B=16, T=32) are its own streams of
    ``corpus``'s training split (datamodules.batches.streams.TrainStreams), and no two ranks share a row."""
    from datamodules import ShakespeareDataModule
    from datamodules.batches.streams import TrainStreams

    dm = ShakespeareDataModule(path=str(corpus))
    dm.setup("fit")
    seen = []
    for rank in range(world):
        got = torch.load(batches / f"rank{rank}.pt")
        expected = [x for x, _ in TrainStreams(dm.splits["train"], 16, 32, rank=rank, world_size=world)][:3]
        assert len(got) == 3 and all(torch.equal(g, e) for g, e in zip(got, expected, strict=True))
        seen.append({tuple(row) for batch in got for row in batch.tolist()})
    assert all(seen[a].isdisjoint(seen[b]) for a in range(world) for b in range(a + 1, world))

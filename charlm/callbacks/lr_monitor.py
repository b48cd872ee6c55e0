"""Lightning's LearningRateMonitor: one curve per distinct learning rate, and no refusal to train without a logger."""

from __future__ import annotations

import re
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import LearningRateMonitor as _LightningLearningRateMonitor

# Lightning's key of a parameter group's value: lr-AdamW/pg1, lr-AdamW/pg2-momentum, lr-AdamW/pg1-weight_decay
_GROUP = re.compile(r"(?P<base>.*)/pg\d+(?P<what>-momentum|-weight_decay)?")


def merge_equal_groups(stats: dict[str, float]) -> dict[str, float]:
    """``stats`` with the groups of one optimizer that share a value logged once, under the optimizer's key
    (``lr-AdamW/pg1`` and ``lr-AdamW/pg2`` of the same rate: ``lr-AdamW``); groups that differ keep theirs."""
    merged: dict[str, float] = {}
    groups: dict[str, dict[str, float]] = {}
    for key, value in stats.items():
        match = _GROUP.fullmatch(key)
        if match:
            groups.setdefault(match["base"] + (match["what"] or ""), {})[key] = value
        else:
            merged[key] = value
    for base, members in groups.items():
        if len(set(members.values())) == 1:
            merged[base] = next(iter(members.values()))
        else:
            merged.update(members)
    return merged


class LearningRateMonitor(_LightningLearningRateMonitor):
    """Log the learning rate to every logger: ``lr-AdamW``, one curve, while the optimizer's parameter groups
    (charlm's: weight matrices with weight decay, the rest without) share it; ``lr-AdamW/pg1``, ... if they
    do not (Lightning logs one per group, so two identical curves).

    With ``--trainer.logger false`` there is nowhere to log it, so it does nothing (Lightning's own
    raises before the first step).
    """

    def _extract_stats(self, trainer: L.Trainer, interval: str) -> dict[str, float]:
        # Lightning's hook that builds what is logged (private: charlm.compat lists this override)
        return merge_equal_groups(super()._extract_stats(trainer, interval))

    def on_train_start(self, trainer: L.Trainer, *args: Any, **kwargs: Any) -> None:
        if trainer.loggers:
            super().on_train_start(trainer, *args, **kwargs)

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any, **kwargs: Any) -> None:
        if trainer.loggers:
            super().on_train_batch_start(trainer, *args, **kwargs)

    def on_train_epoch_start(self, trainer: L.Trainer, *args: Any, **kwargs: Any) -> None:
        if trainer.loggers:
            super().on_train_epoch_start(trainer, *args, **kwargs)

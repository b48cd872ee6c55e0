"""Bits per byte, summed exactly across batches and ranks (torchmetrics has no bpc metric)."""

from __future__ import annotations

import math

import torch
from torchmetrics import Metric


class BitsPerByte(Metric):
    """bpc = (summed cross-entropy in nats) / (number of predicted bytes) / ln 2.

    Sums are kept in float64 and reduced by summation across processes, so the value on N ranks
    equals the single-process value up to float64 rounding.
    """

    full_state_update = False
    higher_is_better = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("nats", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, summed_nats: torch.Tensor, count: torch.Tensor | int) -> None:
        self.nats += summed_nats.detach().to(torch.float64)
        self.count += count

    def compute(self) -> torch.Tensor:
        return self.nats / self.count.clamp(min=1) / math.log(2)

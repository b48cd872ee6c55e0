"""Bits per byte, summed exactly across batches and ranks (torchmetrics has no bpc metric)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torchmetrics import Metric

from charlm.devices import accumulator_dtype


class BitsPerByte(Metric):
    """bpc = (summed cross-entropy in nats) / (number of predicted bytes) / ln 2.

    Sums are kept in float64 and reduced by summation across processes, so the value on N ranks
    equals the single-process value up to float64 rounding. On a device without float64 (Apple's
    MPS) the sum is float32 with Kahan's compensation (``nats_carry`` holds what each addition lost),
    which stays within a few float32 roundings of the float64 sum however many batches are added
    (tests/gpu/test_mps_dtypes.py: within 1e-6 relative over 20,000 batches). The dtype follows the
    device the metric is moved to (``_apply``), so a LightningModule holding it needs nothing else.
    """

    full_state_update = False
    higher_is_better = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("nats", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("nats_carry", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, summed_nats: torch.Tensor, count: torch.Tensor | int) -> None:
        value = summed_nats.detach().to(self.nats.dtype)
        if self.nats.dtype == torch.float64:
            self.nats += value  # nats_carry stays 0: the float64 sum as it always was
        else:  # Kahan: the true sum is nats - nats_carry
            y = value - self.nats_carry
            total = self.nats + y
            self.nats_carry = (total - self.nats) - y  # the part of y that total could not hold, negated
            self.nats = total
        self.count += count

    def compute(self) -> torch.Tensor:
        return (self.nats - self.nats_carry) / self.count.clamp(min=1) / math.log(2)

    # --- the sums' dtype follows the device ------------------------------------------------------
    def use_sum_dtype(self, dtype: torch.dtype) -> None:
        """Keep the sums (and their reset values) in ``dtype`` on their current device, values kept:
        float32 -> float64 folds the compensation into the sum; float64 -> float32 keeps what float32
        rounds off as the compensation."""
        if self.nats.dtype == dtype:
            return
        exact = self.nats.to(torch.float64) - self.nats_carry.to(torch.float64) if dtype == torch.float64 else None
        if exact is not None:  # on a float64 device
            self.nats, self.nats_carry = exact, torch.zeros_like(exact)
        else:  # still on a float64 device (the move to MPS comes after): the rounding error is computable
            wide = self.nats - self.nats_carry
            self.nats = wide.to(dtype)
            self.nats_carry = (self.nats.to(wide.dtype) - wide).to(dtype)
        for key in ("nats", "nats_carry"):
            self._defaults[key] = self._defaults[key].to(dtype)

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], exclude_state: Sequence[str] = "") -> Metric:
        # Module.to / .cuda / ...: torchmetrics moves the states with fn; a float64 state would fail
        # on MPS ("Cannot convert a MPS Tensor to float64"), so switch the dtype on whichever side has float64
        dtype = accumulator_dtype(fn(torch.zeros(())).device)  # where fn sends tensors
        if dtype != torch.float64:
            self.use_sum_dtype(dtype)  # before leaving the float64 device
        this = super()._apply(fn, exclude_state)
        if dtype == torch.float64:
            self.use_sum_dtype(dtype)  # after arriving on it
        return this

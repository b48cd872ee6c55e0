"""Apple's MPS has no float64: what charlm keeps on the accelerator must be a dtype it holds.

MPS cannot run here, so the per-device choice is tested with torch.device("mps") objects, and the
float32 path it selects runs on the CPU (charlm.train.metrics.accumulator_dtype pretending the CPU is MPS).
"""

import math

import pytest
import torch

import charlm.train.metrics
from charlm.devices import accumulator_dtype, has_float64
from charlm.train.metrics import BitsPerByte

# 20,000 batches of 2,048 bytes (B=32 x T=64, the default run) is 41M predicted bytes: 2 epochs of
# enwik8's 90M-byte training split at B=128 x T=256, or 40 of Tiny Shakespeare's
BATCHES, TOKENS = 20_000, 2048
BOUND = 1e-6  # relative; bpc printed to 4 decimals (1.2345) moves by at most 1 in its last digit at 1e-4


def realistic_batch_sums(seed: int = 0) -> torch.Tensor:
    """(BATCHES,) float32: summed cross-entropy of each batch, ~0.7-3 nats per byte as training goes."""
    g = torch.Generator().manual_seed(seed)
    per_byte = torch.linspace(3.0, 0.7, BATCHES) + 0.05 * torch.randn(BATCHES, generator=g)
    return (per_byte * TOKENS).float()


def pretend_no_float64(monkeypatch) -> None:
    """Let the CPU stand in for MPS: the metric picks the dtype MPS would get."""
    monkeypatch.setattr(charlm.train.metrics, "accumulator_dtype",
                        lambda device: accumulator_dtype(torch.device("mps")))


def test_float64_only_where_the_device_has_it():
    assert not has_float64(torch.device("mps"))
    assert accumulator_dtype(torch.device("mps")) == torch.float32
    for device in ("cpu", "cuda", "cuda:1"):
        assert accumulator_dtype(torch.device(device)) == torch.float64, device


def test_the_float64_path_is_the_plain_float64_sum_bit_for_bit():
    sums = realistic_batch_sums()[:500]
    metric = BitsPerByte()
    for s in sums:
        metric.update(s, TOKENS)
    expected = torch.tensor(0.0, dtype=torch.float64)
    for s in sums:
        expected += s.double()
    assert metric.nats.dtype == torch.float64
    assert float(metric.compute()) == float(expected / (500 * TOKENS) / math.log(2))  # exact: DDP's test relies on it


def test_moving_to_a_device_without_float64_switches_the_sums_and_back(monkeypatch):
    metric = BitsPerByte()
    metric.update(torch.tensor(1000.123456789, dtype=torch.float32), 500)
    before = float(metric.compute())
    pretend_no_float64(monkeypatch)
    metric.to("cpu")  # what Lightning's model.to(mps) does to the LightningModule's metrics
    assert metric.nats.dtype == metric.nats_carry.dtype == torch.float32
    assert all(d.dtype != torch.float64 for d in metric._defaults.values())
    assert float(metric.compute()) == pytest.approx(before, rel=1e-7)
    metric.reset()  # a new epoch: the reset values are float32 as well
    assert metric.nats.dtype == torch.float32
    metric.update(torch.tensor(3.0), 2)
    monkeypatch.undo()
    metric.to("cpu")  # back on a device with float64 (e.g. .cpu() from MPS): the compensation folded in
    assert metric.nats.dtype == torch.float64 and float(metric.nats_carry) == 0.0
    assert float(metric.compute()) == pytest.approx(3.0 / 2 / math.log(2), rel=1e-7)


def test_the_float32_path_tracks_float64_over_many_batches(monkeypatch):
    sums = realistic_batch_sums()
    reference = BitsPerByte()
    pretend_no_float64(monkeypatch)
    compensated = BitsPerByte().to("cpu")
    plain32 = torch.tensor(0.0)  # what a float32 state without compensation would hold
    for s in sums:
        reference.update(s, TOKENS)
        compensated.update(s, TOKENS)
        plain32 += s
    assert compensated.nats.dtype == torch.float32
    exact = float(reference.compute())
    assert abs(float(compensated.compute()) / exact - 1) < BOUND
    # the bound is tight enough to matter: plain float32 summation misses it
    naive = float(plain32) / (BATCHES * TOKENS) / math.log(2)
    assert abs(naive / exact - 1) > BOUND, naive

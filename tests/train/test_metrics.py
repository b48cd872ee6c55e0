import math

import torch
import torch.nn.functional as F

from charlm.train.lightning_module import lr_factor
from charlm.train.metrics import BitsPerByte


def test_bpc_is_mean_nats_over_ln2_across_uneven_batches():
    torch.manual_seed(0)
    metric = BitsPerByte()
    all_logits, all_targets = torch.randn(100, 7), torch.randint(0, 7, (100,))
    for lo, hi in [(0, 13), (13, 60), (60, 100)]:  # unequal batch sizes must not bias the mean
        metric.update(F.cross_entropy(all_logits[lo:hi], all_targets[lo:hi], reduction="sum"), hi - lo)
    expected = F.cross_entropy(all_logits, all_targets).item() / math.log(2)
    assert math.isclose(metric.compute().item(), expected, rel_tol=1e-6)


def test_uniform_prediction_over_v_symbols_is_log2_v_bits():
    metric = BitsPerByte()
    metric.update(F.cross_entropy(torch.zeros(10, 65), torch.arange(10), reduction="sum"), 10)
    assert math.isclose(metric.compute().item(), math.log2(65), rel_tol=1e-6)  # float32 loss


def test_learning_rate_schedule():
    total = lambda: 1000  # noqa: E731
    assert lr_factor(0, 100, total, "cosine", 0.1) == 0.01  # warmup starts low
    assert lr_factor(99, 100, total, "cosine", 0.1) == 1.0
    assert lr_factor(100, 100, total, "cosine", 0.1) == 1.0
    assert math.isclose(lr_factor(550, 100, total, "cosine", 0.1), 0.55)  # halfway: the mean
    assert math.isclose(lr_factor(1000, 100, total, "cosine", 0.1), 0.1)
    assert lr_factor(500, 100, lambda: 1 / 0, "constant", 0.1) == 1.0  # constant never asks the total

"""Mixed precision: the recurrence stays in its weights' dtype, and bf16-mixed tracks 32-true."""

import pytest
import torch

from charlm.model import CharRNN, CharRNNConfig
from tests.cli_runs import run_in, small_run, with_callback
from tests.helpers import read_metrics


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_recurrence_is_not_autocast(cell):
    model = CharRNN(CharRNNConfig(vocab_size=20, cell=cell, num_layers=2, hidden_size=16, embedding_dim=8))
    tokens = torch.randint(0, 20, (3, 7))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, hidden = model(tokens)
    assert logits.dtype == torch.bfloat16  # the head is mixed precision
    assert all(h.dtype == torch.float32 for h in (hidden if isinstance(hidden, tuple) else [hidden]))
    ref_logits, _ = model(tokens)
    torch.testing.assert_close(logits.float(), ref_logits, atol=0.05, rtol=0.05)


@pytest.mark.slow
def test_bf16_mixed_tracks_32_true(tmp_path, shakespeare_path):
    losses = {}
    for precision in ("32-true", "bf16-mixed"):
        metrics = tmp_path / f"{precision}.jsonl"
        run_in(tmp_path / precision, small_run(shakespeare_path, "--trainer.precision", precision,
                                               "--trainer.max_steps", "300", "--trainer.val_check_interval", "300",
                                               "--trainer.limit_val_batches", "40", "--model.lr", "0.005",
                                               *with_callback("tests.helpers.DumpMetrics", path=metrics)))
        losses[precision] = read_metrics(metrics)[-1]["val/bpc"]
    assert losses["bf16-mixed"] == pytest.approx(losses["32-true"], rel=0.01), losses

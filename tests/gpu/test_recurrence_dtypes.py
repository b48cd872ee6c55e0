"""What the fused RNN runs in under each autocast, on the CPU here and on a GPU where there is one: fp16
only under CUDA's fp16 autocast (16-mixed's cuDNN fp16 RNN, with a GradScaler), else fp32; the state it
hands back is fp32 either way, and a scaled fp16 step gives finite, unscaled gradients close to fp32's."""

from __future__ import annotations

import pytest
import torch

from charlm.model import CharRNN, CharRNNConfig, hidden_tensors
from tests.conftest import CPU_AND_CUDA

pytestmark = pytest.mark.usefixtures("one_torch_thread")

F16, BF16, F32 = torch.float16, torch.bfloat16, torch.float32
EXPECTED = {("cuda", F16): F16, ("cuda", BF16): F32, ("cpu", F16): F32, ("cpu", BF16): F32}


def model_on(device: str, cell: str, weight_drop: float = 0.0) -> CharRNN:
    torch.manual_seed(0)
    config = CharRNNConfig(vocab_size=65, cell=cell, num_layers=2, hidden_size=64, embedding_dim=16,
                           weight_drop=weight_drop)
    return CharRNN(config).to(device)


def rnn_output_dtypes(model: CharRNN) -> list[torch.dtype]:
    """The dtype of each output the fused RNN gives, recorded as it runs."""
    seen: list[torch.dtype] = []

    def record(module, args, out) -> None:  # returns None: the output goes on unchanged
        seen.append(out[0].dtype)

    model.rnn.register_forward_hook(record)
    return seen


@pytest.mark.parametrize("device", CPU_AND_CUDA)
@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("autocast", [F16, BF16], ids=["fp16", "bf16"])
def test_the_recurrence_dtype_under_autocast_and_the_fp32_state(device, cell, autocast):
    model = model_on(device, cell)
    seen = rnn_output_dtypes(model)
    tokens = torch.randint(0, 65, (8, 32), device=device)
    with torch.autocast(device, dtype=autocast):
        logits, hidden = model(tokens)
        _, hidden = model(tokens, hidden)  # the next batch continues from the carried state
    assert seen == [EXPECTED[device, autocast]] * 2
    assert all(h.dtype == F32 for h in hidden_tensors(hidden))
    reference, _ = model(tokens)
    torch.testing.assert_close(logits.float(), reference, atol=0.05, rtol=0.05)


@pytest.mark.gpu
@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("weight_drop", [0.0, 0.3])
def test_a_scaled_fp16_step_gives_unscaled_gradients_close_to_fp32s(cell, weight_drop):
    """16-mixed's recipe by hand: fp16 autocast, GradScaler, unscale_ before clipping (Lightning's order)."""
    grads = {}
    for name, enabled in (("fp32", False), ("fp16", True)):
        model = model_on("cuda", cell, weight_drop).train()
        torch.manual_seed(1)  # the same weight-drop masks
        tokens = torch.randint(0, 65, (16, 64), device="cuda")
        scaler = torch.amp.GradScaler("cuda", enabled=enabled, init_scale=1024.0)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        with torch.autocast("cuda", dtype=F16, enabled=enabled):
            logits, hidden = model(tokens[:, :-1])
            loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), tokens[:, 1:].flatten())
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        grads[name] = torch.cat([p.grad.flatten() for p in model.parameters()])
        assert all(h.dtype == F32 for h in hidden_tensors(hidden))
    assert torch.isfinite(grads["fp16"]).all()
    norm = grads["fp32"].norm()
    assert (grads["fp16"] - grads["fp32"]).norm() / norm < 0.1, float((grads["fp16"] - grads["fp32"]).norm() / norm)

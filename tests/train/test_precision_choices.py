"""The GPU's precision choices, tested on the CPU as far as they go (the CUDA runs: tests/gpu/test_precisions.py).

- The recurrence's dtype under each precision: fp16 only under CUDA's fp16 autocast (16-mixed), the
  weights' dtype elsewhere (charlm.model.recurrence_dtype), and the CPU's autocast never reaches oneDNN's RNN.
- The fp16 path's plumbing with a stand-in for cuDNN: the RNN runs under autocast, the state it hands
  back in fp16 is carried between batches in fp32.
- --model.tf32: torch's switches set, reported and put back; nothing touched on a CPU.
"""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch import nn

import charlm.model
import charlm.train.lightning_module
from charlm.model import CharRNN, CharRNNConfig, hidden_tensors, recurrence_dtype
from charlm.train.lightning_module import CharLM
from charlm.train.precision import describe_fp32_math, fp32_math, use_tf32

F16, BF16, F32, F64 = torch.float16, torch.bfloat16, torch.float32, torch.float64
CELLS = ["rnn", "gru", "lstm"]


@pytest.fixture(autouse=True)
def torch_fp32_settings():
    """Every test here leaves torch's process-wide float32 settings as it found them."""
    saved = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
    yield
    torch.set_float32_matmul_precision(saved[0])
    torch.backends.cudnn.allow_tf32 = saved[1]


def tiny(cell: str) -> CharRNN:
    torch.manual_seed(0)
    return CharRNN(CharRNNConfig(vocab_size=20, cell=cell, num_layers=2, hidden_size=16, embedding_dim=8))


@pytest.mark.parametrize(("device", "weights", "autocast", "expected"), [
    ("cuda", F32, F16, F16),    # 16-mixed: cuDNN's fp16 RNN under Lightning's GradScaler
    ("cuda", F32, BF16, F32),   # bf16-mixed: cuDNN would run fp16 without a scaler, so fp32
    ("cuda", F32, None, F32),   # 32-true
    ("cuda", BF16, None, BF16),  # bf16-true: bf16 weights into cuDNN
    ("cuda", BF16, F16, BF16),  # bf16 weights are never cast down to fp16
    ("cuda", F64, F16, F64),    # 64-true weights stay what they are
    ("cpu", F32, F16, F32),     # oneDNN has no fp16 RNN (Lightning turns 16-mixed into bf16-mixed there)
    ("cpu", F32, BF16, F32),
    ("cpu", F32, None, F32),
    ("mps", F32, F16, F32),
])
def test_the_recurrence_runs_in_fp16_only_under_cudas_fp16_autocast(device, weights, autocast, expected):
    assert recurrence_dtype(device, weights, autocast) == expected


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("dtype", [F16, BF16])
def test_cpu_autocast_keeps_the_recurrence_in_fp32(cell, dtype):
    """fp16 autocast on the CPU would hand oneDNN an fp16 RNN, which it cannot build: it stays fp32."""
    model = tiny(cell)
    tokens = torch.randint(0, 20, (3, 7))
    with torch.autocast("cpu", dtype=dtype):
        logits, hidden = model(tokens)
    assert logits.dtype == dtype  # the head is mixed precision
    assert all(h.dtype == F32 for h in hidden_tensors(hidden))


class StandInRNN(nn.Module):
    """cuDNN's RNN under fp16 autocast, as far as the forward sees it: fp16 output and state. Records whether
    autocast was on inside, and the dtype of the state it was handed."""

    def __init__(self, layers: int, hidden: int, lstm: bool) -> None:
        super().__init__()
        self.weight_hh_l0 = nn.Parameter(torch.zeros(4 * hidden, hidden))
        self.layers, self.hidden, self.lstm = layers, hidden, lstm
        self.seen: list[tuple[bool, torch.dtype | None]] = []

    def forward(self, x, hx=None):
        state = None if hx is None else hidden_tensors(hx)[0].dtype
        self.seen.append((torch.is_autocast_enabled("cpu"), state))
        out = torch.zeros(*x.shape[:2], self.hidden, dtype=F16) + x.sum().to(F16) * 0  # (B, T, H), in the graph
        h = torch.ones(self.layers, x.shape[0], self.hidden, dtype=F16)
        return out, ((h, h.clone()) if self.lstm else h)


@pytest.mark.parametrize("cell", CELLS)
def test_the_fp16_path_runs_the_rnn_under_autocast_and_carries_the_state_in_fp32(cell, monkeypatch):
    model = tiny(cell)
    model.rnn = StandInRNN(2, 16, cell == "lstm")
    monkeypatch.setattr(charlm.model, "recurrence_dtype", lambda device, weights, autocast: F16)  # as on CUDA
    tokens = torch.randint(0, 20, (3, 7))
    hidden = None
    with torch.autocast("cpu", dtype=torch.bfloat16):  # stands for CUDA's fp16 autocast
        for _ in range(3):  # batch k+1 continues batch k's streams
            _, hidden = model(tokens, hidden)
            assert all(h.dtype == F32 for h in hidden_tensors(hidden)), cell
    # autocast on inside the RNN; the state it was handed is the carried fp32 one (autocast casts it there)
    assert model.rnn.seen == [(True, None), (True, F32), (True, F32)]


def test_outside_fp16_autocast_the_rnn_runs_with_autocast_off_in_its_weights_dtype():
    model = tiny("lstm")
    model.rnn = StandInRNN(2, 16, True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model(torch.randint(0, 20, (3, 7)))
    assert model.rnn.seen == [(False, None)]


def test_use_tf32_sets_both_switches_reports_them_and_puts_them_back():
    torch.set_float32_matmul_precision("highest")
    torch.backends.cudnn.allow_tf32 = True  # torch's defaults
    assert fp32_math() == {"rnn": "tf32", "matmul": "ieee"}
    restore = use_tf32(True)
    assert fp32_math() == {"rnn": "tf32", "matmul": "tf32"}
    assert torch.get_float32_matmul_precision() == "high"  # what Lightning reads: the legacy flag agrees
    assert torch.backends.cudnn.allow_tf32 is True  # readable: legacy and per-operation flags agree
    restore()
    assert fp32_math() == {"rnn": "tf32", "matmul": "ieee"}
    restore = use_tf32(False)
    assert fp32_math() == {"rnn": "ieee", "matmul": "ieee"}
    assert torch.get_float32_matmul_precision() == "highest" and torch.backends.cudnn.allow_tf32 is False
    restore()
    assert fp32_math() == {"rnn": "tf32", "matmul": "ieee"}
    assert "cuDNN RNN tf32, matmuls (the head) ieee (torch's settings" in describe_fp32_math(None)
    assert describe_fp32_math(True).endswith("(--model.tf32 true)")


class RecordFp32Math(L.Callback):
    def __init__(self) -> None:
        self.seen: list[dict[str, str]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.seen.append(fp32_math())


def tiny_fit(corpus, tf32: bool | None) -> RecordFp32Math:
    from datamodules import TextDataModule

    data = TextDataModule(path=str(corpus), batch_size=4, seq_len=16)
    model = CharLM(data.vocab_symbols, num_layers=1, hidden_size=16, embedding_dim=8, tf32=tf32)
    record = RecordFp32Math()
    trainer = L.Trainer(accelerator="cpu", max_steps=2, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        callbacks=[record])
    trainer.fit(model, datamodule=data)
    return record


@pytest.fixture
def small_corpus(tmp_path):
    corpus = tmp_path / "small.txt"
    corpus.write_bytes(b"To be, or not to be, that is the question.\n" * 200)
    return corpus


@pytest.mark.usefixtures("one_torch_thread")
def test_tf32_is_not_touched_on_a_cpu(small_corpus, capsys):
    torch.set_float32_matmul_precision("highest")
    record = tiny_fit(small_corpus, tf32=True)
    assert record.seen == [{"rnn": "tf32", "matmul": "ieee"}] * 2  # torch's, untouched
    assert "float32 math" not in capsys.readouterr().err  # the CPU run says nothing new


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize(("tf32", "during"), [(True, {"rnn": "tf32", "matmul": "tf32"}),
                                              (False, {"rnn": "ieee", "matmul": "ieee"}),
                                              (None, {"rnn": "tf32", "matmul": "ieee"})])
def test_on_cuda_the_flag_holds_for_the_run_is_reported_and_put_back(small_corpus, capsys, monkeypatch, tf32, during):
    """The CUDA branch, with the CPU standing in for a GPU (torch's switches are process-wide, on any build)."""
    monkeypatch.setattr(charlm.train.lightning_module, "on_cuda", lambda trainer: True)
    torch.set_float32_matmul_precision("highest")
    torch.backends.cudnn.allow_tf32 = True
    record = tiny_fit(small_corpus, tf32=tf32)
    assert record.seen == [during] * 2
    assert fp32_math() == {"rnn": "tf32", "matmul": "ieee"}  # after the fit: as before it
    said = f"cuDNN RNN {during['rnn']}, matmuls (the head) {during['matmul']}"
    assert said in capsys.readouterr().err


@pytest.mark.parametrize("fused", [True, False])
def test_clipping_under_the_scaler_sees_unscaled_gradients_with_a_fused_adamw_too(fused, monkeypatch):
    """16-mixed's GradScaler with a fused AdamW (charlm's on CUDA: no host sync per step): Lightning leaves its
    gradients scaled, so CharLM unscales them before clipping; a plain AdamW's Lightning unscaled already.
    The CPU's GradScaler and fused AdamW stand in for CUDA's."""
    from types import SimpleNamespace

    model = CharLM(list(range(20)), num_layers=1, hidden_size=16, embedding_dim=8, grad_clip=1.0)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    monkeypatch.setattr(model, "_trainer", SimpleNamespace(precision_plugin=SimpleNamespace(scaler=scaler)))
    optimizer = torch.optim.AdamW(model.parameters(), fused=fused)
    tokens = torch.randint(0, 20, (4, 9))
    logits, _ = model(tokens[:, :-1])
    loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten())
    true = torch.autograd.grad(loss, list(model.parameters()), retain_graph=True)
    true_norm = float(torch.linalg.vector_norm(torch.stack([g.norm() for g in true])))
    scaler.scale(loss).backward()
    if not fused:
        scaler.unscale_(optimizer)  # what Lightning's MixedPrecision does for an optimizer that does not unscale
    model.configure_gradient_clipping(optimizer)  # would raise if it unscaled a second time
    # below the clip (1.0), so untouched: the true gradients; scaled ones (x 1024) would have been clipped to 1.0
    assert true_norm < 1.0
    for grad, expected in zip((p.grad for p in model.parameters()), true, strict=True):
        torch.testing.assert_close(grad, expected)
    before = [p.detach().clone() for p in model.parameters()]
    scaler.step(optimizer)  # the fused step is handed no scale: the gradients are unscaled already
    scaler.update()
    after = list(model.parameters())
    assert all(torch.isfinite(p).all() and not torch.equal(p, b) for p, b in zip(after, before, strict=True))
    assert scaler.get_scale() == 1024.0  # no overflow: the step was taken, the scale kept

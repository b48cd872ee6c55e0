"""CUDA-graph sampling (charlm.infer.graph_sampling) against the cells and fused paths.

Tolerance: every path computes in full fp32 here (TF32 off, see ``full_fp32``), so they differ
only in summation order (cuDNN's fused kernels against torch's cell functions and cuBLAS): ~1e-6 per
step, growing a little through the recurrence, hence atol = rtol = 1e-4 on logits over 48 steps.
With TF32 left on (cuDNN's default for RNNs on Ampere and later), the fused and graph paths round
their GEMM inputs to 10-bit mantissas and differ from the cells path by ~1e-3: that is a precision
setting, not a sampling bug. The graph replays the fused path's kernels, so it matches it either way.
Sampled (not greedy) text is compared with the draw the same noise gives from one forward's logits.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import torch

import charlm.infer.graph_sampling
from charlm.checkpoint import load_checkpoint
from charlm.infer.generate import generate, make_step
from charlm.infer.graph_sampling import GraphSampler
from charlm.model import CharRNN, CharRNNConfig
from tests.conftest import CPU_AND_CUDA
from tests.gpu.runs import device_run, fit_in

pytestmark = pytest.mark.usefixtures("one_torch_thread")

STEPS, VOCAB, TOL = 48, 65, 1e-4
GREEDY_SAMPLES = json.dumps([
    {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint", "init_args": {"save_last": True}},
    {"class_path": "charlm.callbacks.SampleText", "init_args": {"temperatures": [0.0], "length": 80}},
])
MODES = {"cpu": ["cells", "fused"], "cuda": ["graph", "cells", "fused"]}  # a graph needs CUDA
EAGER = ["cells", "fused"]


@pytest.fixture
def full_fp32() -> Iterator[None]:
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def spread_model(cell: str, device: str) -> CharRNN:
    """A 2-layer model whose logits lie far apart (head x 8), so greedy text never hangs on a near-tie."""
    torch.manual_seed(0)
    model = CharRNN(CharRNNConfig(vocab_size=VOCAB, cell=cell, num_layers=2, hidden_size=64, embedding_dim=16))
    with torch.no_grad():
        model.head.weight.mul_(8)
    return model.to(device).eval()


def lively_model(cell: str, device: str) -> CharRNN:
    """spread_model with stronger input and recurrent weights: greedy text keeps changing (a random
    model's otherwise settles on one byte, which a step that dropped the state would write too)."""
    model = spread_model(cell, device)
    with torch.no_grad():
        model.embed.weight.mul_(3)
        for layer in range(model.num_layers):
            getattr(model.rnn, f"weight_hh_l{layer}").mul_(2)
    return model


@pytest.mark.parametrize("device", CPU_AND_CUDA)
@pytest.mark.parametrize("batch", [1, 64])
@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_every_step_mode_gives_the_logits_of_one_forward(device, batch, cell, full_fp32):
    model = spread_model(cell, device)
    tokens = torch.randint(0, VOCAB, (batch, STEPS), generator=torch.Generator().manual_seed(1)).to(device)
    with torch.inference_mode():
        reference, _ = model(tokens)  # (B, STEPS, V): the whole sequence in one call
        for mode in EAGER:
            step = make_step(model, mode)
            hidden = model.initial_hidden(batch, device)
            logits = []
            for t in range(STEPS):
                out, hidden = step(tokens[:, t], hidden)  # (B, V)
                logits.append(out)
            torch.testing.assert_close(torch.stack(logits, 1), reference, atol=TOL, rtol=TOL, msg=mode)


@pytest.mark.gpu
@pytest.mark.parametrize("batch", [1, 64])
@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_graph_replays_give_the_bytes_of_the_same_steps_run_eagerly(batch, cell, temperature):
    """40 sampled bytes from the graph (chunks of 16: the state crosses replays, and the last chunk runs
    past the end) equal, bit for bit, those of the same steps run without a graph, from the same seed:
    the same kernels on the same inputs. That those steps are the right draws is checked on the CPU
    (tests/infer/test_graph_sampling_draws.py); the greedy test below ties them to the other paths."""
    model = lively_model(cell, "cuda")
    prompt = torch.randint(0, VOCAB, (batch, 5), generator=torch.Generator().manual_seed(3)).cuda()
    texts = []
    with torch.inference_mode():
        logits, hidden = model(prompt)
        for capture in (True, False):
            sampler = GraphSampler(model, logits[:, -1], hidden, temperature, None, None, 16, capture=capture)
            assert (sampler.graph is not None) == capture
            texts.append(torch.stack(list(sampler.bytes(40, torch.Generator("cuda").manual_seed(4))), 1))
    assert texts[0].shape == (batch, 40) and len(set(texts[0][0].tolist())) > 3
    assert torch.equal(texts[0], texts[1])


@pytest.mark.parametrize("device", CPU_AND_CUDA)
@pytest.mark.parametrize("batch", [1, 64])
@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_every_step_mode_writes_the_same_greedy_text(device, batch, cell, full_fp32):
    model = lively_model(cell, device)
    prompt = torch.randint(0, VOCAB, (batch, 5), generator=torch.Generator().manual_seed(2)).to(device)
    texts = {mode: torch.stack(list(generate(model, prompt, 120, temperature=0.0, step_mode=mode)), 1).cpu()
             for mode in MODES[device]}  # (B, 120) each
    first = texts[MODES[device][0]]
    assert len(set(first[0].tolist())) > 3  # not a single repeated byte: a wrong step could not hide
    for mode, text in texts.items():
        assert torch.equal(text, first), mode


@pytest.mark.parametrize("device", CPU_AND_CUDA)
def test_sample_text_during_a_fit_uses_the_graph_on_a_gpu(tmp_path, shakespeare_path, device, monkeypatch):
    """SampleText's greedy sample at step 20 equals the fused path's from the checkpoint of that step."""
    graphs = []

    class CountedGraphSampler(charlm.infer.graph_sampling.GraphSampler):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            graphs.append(self.graph)

    monkeypatch.setattr(charlm.infer.graph_sampling, "GraphSampler", CountedGraphSampler)  # a spy: the real class runs
    cli = fit_in(tmp_path, device_run(shakespeare_path, device, "--trainer.max_steps", "20",
                                      "--trainer.val_check_interval", "20", "--trainer.limit_val_batches", "2",
                                      "--model.lr", "0.01", f"--trainer.callbacks={GREEDY_SAMPLES}"))
    assert (len(graphs) > 0) == (device == "cuda"), graphs  # auto: a graph on CUDA only
    assert all(graph is not None for graph in graphs)  # captured, not run eagerly
    rows = [json.loads(line) for line in next(tmp_path.rglob("samples.jsonl")).read_text().splitlines()]
    assert [(r["global_step"], r["temperature"]) for r in rows] == [(20, 0.0)]

    loaded = load_checkpoint(tmp_path / cli.trainer.checkpoint_callback.last_model_path, device)  # relative to the run
    prompt = torch.as_tensor(loaded.vocab.encode(b"\n"), dtype=torch.long, device=device)[None]  # (1, 1)
    tokens = torch.cat(list(generate(loaded.model.eval(), prompt, 80, temperature=0.0, step_mode="fused")))
    assert rows[0]["sample"] == loaded.vocab.decode(tokens.tolist()).decode("utf-8", errors="replace")

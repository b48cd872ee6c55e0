"""charlm.infer.graph_sampling on the CPU: the Gumbel-max draw and the chunked steps, run eagerly (no capture).

The capture itself needs CUDA (tests/gpu/test_graph_sampling.py); everything it replays is here.
"""

from __future__ import annotations

import math

import pytest
import torch

from charlm.infer.generate import generate
from charlm.infer.graph_sampling import CHUNK, GraphSampler, chunk_steps, draw, fill_gumbel
from charlm.model import CharRNN, CharRNNConfig

EULER_GAMMA = 0.5772156649


def test_gumbel_noise_has_the_gumbel_mean_and_variance():
    noise = fill_gumbel(torch.empty(200_000), torch.Generator().manual_seed(0))
    assert torch.isfinite(noise).all()
    assert noise.mean().item() == pytest.approx(EULER_GAMMA, abs=0.01)
    assert noise.var().item() == pytest.approx(math.pi**2 / 6, abs=0.03)


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
def test_gumbel_max_draws_follow_the_tempered_softmax(temperature):
    logits = torch.tensor([2.0, 1.0, 0.0, -1.0])
    rows = 60_000
    noise = fill_gumbel(torch.empty(rows, 4), torch.Generator().manual_seed(1))
    drawn = draw(logits.expand(rows, -1), noise, temperature, None, None)
    freq = torch.bincount(drawn, minlength=4) / rows
    torch.testing.assert_close(freq, (logits / temperature).softmax(-1), atol=0.01, rtol=0)


@pytest.mark.parametrize(("top_k", "top_p", "support"), [(2, None, {0, 1}), (None, 0.8, {0, 1}), (3, 0.5, {0})])
def test_gumbel_max_draws_keep_to_top_k_and_top_p(top_k, top_p, support):
    logits = torch.tensor([0.5, 0.3, 0.15, 0.05]).log().expand(20_000, -1)
    noise = fill_gumbel(torch.empty(20_000, 4), torch.Generator().manual_seed(2))
    assert set(draw(logits, noise, 1.0, top_k, top_p).tolist()) == support


def test_no_noise_or_zero_temperature_is_argmax():
    logits = torch.randn(64, 30, generator=torch.Generator().manual_seed(3))
    noise = fill_gumbel(torch.empty(64, 30), torch.Generator().manual_seed(4))
    assert torch.equal(draw(logits, None, 1.0, None, None), logits.argmax(-1))
    assert torch.equal(draw(logits, noise, 0.0, None, None), logits.argmax(-1))
    huge = torch.tensor([[1e3, 0.0]])  # a tiny temperature: the largest logit must not become inf (inf - inf)
    assert draw(huge, torch.tensor([[0.0, 5.0]]), 1e-30, None, None).item() == 0
    assert not torch.equal(draw(logits, noise, 1.0, None, None), logits.argmax(-1))  # the noise does act


def test_chunk_steps_shrink_for_short_texts_and_big_batches():
    assert chunk_steps(1, 65, 1000) == CHUNK
    assert chunk_steps(1, 65, 5) == 5
    assert 1 <= chunk_steps(100_000, 256, 1000) < CHUNK  # the noise buffer stays under its cap


def small_model() -> CharRNN:
    torch.manual_seed(0)
    model = CharRNN(CharRNNConfig(vocab_size=12, num_layers=2, hidden_size=16, embedding_dim=8)).eval()
    with torch.no_grad():
        model.head.weight.mul_(8)  # logits far apart: greedy text never hangs on a near-tie
    return model


@torch.inference_mode()
def sampler_bytes(model: CharRNN, prompt: torch.Tensor, length: int, temperature: float, chunk: int,
                  seed: int = 0) -> torch.Tensor:
    """The chunked sampler's bytes (N, length), run eagerly."""
    logits, hidden = model(prompt)
    sampler = GraphSampler(model, logits[:, -1], hidden, temperature, None, None, chunk, capture=False)
    out = list(sampler.bytes(length, torch.Generator().manual_seed(seed)))  # kept: no buffer is reused
    assert all(t.device.type == "cpu" and t.shape == (prompt.shape[0],) for t in out)
    return torch.stack(out, 1)


@pytest.mark.parametrize("chunk", [1, 4, 7])
def test_chunked_greedy_steps_write_the_cells_text(chunk):
    model, prompt = small_model(), torch.randint(0, 12, (3, 5), generator=torch.Generator().manual_seed(5))
    cells = torch.stack(list(generate(model, prompt, 30, temperature=0.0, step_mode="cells")), 1)
    assert len(set(cells[0].tolist())) > 2  # not one repeated byte: a step that lost its state would show
    assert torch.equal(sampler_bytes(model, prompt, 30, 0.0, chunk), cells)  # 30: not a multiple of 4 or 7


def test_chunked_sampling_is_seeded_and_every_byte_follows_from_the_ones_before():
    model, prompt = small_model(), torch.randint(0, 12, (4, 3), generator=torch.Generator().manual_seed(6))
    a, b, c = (sampler_bytes(model, prompt, 25, 1.0, 8, seed) for seed in (1, 1, 2))
    assert a.shape == (4, 25) and torch.equal(a, b) and not torch.equal(a, c)
    # every byte is the Gumbel-max draw from the logits of the text before it, read in one forward,
    # with the noise the generator gave chunk by chunk: the carried state is the state of the bytes written
    generator = torch.Generator().manual_seed(1)
    noise = torch.cat([fill_gumbel(torch.empty(8, 4, 12), generator) for _ in range(4)])[:25]  # (25, N, V)
    with torch.inference_mode():
        logits, _ = model(torch.cat([prompt, a], 1))  # (N, P + 25, V)
    expected = [draw(logits[:, prompt.shape[1] - 1 + t], noise[t], 1.0, None, None) for t in range(25)]
    assert torch.equal(torch.stack(expected, 1), a)

import pytest
import torch

from charlm.infer.engine import StopAt
from charlm.infer.generate import Utf8Stream, generate
from charlm.infer.logits import check_sampling_args, filter_logits, sample_next
from charlm.model import CharRNN, CharRNNConfig


def test_temperature_zero_is_argmax_and_tiny_temperature_tends_to_it():
    torch.manual_seed(0)
    logits = torch.randn(64, 30)
    assert torch.equal(sample_next(logits, temperature=0), logits.argmax(-1))
    g = torch.Generator().manual_seed(0)
    assert torch.equal(sample_next(logits, temperature=1e-4, generator=g), logits.argmax(-1))


def test_top_k_restricts_the_support_exactly():
    logits = torch.tensor([[3.0, 2.0, 1.0, 0.5, 0.0, -1.0]]).expand(20_000, -1)
    g = torch.Generator().manual_seed(0)
    drawn = set(sample_next(logits, temperature=2.0, top_k=3, generator=g).tolist())
    assert drawn == {0, 1, 2}


@pytest.mark.parametrize(("top_p", "support"), [(0.5, {0}), (0.8, {0, 1}), (0.81, {0, 1, 2}), (1.0, {0, 1, 2, 3})])
def test_top_p_keeps_the_smallest_set_reaching_p(top_p, support):
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    logits = probs.log()[None].expand(20_000, -1)
    g = torch.Generator().manual_seed(0)
    assert set(sample_next(logits, top_p=top_p, generator=g).tolist()) == support
    kept = torch.isfinite(filter_logits(logits[:1], top_p=top_p))[0]
    assert set(torch.nonzero(kept).flatten().tolist()) == support


def test_sampling_follows_the_distribution():
    probs = torch.tensor([0.6, 0.3, 0.1])
    g = torch.Generator().manual_seed(0)
    draws = sample_next(probs.log()[None].expand(50_000, -1), generator=g)
    freq = torch.bincount(draws, minlength=3) / len(draws)
    torch.testing.assert_close(freq, probs, atol=0.01, rtol=0)


@pytest.mark.parametrize(("kwargs", "flag"), [({"temperature": -0.1}, "--temperature"), ({"top_k": 0}, "--top_k"),
                                              ({"top_p": 0.0}, "--top_p"), ({"top_p": 1.01}, "--top_p")])
def test_bad_sampling_arguments(kwargs, flag):
    args = {"temperature": 1.0, "top_k": None, "top_p": None, **kwargs}
    with pytest.raises(ValueError, match=flag):
        check_sampling_args(**args)


def test_generation_is_seeded_and_matches_a_full_forward():
    torch.manual_seed(0)
    model = CharRNN(CharRNNConfig(vocab_size=12, num_layers=2, hidden_size=16, embedding_dim=8)).eval()
    prompt = torch.randint(0, 12, (3, 5))

    def run(seed: int) -> torch.Tensor:  # (3, 40) sampled ids
        return torch.stack(list(generate(model, prompt, 40, 1.0, generator=torch.Generator().manual_seed(seed))), 1)

    a, b, c = run(1), run(1), run(2)
    assert a.shape == (3, 40) and torch.equal(a, b) and not torch.equal(a, c)
    # greedy decoding step by step equals argmax of one forward over prompt + generated text
    greedy = torch.stack(list(generate(model, prompt, 10, temperature=0)), 1)
    logits, _ = model(torch.cat([prompt, greedy], 1))
    assert torch.equal(logits[:, prompt.shape[1] - 1 : -1].argmax(-1), greedy)


def test_utf8_stream_never_splits_a_character():
    text = "naïve café — 東京 🎭"
    stream, out = Utf8Stream(), []
    for byte in text.encode():
        piece = stream.feed(bytes([byte]))
        out.append(piece)
        assert "\ufffd" not in piece
    assert "".join(out) + stream.finish() == text
    # invalid bytes become U+FFFD, exactly as decoding the whole at once would
    bad = b"ok \xe6\x9d x \xff"
    stream = Utf8Stream()
    assert "".join(stream.feed(bytes([b])) for b in bad) + stream.finish() == bad.decode("utf-8", errors="replace")


def test_stop_strings_end_a_sample_and_are_never_printed():
    stop = StopAt(["\n\n", "END"])
    printed = "".join(stop.add(c) for c in "ROMEO:\nHello EN there\n\nJULIET:") + stop.flush()
    assert printed == stop.text == "ROMEO:\nHello EN there" and stop.done

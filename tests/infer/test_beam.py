"""Beam search (charlm.infer.beam, ``charlm sample --beam N``): greedy at width 1, never worse than greedy,
exact once the beam holds every sequence; its scores are the model's own log-probabilities."""

from __future__ import annotations

import itertools
import re

import pytest
import torch

from charlm.infer.beam import MAX_BEAM, beam_memory, beam_search
from charlm.infer.generate import generate
from charlm.model import CharRNN, CharRNNConfig
from tests.cli_runs import assert_one_line, run_python
from tests.conftest import REPO

OLD_CKPT = REPO / "tests" / "fixtures" / "lstm_1x16_v0.ckpt"  # 58 symbols, 1 x 16 LSTM
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_model(seed: int, vocab_size: int = 5, cell: str = "gru") -> CharRNN:
    """A random network with weights large enough that its distributions are far from uniform."""
    torch.manual_seed(seed)
    model = CharRNN(CharRNNConfig(vocab_size=vocab_size, cell=cell, num_layers=2, hidden_size=16, embedding_dim=8))
    with torch.no_grad():
        for weight in model.parameters():
            weight.mul_(4)
    return model.eval()


@torch.no_grad()
def log_probs(model: CharRNN, prompt: torch.Tensor, sequences: torch.Tensor) -> torch.Tensor:
    """The model's total log-probability of each continuation (S, L) after ``prompt`` (P,), by one
    forward pass over prompt + continuation (not the beam's own bookkeeping)."""
    tokens = torch.cat([prompt.expand(len(sequences), -1), sequences], dim=1)  # (S, P + L)
    logits, _ = model(tokens[:, :-1])  # (S, P + L - 1, V)
    steps = logits[:, len(prompt) - 1 :].log_softmax(-1)  # (S, L, V): the predictions of the continuation
    return steps.gather(-1, sequences[..., None]).squeeze(-1).double().sum(-1)  # (S,)


def greedy(model: CharRNN, prompt: torch.Tensor, length: int) -> list[int]:
    return [int(t) for t in generate(model, prompt[None], length, temperature=0.0)]


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_beam_1_is_greedy(cell):
    model, prompt = tiny_model(0, vocab_size=7, cell=cell), torch.tensor([1, 2, 3])
    (best,) = beam_search(model, prompt, 40, 1)
    assert best.ids == greedy(model, prompt, 40)


def test_the_best_beam_is_at_least_as_likely_as_greedy_and_scored_as_the_model_scores_it():
    strictly_better = 0
    for seed in range(6):
        model, prompt = tiny_model(seed), torch.tensor([0, 4])
        beams = beam_search(model, prompt, 12, 16)
        ids = torch.tensor([b.ids for b in beams])  # (16, 12)
        truth = log_probs(model, prompt, ids)
        assert [b.logprob for b in beams] == pytest.approx(truth.tolist(), abs=1e-4)  # its own scores are right
        assert truth.tolist() == sorted(truth.tolist(), reverse=True)  # best first
        assert len({tuple(b.ids) for b in beams}) == 16  # distinct
        greedy_logprob = log_probs(model, prompt, torch.tensor([greedy(model, prompt, 12)])).item()
        assert truth[0].item() >= greedy_logprob - 1e-9
        strictly_better += truth[0].item() > greedy_logprob + 1e-6
    assert strictly_better  # on these models greedy is not already the best, so the test can tell them apart


@pytest.mark.parametrize("seed", range(3))
def test_a_beam_holding_every_sequence_finds_the_true_best(seed):
    vocab, length = 3, 4
    model, prompt = tiny_model(seed, vocab_size=vocab), torch.tensor([2, 0, 1])
    every = torch.tensor(list(itertools.product(range(vocab), repeat=length)))  # (81, 4): all |V|^L sequences
    truth = log_probs(model, prompt, every)
    order = truth.argsort(descending=True)
    for width in (vocab**length, vocab ** (length - 1)):  # all of them; and enough, as beam_search says
        beams = beam_search(model, prompt, length, width)
        assert beams[0].ids == every[order[0]].tolist()
        assert beams[0].logprob == pytest.approx(truth[order[0]].item(), abs=1e-4)
    beams = beam_search(model, prompt, length, vocab**length + 5)  # wider than there are sequences: all of them
    assert [b.ids for b in beams] == every[order].tolist()


def test_the_command_prints_the_beams_with_their_bits_per_character(charlm_main):
    base = ["sample", "--ckpt_path", OLD_CKPT, "--prompt", "ROMEO:", "--length", "30"]
    greedy_text = charlm_main(*base, "--temperature", "0").stdout
    one = charlm_main(*base, "--beam", "1")
    assert one.returncode == 0, one.stderr
    header, text = one.stdout.split("\n", 1)
    assert re.fullmatch(r"===== beam 1/1: \d+\.\d{4} bpc =====", header)
    assert text == greedy_text
    three = charlm_main(*base, "--beam", "4", "--num_samples", "3")
    parts = re.split(r"^===== beam (\d)/3: (\d+\.\d{4}) bpc =====\n", three.stdout, flags=re.M)
    assert parts[0] == "" and parts[1::3] == ["1", "2", "3"]
    bpcs, texts = [float(b) for b in parts[2::3]], parts[3::3]
    assert bpcs == sorted(bpcs) and len(set(texts)) == 3 and all(t.startswith("ROMEO:") for t in texts)
    assert all(len(t) == len("ROMEO:") + 30 + 1 for t in texts)  # fixed length, and a newline


def test_bad_beams_are_one_line(charlm_main):
    base = ["sample", "--ckpt_path", OLD_CKPT, "--prompt", "ROMEO:", "--length", "30"]
    cases = {
        ("--beam", "0"): ["--beam must be a positive integer (1 = greedy), got 0"],
        ("--beam", str(MAX_BEAM + 1)): ["--beam 10,001", "bound of 10,000"],
        ("--beam", "2", "--num_samples", "3"): ["--num_samples 3 is more than --beam 2"],
        ("--beam", "2", "--temperature", "0.5"): ["--temperature does not apply", "--beam"],
        ("--beam", "2", "--temperature", "0.8"): ["--temperature does not apply"],  # sampling's default, given
        ("--beam", "2", "--top_k", "3", "--top_p", "0.5"): ["--top_k, --top_p do not apply"],
        ("--beam", "2", "--stop", "x"): ["--stop"],
        ("--beam", "10000", "--length", str(10**12)): ["--beam 10,000 with --length", "GiB", "smaller --beam"],
    }
    for extra, words in cases.items():
        assert_one_line(charlm_main(*base, *extra), *words)


# Run in a fresh process: the growth of its peak RSS over what loading took is what the command's
# beam search (write_beams: the search, the walk back, the printed text) costs. The peak is this
# process's own (VmHWM), not getrusage's ru_maxrss, which also counts the parent's size at the fork.
MEASURE = """
import dataclasses, io, re, sys, torch
from pathlib import Path
from charlm.infer.beam import beam_memory
from charlm.checkpoint import load_checkpoint
from charlm.infer.engine import Settings, write_beams
def peak():
    return int(re.search(r"VmHWM:\\s+(\\d+) kB", Path("/proc/self/status").read_text())[1]) * 1024
torch.set_num_threads(1)
loaded = load_checkpoint(sys.argv[1], "cpu")
ids = loaded.vocab.encode(b"ROMEO:")
settings = Settings(length=int(sys.argv[3]), beam=int(sys.argv[2]), num_samples=int(sys.argv[4]))
warm_up = dataclasses.replace(settings, length=3)
write_beams(loaded, b"ROMEO:", ids, warm_up, False, io.StringIO())  # torch's first-call setup
before = peak()
write_beams(loaded, b"ROMEO:", ids, settings, False, io.StringIO())
print((peak() - before) / beam_memory(settings.beam, settings.length, loaded.model, len(ids), settings.num_samples))
"""


@pytest.mark.parametrize(("beam", "length", "num_samples"), [(2000, 1500, 3), (100, 10000, 100)])
def test_the_memory_check_expects_what_a_beam_search_takes(beam, length, num_samples):
    # the history of every beam (2000 x 1500: 14 MiB); the printed continuations (100 of 10,000 bytes)
    out = run_python("-c", MEASURE, str(OLD_CKPT), str(beam), str(length), str(num_samples))
    assert out.returncode == 0, out.stderr
    assert 1 / 1.5 < float(out.stdout) < 1.5  # measured / estimated


def test_the_estimate_counts_history_state_and_prompt():
    model = tiny_model(0, vocab_size=65, cell="lstm")
    one = beam_memory(10, 1000, model)
    assert beam_memory(10, 2000, model) - one == 10 * 1000 * 5 + 1000 * 10  # int32 parent + uint8 token; one text
    assert beam_memory(20, 1000, model) - one > 10 * 1000 * 5  # and a wider state and more scores
    assert beam_memory(10, 1000, model, prompt_len=1001) > one

"""The network and its shape (CharRNNConfig): what it computes, what it refuses, and that a checkpoint
written before CharRNNConfig existed still loads and gives the numbers it gave then."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from charlm.checkpoint import load_checkpoint
from charlm.model import CharRNN, CharRNNConfig, detach_hidden
from charlm.train.lightning_module import CharLM
from tests.cli_runs import run_in
from tests.conftest import REPO

FIXTURES = REPO / "tests" / "fixtures"
OLD_CKPT = FIXTURES / "lstm_1x16_v0.ckpt"  # written by the code of b452096 (see tests/fixtures/README.md)


def tiny(**shape) -> CharRNN:
    return CharRNN(CharRNNConfig(**shape))


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_shapes_and_carried_state_equals_one_long_pass(cell):
    torch.manual_seed(0)
    model = tiny(vocab_size=11, cell=cell, num_layers=2, hidden_size=16, embedding_dim=8).eval()
    tokens = torch.randint(0, 11, (3, 20))
    logits, _ = model(tokens)
    assert logits.shape == (3, 20, 11)
    # two windows with the hidden state carried equal one pass over both
    first, h = model(tokens[:, :12])
    second, _ = model(tokens[:, 12:], detach_hidden(h))
    torch.testing.assert_close(torch.cat([first, second], dim=1), logits)
    zeros = model.initial_hidden(3)
    torch.testing.assert_close(model(tokens, zeros)[0], logits)


def test_rnn_cell_is_the_seed_formula():
    """h_t = tanh(W_xh x_t + W_hh h_{t-1} + b), y_t = W_hy h_t + b_y, with x_t the embedded byte."""
    torch.manual_seed(0)
    model = tiny(vocab_size=5, cell="rnn", num_layers=1, hidden_size=4, embedding_dim=3).eval()
    tokens = torch.tensor([[1, 4, 2, 0]])
    rnn = model.rnn
    h = torch.zeros(4)
    expected = []
    for t in tokens[0]:
        x = model.embed.weight[t]
        h = torch.tanh(rnn.weight_ih_l0 @ x + rnn.weight_hh_l0 @ h + rnn.bias_ih_l0 + rnn.bias_hh_l0)
        expected.append(model.head.weight @ h + model.head.bias)
    torch.testing.assert_close(model(tokens)[0][0], torch.stack(expected))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"hidden_size": 0}, "hidden_size must be a positive integer"),
        ({"num_layers": -1}, "num_layers must be a positive integer"),
        ({"dropout": 1.5}, r"dropout must lie in \[0, 1\)"),
        ({"weight_drop": 1.0}, r"weight_drop must lie in \[0, 1\)"),
        ({"cell": "transformer"}, "cell must be one of"),
    ],
)
def test_nonsense_hyperparameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CharRNNConfig(vocab_size=10, **kwargs)
    with pytest.raises(ValueError, match=f"--model.{message}"):  # CharLM names the flag
        CharLM(vocab=range(10), **kwargs)


def test_the_config_is_what_charlm_builds_and_checkpoints_store():
    lit = CharLM(vocab=[10, 97, 98], cell="gru", num_layers=3, hidden_size=8, embedding_dim=4, dropout=0.2)
    config = lit.model.config
    assert config == CharRNNConfig(vocab_size=3, cell="gru", num_layers=3, hidden_size=8, embedding_dim=4, dropout=0.2)
    assert (lit.model.rnn.mode, lit.model.rnn.num_layers, lit.model.rnn.hidden_size) == ("GRU", 3, 8)
    assert lit.model.embed.weight.shape == (3, 4) and lit.model.drop.p == 0.2
    # the flat hyperparameters (LightningCLI's --ckpt_path rebuilds CharLM from them) give the same config
    assert CharRNNConfig.from_hparams(lit.hparams, vocab_size=3) == config
    stored = config.to_dict()  # what on_save_checkpoint writes as checkpoint["model_config"]
    assert all(type(v) in (str, int, float) for v in stored.values())  # loads under weights_only=True
    assert CharRNNConfig(**stored) == config
    assert [f.name for f in dataclasses.fields(CharRNNConfig)] == list(stored)
    default = CharLM(vocab=[10, 97])  # CharLM's defaults are the config's, and its hyperparameters hold them all
    assert default.model.config == CharRNNConfig(vocab_size=2)
    for hparams in (default.hparams, default.hparams_initial):  # in checkpoints, and what loggers record
        assert {k: hparams[k] for k in config.to_hparams()} == CharRNNConfig(vocab_size=2).to_hparams()


# --- a checkpoint in the format written before CharRNNConfig (flat hyper_parameters, no model_config) ------
# Its numbers, as the code of b452096 computed them (tests/fixtures/README.md says how the file was made):
OLD_LOGITS = [-0.12191103398799896, 0.10453638434410095, -0.0505606010556221, 0.11179542541503906,
              -0.03957081213593483, 0.025742344558238983]  # logits[0, -1, :6] after b"ROMEO:"
OLD_LOGITS_SUM = 1.7972389806527644  # all logits after b"ROMEO:", summed in float64
OLD_SAMPLE = "ROMEO:GS:SBMmM,j-vGElek.rij\n;UOptu.f,x\n\n?B,WOg\n"  # sample --length 40 --seed 7 --prompt ROMEO:
OLD_VAL_BPC, OLD_TEST_BPC = 5.8292761037024, 5.82356744362524  # validate / test on shakespeare_head.txt


def test_an_old_checkpoint_loads_and_gives_the_same_logits():
    assert "model_config" not in torch.load(OLD_CKPT, weights_only=True)  # it is an old one
    loaded = load_checkpoint(OLD_CKPT)
    assert loaded.model.config == CharRNNConfig(vocab_size=58, cell="lstm", num_layers=1, hidden_size=16,
                                                embedding_dim=8, dropout=0.1)
    tokens = torch.as_tensor(loaded.vocab.encode(b"ROMEO:"), dtype=torch.long)[None]  # (1, 6)
    with torch.no_grad():
        logits, _ = loaded.model(tokens)  # (1, 6, 58)
    assert logits[0, -1, :6].tolist() == pytest.approx(OLD_LOGITS, rel=1e-6, abs=1e-7)
    assert logits.double().sum().item() == pytest.approx(OLD_LOGITS_SUM, rel=1e-6, abs=1e-6)


def test_an_old_checkpoint_samples_as_it_did(charlm_main):
    out = charlm_main("sample", "--ckpt_path", OLD_CKPT, "--length", "40", "--seed", "7", "--prompt", "ROMEO:")
    assert out.returncode == 0, out.stderr
    assert out.stdout == OLD_SAMPLE


@pytest.mark.parametrize(("cmd", "metric", "expected"), [("validate", "val/bpc", OLD_VAL_BPC),
                                                         ("test", "test/bpc", OLD_TEST_BPC)])
def test_an_old_checkpoint_evaluates_as_it_did(tmp_path, cmd, metric, expected):
    cli = run_in(tmp_path, [cmd, "--data", "TextDataModule", "--data.path", str(FIXTURES / "shakespeare_head.txt"),
                            "--data.cache_dir", str(tmp_path / "cache"), "--data.eval_batch_size", "2",
                            "--data.seq_len", "16", "--trainer.enable_progress_bar", "false",
                            "--ckpt_path", str(OLD_CKPT)])
    assert float(cli.trainer.callback_metrics[metric]) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_step_by_step_equals_the_fused_forward(cell):
    torch.manual_seed(0)
    model = tiny(vocab_size=9, cell=cell, num_layers=3, hidden_size=12, embedding_dim=5, dropout=0.5).eval()
    tokens = torch.randint(0, 9, (4, 15))
    fused, fused_hidden = model(tokens)
    hidden, steps = None, []
    for t in range(tokens.shape[1]):
        logits, hidden = model.step(tokens[:, t], hidden)
        steps.append(logits)
    torch.testing.assert_close(torch.stack(steps, 1), fused, rtol=1e-5, atol=1e-5)
    for got, want in zip(hidden if cell == "lstm" else [hidden], fused_hidden if cell == "lstm" else [fused_hidden],
                         strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)

import pytest
import torch

from charlm.model import CharRNN, detach_hidden


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_shapes_and_carried_state_equals_one_long_pass(cell):
    torch.manual_seed(0)
    model = CharRNN(vocab_size=11, cell=cell, num_layers=2, hidden_size=16, embedding_dim=8).eval()
    tokens = torch.randint(0, 11, (3, 20))
    logits, hidden = model(tokens)
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
    model = CharRNN(vocab_size=5, cell="rnn", num_layers=1, hidden_size=4, embedding_dim=3).eval()
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
        ({"cell": "transformer"}, "cell must be one of"),
    ],
)
def test_nonsense_hyperparameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CharRNN(vocab_size=10, **kwargs)


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_step_by_step_equals_the_fused_forward(cell):
    torch.manual_seed(0)
    model = CharRNN(vocab_size=9, cell=cell, num_layers=3, hidden_size=12, embedding_dim=5, dropout=0.5).eval()
    tokens = torch.randint(0, 9, (4, 15))
    fused, fused_hidden = model(tokens)
    hidden, steps = None, []
    for t in range(tokens.shape[1]):
        logits, hidden = model.step(tokens[:, t], hidden)
        steps.append(logits)
    torch.testing.assert_close(torch.stack(steps, 1), fused, rtol=1e-5, atol=1e-5)
    for got, want in zip(hidden if cell == "lstm" else [hidden], fused_hidden if cell == "lstm" else [fused_hidden]):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)

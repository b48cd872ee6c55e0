"""CharRNN's weight_drop (AWD-LSTM's DropConnect on the recurrent weights): what it drops, when, and
that the parameters, the checkpoint keys and the eval-mode model stay those of a plain CharRNN."""

from __future__ import annotations

import pytest
import torch

from charlm.model import CharRNN, CharRNNConfig

P = 0.4


def twin_models(cell: str) -> tuple[CharRNN, CharRNN]:
    """The same weights, with and without weight_drop (no other dropout, so only the masks draw)."""
    shape = {"vocab_size": 11, "cell": cell, "num_layers": 2, "hidden_size": 12, "embedding_dim": 5}
    torch.manual_seed(0)
    dropped = CharRNN(CharRNNConfig(**shape, weight_drop=P))
    plain = CharRNN(CharRNNConfig(**shape))
    plain.load_state_dict(dropped.state_dict())  # the same keys: weight_drop adds no parameter
    return dropped, plain


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_training_drops_recurrent_weights_with_one_mask_per_call(cell):
    dropped, plain = twin_models(cell)
    tokens = torch.randint(0, 11, (3, 9), generator=torch.Generator().manual_seed(1))
    torch.manual_seed(5)
    out, hidden = dropped.train()(tokens)
    # the same masks drawn by hand, in layer order: weight_hh_l{k} x mask / (1 - p), input weights untouched
    torch.manual_seed(5)
    with torch.no_grad():
        for k in range(2):
            weight = getattr(plain.rnn, f"weight_hh_l{k}")
            weight.copy_(torch.nn.functional.dropout(weight, P))
    expected, expected_hidden = plain.eval()(tokens)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(hidden, expected_hidden)
    again, _ = dropped(tokens)
    assert not torch.allclose(again, out)  # a new mask each call


def test_the_parameters_are_untouched_and_get_the_gradient():
    dropped, _ = twin_models("lstm")
    before = {k: v.clone() for k, v in dropped.state_dict().items()}
    tokens = torch.randint(0, 11, (3, 9), generator=torch.Generator().manual_seed(2))
    out, _ = dropped.train()(tokens)
    out.sum().backward()
    assert all(torch.equal(before[k], v) for k, v in dropped.state_dict().items())
    grad = dropped.rnn.weight_hh_l1.grad
    assert grad is not None and grad.abs().sum() > 0
    zero_share = (grad == 0).float().mean().item()  # the dropped entries get no gradient this step
    assert 0.25 < zero_share < 0.55


def test_eval_mode_is_the_plain_model():
    dropped, plain = twin_models("gru")
    tokens = torch.randint(0, 11, (2, 7), generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(dropped.eval()(tokens)[0], plain.eval()(tokens)[0], rtol=0, atol=0)

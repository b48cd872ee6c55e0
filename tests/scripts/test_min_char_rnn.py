"""The NumPy RNN: its gradients check out, and it is the oracle for charlm's `rnn` cell."""

import importlib.util
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from charlm.model import CharRNN, CharRNNConfig
from tests.conftest import REPO

spec = importlib.util.spec_from_file_location("min_char_rnn", REPO / "scripts" / "min_char_rnn.py")
mcr = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mcr)


@pytest.fixture
def window(shakespeare_path):
    data = shakespeare_path.read_bytes()
    symbols = sorted(set(data))
    ids = [symbols.index(b) for b in data[5000:5041]]
    return len(symbols), ids[:-1], ids[1:]


def test_gradients_match_finite_differences(window):
    V, inputs, targets = window
    p = mcr.init_params(V, 16, seed=1)
    p = {k: v * 10 for k, v in p.items()}  # larger weights: gradients well away from zero
    assert mcr.gradcheck(p, inputs, targets, np.zeros((16, 1)), checks=10) < 1e-6


def test_charlm_rnn_cell_equals_the_numpy_oracle(window):
    V, inputs, targets = window
    H = 24
    rng = np.random.default_rng(3)
    p = {k: v * 20 + rng.standard_normal(v.shape) * 0.05 for k, v in mcr.init_params(V, H, seed=2).items()}
    hprev = rng.standard_normal((H, 1)) * 0.5  # a carried state, not zeros
    loss_np, grads_np, h_np = mcr.loss_and_grads(p, inputs, targets, hprev)

    # one-hot input = an identity embedding feeding W_xh; torch's two RNN biases sum to b_h
    model = CharRNN(CharRNNConfig(vocab_size=V, cell="rnn", num_layers=1, hidden_size=H, embedding_dim=V)).double()
    rnn = model.rnn
    with torch.no_grad():
        model.embed.weight.copy_(torch.eye(V, dtype=torch.float64))
        rnn.weight_ih_l0.copy_(torch.from_numpy(p["Wxh"]))
        rnn.weight_hh_l0.copy_(torch.from_numpy(p["Whh"]))
        rnn.bias_ih_l0.copy_(torch.from_numpy(p["bh"][:, 0]))
        rnn.bias_hh_l0.zero_()
        model.head.weight.copy_(torch.from_numpy(p["Why"]))
        model.head.bias.copy_(torch.from_numpy(p["by"][:, 0]))
    logits, h = model(torch.tensor([inputs]), torch.from_numpy(hprev.T.copy())[None])  # hidden (1, 1, H)
    loss = F.cross_entropy(logits[0], torch.tensor(targets), reduction="sum")
    loss.backward()

    assert loss.item() == pytest.approx(loss_np, rel=1e-12)
    np.testing.assert_allclose(h[0, 0].detach().numpy(), h_np[:, 0], rtol=1e-12, atol=1e-14)
    for name, grad in [("Wxh", rnn.weight_ih_l0.grad), ("Whh", rnn.weight_hh_l0.grad), ("bh", rnn.bias_ih_l0.grad),
                       ("Why", model.head.weight.grad), ("by", model.head.bias.grad)]:
        np.testing.assert_allclose(grad.numpy().reshape(grads_np[name].shape), grads_np[name], rtol=1e-9, atol=1e-12,
                                   err_msg=name)


def test_train_save_generate_and_gradcheck_from_the_command_line(tmp_path, shakespeare_path):
    script = str(REPO / "scripts" / "min_char_rnn.py")
    ckpt = tmp_path / "model.npz"
    out = subprocess.run([sys.executable, script, "--data", str(shakespeare_path), "--iterations", "300",
                          "--every", "100", "--hidden_size", "32", "--checkpoint", str(ckpt)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    losses = [float(line.split("loss ")[1].split()[0]) for line in out.stdout.splitlines() if line.startswith("iter ")]
    assert len(losses) == 4 and losses[-1] < losses[0]
    gen = subprocess.run([sys.executable, script, "--generate", "--checkpoint", str(ckpt), "--length", "100"],
                         capture_output=True, text=True, timeout=60)
    assert gen.returncode == 0 and len(gen.stdout) >= 100
    check = subprocess.run([sys.executable, script, "--data", str(shakespeare_path), "--gradcheck",
                            "--hidden_size", "8"], capture_output=True, text=True, timeout=120)
    assert check.returncode == 0 and "gradient check OK" in check.stdout
    bad = subprocess.run([sys.executable, script, "--generate", "--checkpoint", str(tmp_path / "none.npz")],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--generate needs --checkpoint" in bad.stderr

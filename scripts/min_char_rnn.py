"""A character-level vanilla RNN from scratch in NumPy, after Karpathy's min-char-rnn.py.

    python scripts/min_char_rnn.py --data input.txt --iterations 20000 --checkpoint model.npz
    python scripts/min_char_rnn.py --generate --checkpoint model.npz --length 500
    python scripts/min_char_rnn.py --data input.txt --gradcheck

The model, with x_t the one-hot byte at step t:
    h_t = tanh(W_xh x_t + W_hh h_{t-1} + b_h)
    y_t = W_hy h_t + b_y,   p_t = softmax(y_t),   loss = sum_t -log p_t[target_t]
trained with backpropagation through time over windows of ``seq_len`` bytes (the hidden state
carried from window to window), Adagrad, and gradients clipped to [-5, 5]. Symbols are the bytes
that occur in the data, in ascending order, as in charlm. It is also the oracle for charlm's
``rnn`` cell (tests/scripts/test_min_char_rnn.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

Params = dict[str, np.ndarray]  # Wxh (H, V), Whh (H, H), Why (V, H), bh (H, 1), by (V, 1)


def init_params(vocab_size: int, hidden_size: int, seed: int = 0, dtype=np.float64) -> Params:
    """Small random weights (N(0, 0.01^2)) and zero biases, as in min-char-rnn."""
    rng = np.random.default_rng(seed)
    return {
        "Wxh": (rng.standard_normal((hidden_size, vocab_size)) * 0.01).astype(dtype),
        "Whh": (rng.standard_normal((hidden_size, hidden_size)) * 0.01).astype(dtype),
        "Why": (rng.standard_normal((vocab_size, hidden_size)) * 0.01).astype(dtype),
        "bh": np.zeros((hidden_size, 1), dtype=dtype),
        "by": np.zeros((vocab_size, 1), dtype=dtype),
    }


def loss_and_grads(p: Params, inputs: list[int], targets: list[int],
                   hprev: np.ndarray) -> tuple[float, Params, np.ndarray]:
    """Forward and backward through one window. hprev (H, 1) -> loss, gradients, last hidden state."""
    V = p["Wxh"].shape[1]
    xs, hs, ps = {}, {-1: np.copy(hprev)}, {}
    loss = 0.0
    for t, (i, j) in enumerate(zip(inputs, targets, strict=True)):
        xs[t] = np.zeros((V, 1), dtype=hprev.dtype)
        xs[t][i] = 1
        hs[t] = np.tanh(p["Wxh"] @ xs[t] + p["Whh"] @ hs[t - 1] + p["bh"])  # (H, 1)
        y = p["Why"] @ hs[t] + p["by"]  # (V, 1) unnormalised log-probabilities
        y = y - y.max()  # stable softmax
        ps[t] = np.exp(y) / np.exp(y).sum()
        loss -= float(np.log(ps[t][j, 0]))
    grads = {k: np.zeros_like(v) for k, v in p.items()}
    dh_next = np.zeros_like(hprev)
    for t in reversed(range(len(inputs))):
        dy = np.copy(ps[t])
        dy[targets[t]] -= 1  # d loss / d y for softmax + cross-entropy
        grads["Why"] += dy @ hs[t].T
        grads["by"] += dy
        dh = p["Why"].T @ dy + dh_next
        draw = (1 - hs[t] ** 2) * dh  # back through tanh
        grads["bh"] += draw
        grads["Wxh"] += draw @ xs[t].T
        grads["Whh"] += draw @ hs[t - 1].T
        dh_next = p["Whh"].T @ draw
    return loss, grads, hs[len(inputs) - 1]


def clip(grads: Params, limit: float = 5.0) -> Params:
    """Clip every gradient entry to [-limit, limit] (against exploding gradients)."""
    return {k: np.clip(g, -limit, limit) for k, g in grads.items()}


def sample(p: Params, h: np.ndarray, seed_ix: int, n: int, rng: np.random.Generator,
           temperature: float = 1.0) -> list[int]:
    """Draw ``n`` byte ids, starting from hidden state h (H, 1) and the byte id ``seed_ix``."""
    V = p["Wxh"].shape[1]
    x = np.zeros((V, 1))
    x[seed_ix] = 1
    out = []
    for _ in range(n):
        h = np.tanh(p["Wxh"] @ x + p["Whh"] @ h + p["bh"])
        y = (p["Why"] @ h + p["by"]).ravel()
        if temperature == 0:
            ix = int(y.argmax())
        else:
            z = np.exp((y - y.max()) / temperature)
            ix = int(rng.choice(V, p=z / z.sum()))
        x = np.zeros((V, 1))
        x[ix] = 1
        out.append(ix)
    return out


def gradcheck(p: Params, inputs: list[int], targets: list[int], hprev: np.ndarray, checks: int = 20,
              delta: float = 1e-5, seed: int = 0) -> float:
    """Compare analytic gradients with centred differences at random entries; return the worst
    relative error. The denominator has a floor of 1e-3, so entries whose gradient is nearly zero
    are judged by their absolute difference (finite differences cannot resolve them better);
    correct backprop gives ~1e-7 or less in float64, a wrong one ~1e-1."""
    rng = np.random.default_rng(seed)
    _, grads, _ = loss_and_grads(p, inputs, targets, hprev)
    worst = 0.0
    for name, param in p.items():
        for _ in range(checks):
            ix = tuple(int(rng.integers(s)) for s in param.shape)
            old = param[ix]
            param[ix] = old + delta
            plus, _, _ = loss_and_grads(p, inputs, targets, hprev)
            param[ix] = old - delta
            minus, _, _ = loss_and_grads(p, inputs, targets, hprev)
            param[ix] = old
            numeric, analytic = (plus - minus) / (2 * delta), grads[name][ix]
            error = abs(numeric - analytic) / max(abs(numeric) + abs(analytic), 1e-3)
            print(f"{name}{list(ix)}: numerical {numeric:+.8e}  analytic {analytic:+.8e}  relative error {error:.2e}")
            worst = max(worst, error)
    return worst


def save(path: Path, p: Params, symbols: list[int]) -> None:
    """Write the weights and the byte vocabulary to ``path`` (.npz), replacing it whole."""
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, symbols=np.array(symbols, dtype=np.uint8), **p)
    tmp.replace(path)


def load(path: Path) -> tuple[Params, list[int]]:
    """The weights and the byte vocabulary that :func:`save` wrote."""
    with np.load(path) as f:
        return {k: f[k] for k in ("Wxh", "Whh", "Why", "bh", "by")}, [int(s) for s in f["symbols"]]


def train(data: bytes, hidden_size: int, seq_len: int, lr: float, iterations: int, every: int, seed: int,
          checkpoint: Path | None) -> Params:
    """Adagrad on consecutive ``seq_len``-byte windows of ``data``, printing the smoothed loss and a
    sample every ``every`` iterations (and saving to ``checkpoint``, if given); the trained weights."""
    symbols = sorted(set(data))
    index = {b: i for i, b in enumerate(symbols)}
    ids = [index[b] for b in data]
    V = len(symbols)
    print(f"data has {len(data):,} bytes, {V} unique.")
    p = init_params(V, hidden_size, seed)
    memory = {k: np.zeros_like(v) for k, v in p.items()}  # Adagrad's running sums of squares
    smooth_loss = -np.log(1.0 / V) * seq_len  # loss at iteration 0
    rng = np.random.default_rng(seed)
    pos, hprev = 0, np.zeros((hidden_size, 1))
    for n in range(iterations + 1):
        if pos + seq_len + 1 > len(ids) or n == 0:
            hprev, pos = np.zeros((hidden_size, 1)), 0  # back to the start of the data
        inputs, targets = ids[pos : pos + seq_len], ids[pos + 1 : pos + seq_len + 1]
        if n % every == 0:
            text = bytes(symbols[i] for i in sample(p, hprev, inputs[0], 200, rng)).decode("utf-8", errors="replace")
            print(f"----\n{text}\n----")
        loss, grads, hprev = loss_and_grads(p, inputs, targets, hprev)
        smooth_loss = smooth_loss * 0.999 + loss * 0.001
        if n % every == 0:
            print(f"iter {n}, loss {smooth_loss:.4f} ({smooth_loss / seq_len / np.log(2):.3f} bits per byte)")
        for k, g in clip(grads).items():
            memory[k] += g * g
            p[k] -= lr * g / np.sqrt(memory[k] + 1e-8)  # Adagrad
        pos += seq_len
    if checkpoint is not None:
        save(checkpoint, p, symbols)
        print(f"saved {checkpoint}")
    return p


def main(argv: list[str] | None = None) -> None:
    """The command line: train, --generate from a checkpoint, or --gradcheck."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="text file to train on (or to draw a gradcheck window from)")
    parser.add_argument("--hidden_size", type=int, default=100, help="hidden units")
    parser.add_argument("--seq_len", type=int, default=25, help="steps to unroll the RNN for")
    parser.add_argument("--lr", type=float, default=1e-1, help="Adagrad learning rate")
    parser.add_argument("--iterations", type=int, default=10_000, help="training windows")
    parser.add_argument("--every", type=int, default=1000, help="print loss and a sample every N iterations")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--checkpoint", type=Path, help="save the model here after training / load it for --generate")
    parser.add_argument("--generate", action="store_true", help="sample from --checkpoint instead of training")
    parser.add_argument("--length", type=int, default=500, help="bytes to generate")
    parser.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (0 = argmax)")
    parser.add_argument("--gradcheck", action="store_true", help="compare analytic and numerical gradients")
    args = parser.parse_args(argv)

    if args.generate:
        if args.checkpoint is None or not args.checkpoint.is_file():
            parser.error(f"--generate needs --checkpoint pointing at a saved model (got {args.checkpoint})")
        p, symbols = load(args.checkpoint)
        rng = np.random.default_rng(args.seed)
        ids = sample(p, np.zeros((p["Whh"].shape[0], 1)), 0, args.length, rng, args.temperature)
        sys.stdout.write(bytes(symbols[i] for i in ids).decode("utf-8", errors="replace") + "\n")
        return
    if args.data is None or not args.data.is_file():
        parser.error(f"--data must name an existing text file (got {args.data})")
    data = args.data.read_bytes()
    if len(data) < args.seq_len + 1:
        parser.error(f"--data {args.data} has {len(data)} bytes; it needs at least --seq_len + 1 = {args.seq_len + 1}")
    if args.gradcheck:
        symbols = sorted(set(data))
        ids = [symbols.index(b) for b in data[: args.seq_len + 1]]
        p = init_params(len(symbols), args.hidden_size, args.seed)
        worst = gradcheck(p, ids[:-1], ids[1:], np.zeros((args.hidden_size, 1)), seed=args.seed)
        verdict = "OK" if worst < 1e-5 else "FAILED"
        print(f"gradient check {verdict}: worst relative error {worst:.2e}")
        sys.exit(0 if verdict == "OK" else 1)
    train(data, args.hidden_size, args.seq_len, args.lr, args.iterations, args.every, args.seed, args.checkpoint)


if __name__ == "__main__":
    main()

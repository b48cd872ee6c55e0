"""The network alone: byte embedding -> stacked RNN / GRU / LSTM -> linear head over the vocabulary.

No Lightning here; the loss lives in the LightningModule, so sampling and inspection reuse
``forward``. The ``rnn`` cell is the seed's ``h_t = tanh(W_xh x_t + W_hh h_{t-1} + b)`` (torch's
``nn.RNN`` keeps two bias vectors whose sum is ``b``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Literal, Union

import torch
from torch import nn

from charlm.model_size import check_model_size, parameter_count

Cell = Literal["rnn", "gru", "lstm"]
Hidden = Union[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]  # (layers, B, H), or (h, c) for LSTM

_RNNS = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}


class CharRNN(nn.Module):
    def __init__(
        self,
        vocab_size: int,
        cell: Cell = "lstm",
        num_layers: int = 2,
        hidden_size: int = 256,
        embedding_dim: int = 64,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if cell not in _RNNS:
            raise ValueError(f"cell must be one of {sorted(_RNNS)}, got {cell!r}")
        for name, value in (("vocab_size", vocab_size), ("num_layers", num_layers),
                            ("hidden_size", hidden_size), ("embedding_dim", embedding_dim)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout!r}")
        # before allocating: a typo like hidden_size 100000 would otherwise exhaust the memory
        check_model_size(parameter_count(cell, vocab_size, num_layers, hidden_size, embedding_dim),
                         f"hidden_size {hidden_size} x num_layers {num_layers} ({cell}, embedding_dim {embedding_dim})")
        self.cell, self.num_layers, self.hidden_size = cell, num_layers, hidden_size
        self.embed = nn.Embedding(vocab_size, embedding_dim)
        # dropout between stacked layers (cuDNN applies it), and once more before the head
        self.rnn = _RNNS[cell](embedding_dim, hidden_size, num_layers, batch_first=True,
                               dropout=dropout if num_layers > 1 else 0.0)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size, vocab_size)

    def forward(self, tokens: torch.Tensor, hidden: Hidden | None = None) -> tuple[torch.Tensor, Hidden]:
        """tokens (B, T) int64 -> logits (B, T, V) and the hidden state after the last step."""
        x = self.embed(tokens)  # (B, T, E)
        # The recurrence runs in its weights' dtype, never under autocast: autocast would hand
        # cuDNN's LSTM fp16 inputs even under bf16 (and without a loss scaler). So with
        # bf16-mixed / 16-mixed only the embedding and the output head are mixed-precision;
        # with bf16-true the weights, and so the recurrence, are bf16.
        dtype = self.rnn.weight_hh_l0.dtype
        with torch.autocast(x.device.type, enabled=False):
            out, hidden = self.rnn(x.to(dtype), _cast(hidden, dtype))  # (B, T, H)
        return self.head(self.drop(out)), hidden

    def step(self, tokens: torch.Tensor, hidden: Hidden | None = None) -> tuple[torch.Tensor, Hidden]:
        """One time step through the same weights, layer by layer: tokens (N,) -> logits (N, V).

        Equal to ``forward`` on a (N, 1) input, but on a CPU ~8x faster for one stream (3x512
        LSTM: 0.8 ms against 6.3 ms), since the fused RNN's per-call overhead dwarfs one step's work.
        Inference only: no dropout between layers.
        """
        if hidden is None:
            hidden = self.initial_hidden(tokens.shape[0], tokens.device)
        # the recurrence in its weights' dtype, as in forward (bf16-true / 64-true weights; a float32
        # hidden state from initial_hidden or a caller would not multiply with them)
        dtype = self.rnn.weight_hh_l0.dtype
        hidden = _cast(hidden, dtype)
        x = self.embed(tokens).to(dtype)  # (N, E)
        hs, cs = [], []
        for layer in range(self.num_layers):
            weights = [getattr(self.rnn, f"{name}_l{layer}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
            if self.cell == "lstm":
                h, c = torch.lstm_cell(x, (hidden[0][layer], hidden[1][layer]), *weights)  # (N, H) each
                cs.append(c)
            elif self.cell == "gru":
                h = torch.gru_cell(x, hidden[layer], *weights)
            else:
                h = torch.rnn_tanh_cell(x, hidden[layer], *weights)
            hs.append(h)
            x = h
        new_hidden = (torch.stack(hs), torch.stack(cs)) if self.cell == "lstm" else torch.stack(hs)  # (L, N, H)
        return self.head(x), new_hidden

    def initial_hidden(self, batch_size: int, device: torch.device | str = "cpu") -> Hidden:
        zeros = torch.zeros(self.num_layers, batch_size, self.hidden_size, device=device)
        return (zeros, zeros.clone()) if self.cell == "lstm" else zeros


# The hidden state is a tensor (rnn, gru) or an (h, c) tuple (lstm), each (layers, B, H). These two
# functions are the only places that tell the two apart (word_language_model's repackage_hidden).
def map_hidden(fn: Callable[[torch.Tensor], torch.Tensor], hidden: Hidden) -> Hidden:
    """``fn`` applied to every tensor of the state, which keeps its form (tensor or (h, c))."""
    return tuple(fn(h) for h in hidden) if isinstance(hidden, tuple) else fn(hidden)


def hidden_tensors(hidden: Hidden) -> tuple[torch.Tensor, ...]:
    """The state's tensors: (h,) for rnn and gru, (h, c) for lstm."""
    return hidden if isinstance(hidden, tuple) else (hidden,)


def detach_hidden(hidden: Hidden) -> Hidden:
    """Cut the graph at the window edge: truncated BPTT carries the values, not the gradients."""
    return map_hidden(torch.Tensor.detach, hidden)


def hidden_batch_size(hidden: Hidden) -> int:
    return hidden_tensors(hidden)[0].shape[1]


def hidden_device(hidden: Hidden) -> torch.device:
    return hidden_tensors(hidden)[0].device


def _cast(hidden: Hidden | None, dtype: torch.dtype) -> Hidden | None:
    return None if hidden is None else map_hidden(lambda h: h.to(dtype), hidden)


@contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Put ``model`` in eval mode for a callback's look at it, then restore the mode it was in."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)

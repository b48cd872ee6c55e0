"""The network alone: byte embedding -> stacked RNN / GRU / LSTM -> linear head over the vocabulary.

No Lightning here; the loss lives in the LightningModule, so sampling and inspection reuse
``forward``. The ``rnn`` cell is the seed's ``h_t = tanh(W_xh x_t + W_hh h_{t-1} + b)`` (torch's
``nn.RNN`` keeps two bias vectors whose sum is ``b``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

import torch
from torch import nn

from charlm.devices import available_memory, gib

Cell = Literal["rnn", "gru", "lstm"]
MAX_PARAMETERS = 2**31  # torch's and cuDNN's kernels index some tensors with 32-bit integers
GATES = {"rnn": 1, "gru": 3, "lstm": 4}  # weight blocks per layer: tanh cell, GRU (r, z, n), LSTM (i, f, g, o)
Hidden = torch.Tensor | tuple[torch.Tensor, torch.Tensor]  # (layers, B, H), or (h, c) for LSTM

_RNNS = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}


@dataclass(frozen=True, kw_only=True)
class CharRNNConfig:
    """The network's shape: everything needed to rebuild a CharRNN (nanoGPT's GPTConfig).

    Checkpoints store it as a plain dict (``checkpoint["model_config"] = config.to_dict()``) and every
    loader rebuilds the network from it. CharLM takes the fields but vocab_size as ``**shape``;
    jsonargparse reads their types, defaults and help (the Args below) from here, so they are the
    ``--model.cell`` ... flags and the flat ``model:`` keys of a config file.

    Args:
        vocab_size: symbols the model reads and predicts (the corpus's vocabulary).
        cell: recurrent cell: rnn (tanh), gru or lstm.
        num_layers: stacked recurrent layers.
        hidden_size: units per recurrent layer.
        embedding_dim: size of the learned byte embedding fed to the first layer.
        dropout: dropout between stacked layers and before the output head, in [0, 1).
        weight_drop: DropConnect on the recurrent weights (AWD-LSTM's weight drop), in [0, 1): while
            training, each batch zeroes this share of every layer's hidden-to-hidden weights (the same
            mask at every time step), a regulariser for small corpora that dropout between layers
            alone does not stop overfitting. 0 = off.
    """

    vocab_size: int
    cell: Cell = "lstm"
    num_layers: int = 2
    hidden_size: int = 256
    embedding_dim: int = 64
    dropout: float = 0.0
    weight_drop: float = 0.0

    def __post_init__(self) -> None:
        # each message starts with the field's name: CharLM prefixes "--model." to name the flag
        if self.cell not in _RNNS:
            raise ValueError(f"cell must be one of {sorted(_RNNS)}, got {self.cell!r}")
        for name in ("vocab_size", "num_layers", "hidden_size", "embedding_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("dropout", "weight_drop"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must lie in [0, 1), got {getattr(self, name)!r}")

    @classmethod
    def from_hparams(cls, hparams: Mapping[str, Any], vocab_size: int) -> CharRNNConfig:
        """The config from CharLM's hyperparameters (or the CLI's --model values), which hold the shape
        as flat keys beside the optimiser's; checkpoints written before ``model_config`` existed hold
        only these. The inverse of ``to_hparams``."""
        names = [f.name for f in fields(cls) if f.name != "vocab_size"]
        return cls(vocab_size=vocab_size, **{name: hparams[name] for name in names if name in hparams})

    def to_hparams(self) -> dict[str, Any]:
        """The shape as CharLM's arguments (--model.cell, ...): every field but vocab_size, which CharLM
        takes from its vocabulary."""
        return {name: value for name, value in self.to_dict().items() if name != "vocab_size"}

    def to_dict(self) -> dict[str, Any]:
        """Builtins only (str, int, float): a checkpoint holding it loads with ``weights_only=True``."""
        return asdict(self)

    def describe(self) -> str:
        """The sizes, for messages: "hidden_size 256 x num_layers 2 (lstm, embedding_dim 64)"."""
        return (f"hidden_size {self.hidden_size} x num_layers {self.num_layers} "
                f"({self.cell}, embedding_dim {self.embedding_dim})")


def parameter_count(config: CharRNNConfig) -> int:
    """Parameters of ``CharRNN(config)``.

    embedding V x E; layer l: W_ih (gH x in_l), W_hh (gH x H), b_ih and b_hh (gH) with in_0 = E,
    in_l = H; head H x V + V.
    """
    g, h, v = GATES[config.cell], config.hidden_size, config.vocab_size
    first = g * h * (config.embedding_dim + h + 2)
    others = (config.num_layers - 1) * g * h * (2 * h + 2)
    return v * config.embedding_dim + first + others + h * v + v


def check_model_size(count: int, what: str, bytes_per_parameter: int = 4, use: str = "for its float32 weights",
                     memory: int | None = None, memory_name: str = "memory") -> None:
    """Refuse a model of ``count`` parameters over MAX_PARAMETERS, or whose ``bytes_per_parameter``
    do not fit in ``memory`` bytes (default: the RAM available now). ``what`` names the sizes asked for."""
    memory = available_memory() if memory is None else memory
    need = count * bytes_per_parameter
    too_many = count > MAX_PARAMETERS
    too_big = memory is not None and need > memory
    if not (too_many or too_big):
        return
    why = (f"more parameters than charlm's limit of 2^31 = {MAX_PARAMETERS:,}" if too_many
           else f"more than the {gib(memory)} of {memory_name} available here")
    raise ValueError(f"{what} has {count:,} parameters, which need {gib(need)} {use}: {why}. "
                     f"Choose a smaller model.")



class CharRNN(nn.Module):
    """Byte embedding -> stacked RNN / GRU / LSTM -> linear head, built from a CharRNNConfig."""

    def __init__(self, config: CharRNNConfig) -> None:
        super().__init__()
        # before allocating: a typo like hidden_size 100000 would otherwise exhaust the memory
        check_model_size(parameter_count(config), config.describe())
        self.config = config
        self.cell, self.num_layers, self.hidden_size = config.cell, config.num_layers, config.hidden_size
        self.embed = nn.Embedding(config.vocab_size, config.embedding_dim)
        # dropout between stacked layers (cuDNN applies it), and once more before the head
        self.rnn = _RNNS[config.cell](config.embedding_dim, config.hidden_size, config.num_layers, batch_first=True,
                                      dropout=config.dropout if config.num_layers > 1 else 0.0)
        self.drop = nn.Dropout(config.dropout)
        self._recurrent_weights = [f"weight_hh_l{k}" for k in range(config.num_layers)]  # what weight_drop drops
        self.head = nn.Linear(config.hidden_size, config.vocab_size)

    def forward(self, tokens: torch.Tensor, hidden: Hidden | None = None) -> tuple[torch.Tensor, Hidden]:
        """tokens (B, T) int64 -> logits (B, T, V) and the hidden state after the last step."""
        x = self.embed(tokens)  # (B, T, E)
        dtype = self.rnn.weight_hh_l0.dtype
        device = x.device.type
        if recurrence_dtype(device, dtype, _autocast_dtype(device)) != dtype:
            # 16-mixed on CUDA: autocast hands cuDNN fp16 inputs and weights, and Lightning's GradScaler
            # guards the gradients. The state comes back fp16; the carried one stays in the weights' dtype
            out, hidden = self._recurrence(x, hidden)  # (B, T, H) fp16
            return self.head(self.drop(out)), _cast(hidden, dtype)
        # Everywhere else the recurrence runs in its weights' dtype, outside autocast: under bf16 autocast
        # cuDNN's RNN would run in fp16 with no loss scaler. So with bf16-mixed only the embedding and the
        # head are mixed-precision; with bf16-true the weights, and so the recurrence, are bf16.
        with torch.autocast(device, enabled=False):
            out, hidden = self._recurrence(x.to(dtype), _cast(hidden, dtype))  # (B, T, H)
        return self.head(self.drop(out)), hidden

    def _recurrence(self, x: torch.Tensor, hidden: Hidden | None) -> tuple[torch.Tensor, Hidden]:
        """The fused RNN; while training with weight_drop, on hidden-to-hidden weights with a DropConnect
        mask drawn once per call (the parameters themselves are untouched and get the gradient)."""
        p = self.config.weight_drop
        if not (self.training and p > 0):
            return self.rnn(x, hidden)
        dropped = {name: nn.functional.dropout(getattr(self.rnn, name), p) for name in self._recurrent_weights}
        return torch.func.functional_call(self.rnn, dropped, (x, hidden))

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
            names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
            weights = [getattr(self.rnn, f"{name}_l{layer}") for name in names]
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
    """B, the number of streams the state carries."""
    return hidden_tensors(hidden)[0].shape[1]


def hidden_device(hidden: Hidden) -> torch.device:
    """Where the state's tensors are."""
    return hidden_tensors(hidden)[0].device


def recurrence_dtype(device_type: str, weight_dtype: torch.dtype, autocast_dtype: torch.dtype | None) -> torch.dtype:
    """The dtype the fused RNN runs in on ``device_type``, given its weights' dtype and the autocast dtype in
    force there (None: autocast off).

    fp16 only under CUDA's fp16 autocast (Lightning's 16-mixed), where cuDNN's fp16 RNN runs with fp32
    master weights and Lightning's GradScaler: the standard AMP recipe, in which a step whose scaled
    gradients overflow is skipped and the scale lowered. Else the weights' dtype: under bf16 autocast cuDNN
    would run the RNN in fp16 anyway, with no scaler (bf16-mixed keeps it in fp32); a CPU (oneDNN) has no
    fp16 RNN, and Lightning turns 16-mixed into bf16-mixed there.
    """
    if device_type == "cuda" and autocast_dtype == torch.float16 and weight_dtype == torch.float32:
        return torch.float16
    return weight_dtype


def _autocast_dtype(device_type: str) -> torch.dtype | None:
    return torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else None


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

"""One step of a CharRNN as a standalone graph, for runtimes without charlm: ONNX or TorchScript.

The graph is ``CharRNN.step`` (the cell-by-cell step sampling uses), with tensors in and out::

    token (N,) int64, h (L, N, H) [, c (L, N, H)]  ->  logits (N, V), h_out (L, N, H) [, c_out (L, N, H)]

``c`` / ``c_out`` only for an LSTM; N (the batch) is dynamic; the state starts as zeros. The file's
metadata (ONNX ``metadata_props``, TorchScript ``_extra_files``) holds the byte of each token id, the
network's shape and this signature (``metadata``), so a sampler needs nothing but the file.

The ONNX graph comes from torch's own exporter (``dynamo=True``, the default since torch 2.9, which
needs onnxscript); the deprecated TorchScript-based one is avoided. Both formats export ``step``, not
the fused ``nn.LSTM`` forward: a single step needs no loop or sequence axis in the graph.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from charlm.checkpoint import LoadedModel
from charlm.devices import gib
from charlm.model import CharRNN, CharRNNConfig, parameter_count
from charlm.version import __version__
from datamodules.io.vocab import Vocabulary

ONNX_LIMIT = 2**31 - 1  # protobuf's limit on one serialized message: an .onnx file with its weights inside
EXAMPLE_BATCH = 2  # torch.export specializes a dimension whose example size is 0 or 1, so not 1


def state_names(cell: str) -> tuple[str, ...]:
    """The state's inputs: ("h",) for rnn and gru, ("h", "c") for lstm; outputs add "_out"."""
    return ("h", "c") if cell == "lstm" else ("h",)


class Step(nn.Module):
    """``model.step`` with a tensor for each input and output: (token, h) -> (logits, h_out)."""

    def __init__(self, model: CharRNN) -> None:
        super().__init__()
        self.model = model

    def forward(self, token: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.step(token, h)  # (N, V), (L, N, H)


class LSTMStep(Step):
    """An LSTM's step: (token, h, c) -> (logits, h_out, c_out); the exporters take no (h, c) tuple."""

    def forward(self, token: torch.Tensor, h: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, ...]:
        logits, (h, c) = self.model.step(token, (h, c))
        return logits, h, c


def step_module(model: CharRNN) -> Step:
    """The graph to export: on the CPU, in eval mode, weights that need no gradient (or a TorchScript
    step's outputs would require grad, and `.numpy()` on them fail)."""
    return (LSTMStep if model.cell == "lstm" else Step)(model.float().cpu()).eval().requires_grad_(False)


def example_inputs(config: CharRNNConfig) -> tuple[torch.Tensor, ...]:
    """Inputs to trace with: EXAMPLE_BATCH streams. Distinct tensors for h and c: torch.export
    merges inputs that are one tensor object, and the graph would then read h where c is meant."""
    state = [torch.zeros(config.num_layers, EXAMPLE_BATCH, config.hidden_size) for _ in state_names(config.cell)]
    return (torch.zeros(EXAMPLE_BATCH, dtype=torch.long), *state)


def signature(config: CharRNNConfig) -> str:
    """The graph's inputs and outputs in words (also the ``charlm.signature`` metadata)."""
    shape = f"({config.num_layers}, N, {config.hidden_size}) float32"
    names = state_names(config.cell)
    ins = ", ".join(f"{name} {shape}" for name in names)
    outs = ", ".join(f"{name}_out" for name in names)
    return (f"token (N,) int64 (a token id), {ins} (zeros at the start) -> logits (N, {config.vocab_size}) "
            f"float32 (unnormalised log-probabilities of the next token), {outs} (the state to pass next)")


def metadata(config: CharRNNConfig, vocab: Vocabulary, checkpoint: str | Path) -> dict[str, str]:
    """What a sampler needs besides the graph, as strings."""
    return {
        "charlm.vocab": json.dumps(list(vocab.symbols)),  # JSON list: token id i stands for byte vocab[i]
        "charlm.model_config": json.dumps(config.to_dict()),  # JSON object: CharRNNConfig
        "charlm.signature": signature(config),  # the graph's inputs and outputs, in words
        "charlm.version": __version__,  # the charlm that wrote the file
        "charlm.checkpoint": Path(checkpoint).name,  # the checkpoint it was exported from
    }


def onnx_bytes(model: CharRNN, meta: dict[str, str]) -> tuple[bytes, int]:
    """The step as a self-contained ONNX model (weights inside), with ``meta`` as its metadata_props,
    and the default-domain opset it needs from its runtime."""
    names = state_names(model.cell)
    batch = torch.export.Dim("batch", min=1)
    dynamic = ({0: batch}, *[{1: batch} for _ in names])  # token (N,), each state (L, N, H)
    with _quiet_exporter():
        program = torch.onnx.export(
            step_module(model), example_inputs(model.config), dynamo=True, dynamic_shapes=dynamic,
            input_names=["token", *names], output_names=["logits", *[f"{n}_out" for n in names]],
            external_data=False, verbose=False)
    proto = program.model_proto
    proto.doc_string = f"charlm: one step of a character-level {model.cell.upper()}: {signature(model.config)}"
    for key, value in meta.items():  # after any the exporter wrote
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    opset = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    return proto.SerializeToString(), opset


def torchscript_bytes(model: CharRNN, meta: dict[str, str]) -> bytes:
    """The step as a TorchScript archive (torch.jit.trace), with ``meta`` as its ``_extra_files``."""
    with warnings.catch_warnings():  # torch deprecates TorchScript (for torch.export); it still runs in libtorch
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated", category=FutureWarning)
        traced = torch.jit.trace(step_module(model), example_inputs(model.config))
        buffer = io.BytesIO()
        torch.jit.save(traced, buffer, _extra_files=meta)
    return buffer.getvalue()


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence what torch.onnx.export says on success: its progress lines (verbose=False), "torchvision
    is not installed" log lines and the FutureWarnings of its own calls; errors still raise."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            # token's and the states' batch axes are one Dim: the exporter says it names it once
            warnings.filterwarnings("ignore", message="# The axis name: batch will not be used")
            yield
    finally:
        logger.setLevel(level)


NEEDS = {"onnx": ("onnx", "onnxscript"), "torchscript": ()}  # modules beyond torch; onnxruntime only runs the file
INSTALL = 'pip install -e ".[export]"'


def check_extra(format: str) -> None:
    """Refuse, in one line (a ValueError), a format whose exporter is not installed (or does not import)."""
    for name in NEEDS[format]:
        try:
            importlib.import_module(name)
        except ImportError as err:
            absent = isinstance(err, ModuleNotFoundError) and err.name == name
            why = "is not installed" if absent else f"does not import ({type(err).__name__}: {err})"
            raise ValueError(f"--format {format} needs {name}, which {why}: run `{INSTALL}` in the charlm "
                             f"folder (the optional extra `export`).") from None


def export_bytes(loaded: LoadedModel, format: Literal["onnx", "torchscript"], source: str | Path) -> tuple[bytes, str]:
    """The file ``charlm export`` writes for ``loaded`` (read from ``source``, which its metadata names), and
    what it is ("ONNX opset 18", "TorchScript"). An ONNX file holds at most 2 GiB: a larger model is refused."""
    check_extra(format)
    config = loaded.model.config
    size = 4 * parameter_count(config)  # float32 weights
    if format == "onnx" and size > ONNX_LIMIT - 2**24:  # 16 MiB for the graph and metadata
        raise ValueError(f"--format onnx: the model's {gib(size)} of weights do not fit in one ONNX file "
                         f"(at most 2 GiB); use --format torchscript.")
    meta = metadata(config, loaded.vocab, source)
    if format == "onnx":
        data, opset = onnx_bytes(loaded.model, meta)
        return data, f"ONNX opset {opset}"
    return torchscript_bytes(loaded.model, meta), "TorchScript"

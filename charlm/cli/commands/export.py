"""``charlm export``: a checkpoint's network as one file that samples without charlm (ONNX or TorchScript).

    python -m charlm export --ckpt_path best.ckpt --output model.onnx
    python -m charlm export --ckpt_path best.ckpt --format torchscript --output model.pt

The graph and its metadata: charlm.infer.export. README.md, section "Export", has a sampler that needs
only onnxruntime and numpy. The exporters are the optional extra ``export`` (pyproject.toml).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from charlm.checkpoint import load_checkpoint
from charlm.cli.output_path import check_output_path, write_output
from charlm.infer.export import check_extra, export_bytes, signature


def export(
    ckpt_path: str,
    output: str,
    format: Literal["onnx", "torchscript"] = "onnx",
    overwrite: bool = False,
) -> Path:
    """Write a checkpoint's network as one step that samples without charlm (ONNX or TorchScript).

    The file computes one step for N streams at once (N chosen at run time):
    token (N,) int64, h (layers, N, hidden) [, c for an LSTM] -> logits (N, V), h_out [, c_out],
    the state starting as zeros. Its metadata (ONNX metadata_props; TorchScript _extra_files) holds
    charlm.vocab (the byte of each token id, JSON), charlm.model_config and charlm.signature.
    README.md, section "Export", has a 15-line sampler that needs only onnxruntime and numpy.

    Args:
        ckpt_path: a checkpoint written by ``charlm fit``.
        output: the file to write (its folder must exist); e.g. model.onnx or model.pt.
        format: onnx (any ONNX runtime) or torchscript (torch.jit.load in Python or libtorch;
            torch deprecates TorchScript, but it still loads).
        overwrite: replace --output if it exists (never the checkpoint read).
    """
    path = check_output_path(output, "--output", "the model", "model.onnx", overwrite=overwrite,
                             inputs={"--ckpt_path": ckpt_path})
    check_extra(format)
    loaded = load_checkpoint(ckpt_path, "cpu")
    config = loaded.model.config
    data, what = export_bytes(loaded, format, ckpt_path)
    path = write_output(path, data, "--output")  # whole or not at all; a symlink keeps pointing at the file it names
    print(f"Wrote {path} ({what}, {_size(len(data))}): {config.describe()}, {len(loaded.vocab)} "
          f"symbols.\nOne step: {signature(config)}.")
    return path


def _size(count: int) -> str:
    """Bytes for the summary: "28 KiB", "3.2 MiB"."""
    return f"{count / 2**10:.0f} KiB" if count < 2**20 else f"{count / 2**20:.1f} MiB"

"""TF32 for a GPU's float32 work (``--model.tf32``), set through torch's own switches and reported.

What each ``--trainer.precision`` runs in is decided in the network (``charlm.model.recurrence_dtype``) and
tabled in docs/guides/devices.md. Here only the float32 math on CUDA: whether cuDNN's RNNs and cuBLAS's
matmuls (the output head) may round their inputs to TF32 (10-bit mantissa, fp32 range and accumulation).

torch (2.13, read in its source: ATen/Context.h) allows TF32 for cuDNN's RNNs by default
(``torch.backends.cudnn.rnn.fp32_precision`` "tf32": the legacy ``torch.backends.cudnn.allow_tf32 = True``)
and not for matmuls (``torch.backends.cuda.matmul.fp32_precision`` "none", i.e. IEEE, unless
``torch.set_float32_matmul_precision("high")``). charlm changes them only when asked, with the legacy
switches, which set the new per-operation flags too: setting the new matmul flag alone leaves torch's
legacy one behind, and ``torch.get_float32_matmul_precision()`` (Lightning reads it) then raises.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

IEEE, TF32 = "ieee", "tf32"


def fp32_math() -> dict[str, str]:
    """What float32 work on CUDA runs in now: {"rnn": cuDNN's RNNs, "matmul": cuBLAS matmuls}, each "tf32"
    or "ieee" (torch's "none", inherited from nothing, is IEEE). Read on any machine; used only on CUDA."""
    rnn = getattr(getattr(torch.backends.cudnn, "rnn", None), "fp32_precision", None)
    if rnn is None:  # torch before the per-operation flags
        rnn = TF32 if torch.backends.cudnn.allow_tf32 else IEEE
    matmul = getattr(torch.backends.cuda.matmul, "fp32_precision", None)
    if matmul is None:
        matmul = TF32 if torch.get_float32_matmul_precision() != "highest" else IEEE
    return {"rnn": TF32 if rnn == TF32 else IEEE, "matmul": TF32 if matmul == TF32 else IEEE}


def use_tf32(allow: bool) -> Callable[[], None]:
    """Allow (or forbid) TF32 for cuDNN's RNNs and for matmuls; returns what puts back the settings before.

    Through torch's legacy switches (``set_float32_matmul_precision`` "high" / "highest" and
    ``cudnn.allow_tf32``), which keep the legacy and the per-operation flags agreeing."""
    before = fp32_math()
    torch.set_float32_matmul_precision("high" if allow else "highest")
    torch.backends.cudnn.allow_tf32 = allow

    def restore() -> None:
        torch.set_float32_matmul_precision("high" if before["matmul"] == TF32 else "highest")
        torch.backends.cudnn.allow_tf32 = before["rnn"] == TF32

    return restore


def describe_fp32_math(tf32: bool | None) -> str:
    """One line for a run on CUDA: what its float32 work runs in, and why (the flag, or torch's settings)."""
    math = fp32_math()
    why = (f"--model.tf32 {str(tf32).lower()}" if tf32 is not None
           else "torch's settings; --model.tf32 true or false chooses")
    return f"charlm: float32 math on the GPU: cuDNN RNN {math['rnn']}, matmuls (the head) {math['matmul']} ({why})"

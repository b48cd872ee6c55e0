"""Devices a user names (``--device`` of the checkpoint commands, ``--trainer.accelerator`` and
``--trainer.devices`` of fit/validate/test), checked before anything is loaded or started, with one
line that says what this machine has and what to use instead. Torch only: no Lightning import.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import torch

KNOWN = "cpu, cuda, cuda:N, mps or auto"


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps and mps.is_available())


def no_cuda_reason() -> str:
    """Why there is no CUDA device, as far as torch can tell."""
    if torch.version.cuda is None:
        return f"this torch ({torch.__version__}) is a CPU-only build"
    return f"torch {torch.__version__} is built for CUDA {torch.version.cuda}, but finds no GPU (driver? CUDA_VISIBLE_DEVICES?)"


def resolve_device(device: str, flag: str = "--device") -> torch.device:
    """``auto`` -> cuda if available, else cpu; refuse a device this machine does not have."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise ValueError(f"{flag} {device!r} is not a device; use {KNOWN}.") from None
    if resolved.type == "cpu":
        return resolved
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{flag} {device}: no CUDA device is available ({no_cuda_reason()}). Use {flag} cpu "
                             f"(or auto: a GPU when there is one).")
        count = torch.cuda.device_count()
        if resolved.index is not None and resolved.index >= count:
            raise ValueError(f"{flag} {device}: this machine has {count} CUDA device{'s' * (count != 1)} "
                             f"(cuda:0{f' to cuda:{count - 1}' if count > 1 else ''}).")
        return resolved
    if resolved.type == "mps":
        if not _mps_available():
            raise ValueError(f"{flag} {device}: Apple's MPS is not available on this machine. Use {flag} cpu or auto.")
        return resolved
    raise ValueError(f"{flag} {device}: charlm runs on {KNOWN}.")


def _count(devices: Any) -> int | None:
    """How many devices ``--trainer.devices`` asks for, when it says (an int, "4", or a list of ids)."""
    if isinstance(devices, bool):
        return None
    if isinstance(devices, int):
        return devices if devices > 0 else None
    if isinstance(devices, (list, tuple)):
        return len(devices)
    if isinstance(devices, str) and devices.strip().isdigit():
        return int(devices)
    if isinstance(devices, str) and "," in devices:
        return len([d for d in devices.split(",") if d.strip()])
    return None


def check_accelerator(accelerator: Any, devices: Any) -> None:
    """Refuse ``--trainer.accelerator gpu/cuda/mps`` where there is none (Lightning: a traceback),
    and more GPUs than the machine has; note a CPU run split into more processes than cores."""
    name = accelerator.lower() if isinstance(accelerator, str) else None
    cuda = torch.cuda.is_available()
    todo = "Use --trainer.accelerator cpu, or auto (a GPU when there is one)."
    if name in ("gpu", "cuda") and not cuda and not (name == "gpu" and _mps_available()):
        raise ValueError(f"--trainer.accelerator {accelerator}: no CUDA device is available ({no_cuda_reason()}). {todo}")
    if name == "mps" and not _mps_available():
        raise ValueError(f"--trainer.accelerator mps: Apple's MPS is not available on this machine. {todo}")
    wanted = _count(devices)
    on_cuda = name in ("gpu", "cuda") and cuda or name in ("auto", None) and cuda
    if on_cuda and wanted is not None and wanted > torch.cuda.device_count():
        have = torch.cuda.device_count()
        raise ValueError(f"--trainer.devices {devices}: this machine has {have} CUDA device{'s' * (have != 1)}. "
                         f"Use --trainer.devices {have} (or -1: all of them).")
    on_cpu = name == "cpu" or name in ("auto", None) and not cuda and not _mps_available()
    cores = os.cpu_count() or 1
    relaunched = os.environ.get("LOCAL_RANK", "0") != "0"  # Lightning starts ranks 1.. as `python -m charlm` again
    if on_cpu and wanted is not None and wanted > cores and not relaunched:
        print(f"charlm: note: --trainer.devices {devices} on the CPU starts {wanted} training processes, and this "
              f"machine has {cores} CPU core{'s' * (cores != 1)}: they will take turns, so this runs slower than "
              f"--trainer.devices {min(cores, wanted)} (many CPU processes are for trying DDP, not for speed).",
              file=sys.stderr)

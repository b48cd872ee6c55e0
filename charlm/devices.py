"""Devices a user names (``--device`` of the checkpoint commands, ``--trainer.accelerator`` and
``--trainer.devices`` of fit/validate/test), checked before anything is loaded or started, with one
line that says what this machine has and what to use instead; and the memory free on them, so that work
that cannot fit is refused with numbers (``check_fits``) rather than exhausting the machine. Torch only:
no Lightning import.
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
    return (f"torch {torch.__version__} is built for CUDA {torch.version.cuda}, but finds no GPU "
            f"(driver? CUDA_VISIBLE_DEVICES?)")


# --- the messages, one place each: resolve_device and check_accelerator refuse the same things ----
def _use_instead(flag: str) -> str:
    return f"Use {flag} cpu, or auto (a GPU when there is one)."


def _no_cuda(flag: str, value: Any) -> ValueError:
    return ValueError(f"{flag} {value}: no CUDA device is available ({no_cuda_reason()}). {_use_instead(flag)}")


def _no_mps(flag: str, value: Any) -> ValueError:
    return ValueError(f"{flag} {value}: Apple's MPS is not available on this machine. {_use_instead(flag)}")


def _cuda_count() -> str:
    count = torch.cuda.device_count()
    return f"this machine has {count} CUDA device{'s' * (count != 1)}"


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
            raise _no_cuda(flag, device)
        count = torch.cuda.device_count()
        if resolved.index is not None and resolved.index >= count:
            names = f"cuda:0 to cuda:{count - 1}" if count > 1 else "cuda:0"
            raise ValueError(f"{flag} {device}: {_cuda_count()} ({names}); choose one of those.")
        return resolved
    if resolved.type == "mps":
        if not _mps_available():
            raise _no_mps(flag, device)
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
    if name in ("gpu", "cuda") and not cuda and not (name == "gpu" and _mps_available()):
        raise _no_cuda("--trainer.accelerator", accelerator)
    if name == "mps" and not _mps_available():
        raise _no_mps("--trainer.accelerator", accelerator)
    wanted = _count(devices)
    on_cuda = cuda and name in ("gpu", "cuda", "auto", None)
    if on_cuda and wanted is not None and wanted > torch.cuda.device_count():
        raise ValueError(f"--trainer.devices {devices}: {_cuda_count()}. "
                         f"Use --trainer.devices {torch.cuda.device_count()} (or -1: all of them).")
    on_cpu = name == "cpu" or (name in ("auto", None) and not cuda and not _mps_available())
    cores = os.cpu_count() or 1
    relaunched = os.environ.get("LOCAL_RANK", "0") != "0"  # Lightning starts ranks 1.. as `python -m charlm` again
    if on_cpu and wanted is not None and wanted > cores and not relaunched:
        print(f"charlm: note: --trainer.devices {devices} on the CPU starts {wanted} training processes, and this "
              f"machine has {cores} CPU core{'s' * (cores != 1)}: they will take turns, so this runs slower than "
              f"--trainer.devices {min(cores, wanted)} (many CPU processes are for trying DDP, not for speed).",
              file=sys.stderr)


# --- dtypes the accelerator holds ------------------------------------------------------------
def has_float64(device: torch.device) -> bool:
    """Whether tensors on ``device`` can be float64: not on Apple's MPS (Metal has no double type),
    which ``--trainer.accelerator auto`` picks on Apple silicon."""
    return device.type != "mps"


def accumulator_dtype(device: torch.device) -> torch.dtype:
    """The dtype of running sums kept on ``device`` (charlm.train.metrics): float64 where the device has
    it, else float32 (compensated summation keeps it close to float64: see BitsPerByte)."""
    return torch.float64 if has_float64(device) else torch.float32


def available_memory() -> int | None:
    """Bytes of RAM free for a new allocation (Linux: MemAvailable; elsewhere all of the RAM;
    None where the OS does not say)."""
    try:
        with open("/proc/meminfo") as info:
            for line in info:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def gib(n: float) -> str:
    """Bytes as GiB for messages: "1.5 GiB"."""
    return f"{n / 2**30:,.1f} GiB"


def check_fits(device: torch.device, on_device: int, in_ram: int, what: str, todo: str) -> None:
    """Refuse work that needs ``on_device`` bytes on ``device`` and ``in_ram`` bytes of RAM (on a CPU both
    in RAM), more than is free now: "``what`` needs about N GiB, more than the M GiB of memory available
    here. ``todo``" (sampling's and beam search's checks)."""
    if device.type == "cuda":
        checks = [(on_device, torch.cuda.mem_get_info(device)[0], "free GPU memory"),
                  (in_ram, available_memory(), "memory")]
    else:
        checks = [(on_device + in_ram, available_memory(), "memory")]
    for need, have, name in checks:
        if have is not None and need > have:
            raise ValueError(f"{what} needs about {gib(need)}, more than the {gib(have)} of {name} available "
                             f"here. {todo}")

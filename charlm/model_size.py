"""How big a CharRNN is before it is built: its parameter count (exact, from the shapes) and the
memory it needs, so that a typo like ``--model.hidden_size 100000`` is refused with numbers instead
of exhausting the machine's memory (or an int32 index) while allocating.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # model.py imports this module
    import torch

    from charlm.model import CharRNNConfig

MAX_PARAMETERS = 2**31  # torch's and cuDNN's kernels index some tensors with 32-bit integers
GATES = {"rnn": 1, "gru": 3, "lstm": 4}  # weight blocks per layer: tanh cell, GRU (r, z, n), LSTM (i, f, g, o)
TRAIN_BYTES_PER_PARAMETER = 16  # float32 weights + gradients + AdamW's two moments


def parameter_count(config: CharRNNConfig) -> int:
    """Parameters of ``CharRNN(config)``.

    embedding V x E; layer l: W_ih (gH x in_l), W_hh (gH x H), b_ih and b_hh (gH) with in_0 = E,
    in_l = H; head H x V + V.
    """
    g, h, v = GATES[config.cell], config.hidden_size, config.vocab_size
    first = g * h * (config.embedding_dim + h + 2)
    others = (config.num_layers - 1) * g * h * (2 * h + 2)
    return v * config.embedding_dim + first + others + h * v + v


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
        import torch  # only here, as in check_training_size: the rest of this module needs no torch

        checks = [(on_device, torch.cuda.mem_get_info(device)[0], "free GPU memory"),
                  (in_ram, available_memory(), "memory")]
    else:
        checks = [(on_device + in_ram, available_memory(), "memory")]
    for need, have, name in checks:
        if have is not None and need > have:
            raise ValueError(f"{what} needs about {gib(need)}, more than the {gib(have)} of {name} available "
                             f"here. {todo}")


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


def check_training_size(model: Any, accelerator: Any, subcommand: str | None) -> None:
    """The CLI's check, before the corpus is prepared: ``model`` holds the --model.* values. Counts
    with a one-symbol vocabulary (the corpus's is not known yet; CharRNN checks the exact count)."""
    from charlm.model import CharRNNConfig  # here, not at the top: model.py imports this module

    try:
        config = CharRNNConfig.from_hparams(vars(model), vocab_size=1)
    except (ValueError, TypeError):
        return  # CharLM says what is wrong with them, naming the flag
    count = parameter_count(config)
    what = (f"--model.hidden_size {config.hidden_size} x --model.num_layers {config.num_layers} "
            f"({config.cell}, --model.embedding_dim {config.embedding_dim})")
    memory, memory_name = None, "memory"
    if accelerator in ("auto", "gpu", "cuda", None):
        import torch

        if torch.cuda.is_available():
            memory, memory_name = torch.cuda.get_device_properties(0).total_memory, "GPU memory"
    per, use = (TRAIN_BYTES_PER_PARAMETER, "to train (float32 weights, gradients and AdamW's two moments)") \
        if subcommand == "fit" else (4, "for its float32 weights")
    check_model_size(count, what, per, use, memory, memory_name)
    memory = available_memory() if memory is None else memory
    if memory is not None and count * per > memory / 2:  # it fits, but little room is left for the activations
        print(f"charlm: note: {what} has {count:,} parameters, which need {gib(count * per)} {use}, of the "
              f"{gib(memory)} of {memory_name} available here; the activations need more.", file=sys.stderr)

"""The ``--model.*`` values of ``charlm fit``: the ones a user gave, what a checkpoint does to them, and
whether the network they ask for fits in memory to train (before the corpus is prepared).

The values a user gave, and what a checkpoint does to them:

``fit --ckpt_path`` resumes a run with the checkpoint's hyperparameters (LightningCLI replaces the
parsed ``--model.*`` values with them), so a flag given with another value is ignored: it is named
in a warning. ``--model.init_from`` takes the network's shape from its checkpoint: a shape flag
given with another value is refused (charlm.train.init_from), and the unset ones are filled in before
anything is built, so the run's config.yaml and its size check see the real network. With
``--ckpt_path`` it is dropped: a fine-tuned run's config.yaml records it, and resuming that run (the
same command, or ``--config`` that file, plus ``--ckpt_path``) must load the checkpoint's weights,
not start the fine-tune again.

"Given" means on the command line or in a ``--config`` file, not in charlm/defaults.yaml: the
default run's 2 x 256 LSTM must not clash with a 1 x 64 checkpoint nobody asked to change.
"""

from __future__ import annotations

import sys
import warnings
from typing import Any

from jsonargparse import Namespace

from charlm.devices import available_memory, gib
from charlm.model import CharRNNConfig, check_model_size, parameter_count
from charlm.train.init_from import FLAG, pretrained_shape, read_shape
from datamodules.common.rank_zero import is_rank_zero, rank_zero_note


def given_model_settings(parser: Any, args: Any, config: Namespace, subcommand: str) -> dict[str, Any]:
    """The ``--model.*`` values set on the command line ``args`` (None: sys.argv) or in its --config files.

    ``args`` parsed again without defaults (charlm/defaults.yaml, the signature's) over ``config`` (what they
    parsed to) stripped of its model settings: what comes back in them was given. The rest of ``config`` is
    the base so that ``--data.path`` finds the data module's class in it. A value equal to the default counts
    as given too (``--model.hidden_size 256``).
    """
    base = config.clone()
    base[subcommand].model = Namespace()
    given = parser.parse_args(args, namespace=base, defaults=False, _skip_validation=True)
    model = given[subcommand].get("model")
    if not isinstance(model, Namespace):
        return {}
    return {key: value for key, value in model.as_dict().items() if key not in ("vocab", "init_from")}


def drop_init_from_when_resuming(config: Namespace, subcommand: str) -> None:
    """With ``--ckpt_path``, set ``config.model.init_from`` to None, saying so once (rank 0) on stderr.

    The checkpoint holds the weights to run with (a fine-tuned run's own, or the ones to evaluate), and
    LightningCLI replaces the ``--model.*`` values with its hyperparameters, which never hold init_from
    (CharLM does not save it). Before anything reads the file: nothing is loaded or transplanted."""
    path, ckpt_path = config.model.get("init_from"), config.get("ckpt_path")
    if not (path and ckpt_path):
        return
    config.model.init_from = None
    why = ("when resuming (--ckpt_path): the checkpoint already holds the fine-tuned weights, with its optimizer, "
           "schedule and step count" if subcommand == "fit" else
           f"with --ckpt_path: {subcommand} runs the checkpoint's weights")
    rank_zero_note(f"charlm: {FLAG} {path} is ignored {why} ({ckpt_path}).")


def take_shape_from_init_from(config: Namespace, given: dict[str, Any]) -> None:
    """Set ``config.model``'s network settings to those of ``--model.init_from``'s checkpoint (the ones the
    user set win where allowed); a given shape flag that contradicts it is a ValueError naming both values."""
    path = config.model.init_from
    for name, value in pretrained_shape(read_shape(path), given, path).items():  # CharLM checks the values
        config.model[name] = value


def warn_once(message: str) -> None:
    """A UserWarning from the first process of the run only (Lightning's rank_zero_warn, without Lightning)."""
    if is_rank_zero():
        warnings.warn(message, UserWarning, stacklevel=3)


def warn_overridden_model_flags(given: dict[str, Any], model: Namespace, ckpt_path: str, subcommand: str) -> None:
    """Warn (rank 0, once) naming each ``given`` ``--model.*`` flag whose value differs from ``model``'s, the
    settings ``--ckpt_path``'s hyperparameters replaced them with, with both values."""
    lost = [f"--model.{key} {value!r} (the checkpoint's: {model.get(key)!r})"
            for key, value in given.items() if value != model.get(key)]
    if lost:
        advice = (f" To train with other settings from these weights, start a new run with --model.init_from "
                  f"{ckpt_path}." if subcommand == "fit" else "")
        warn_once(f"charlm: --ckpt_path {ckpt_path} runs with the model settings it was saved with, so "
                       f"{', '.join(lost)} {'is' if len(lost) == 1 else 'are'} ignored.{advice}")


TRAIN_BYTES_PER_PARAMETER = 16  # float32 weights + gradients + AdamW's two moments


def check_training_size(model: Any, accelerator: Any, subcommand: str | None) -> None:
    """The CLI's check, before the corpus is prepared: ``model`` holds the --model.* values. Counts
    with a one-symbol vocabulary (the corpus's is not known yet; CharRNN checks the exact count)."""
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

"""Fine-tuning: a new model that starts from a trained checkpoint's weights (``--model.init_from``).

Unlike ``--ckpt_path``, which resumes a run (optimizer, schedule, step count, hidden state), this
starts a new run whose network is the checkpoint's: its shape comes from the file, and its weights
are copied in before the first optimizer step. The new corpus's vocabulary may differ from the old
one. The embedding and the output head have one row per symbol; a byte both vocabularies hold keeps
its old rows (embedding, head weight and bias), a byte only the new corpus holds keeps the fresh
rows a new model was given, and a byte only the old one held is dropped. The recurrent layers have
no per-symbol rows and are copied whole.

No Lightning here. The CLI calls :func:`read_shape` and :func:`pretrained_shape` early, to refuse a
contradicting ``--model.*`` flag before any data is prepared and fill in the shape; CharLM then loads
the network (:func:`read_pretrained`, once per process: each DDP rank reads the file) and calls
:func:`pretrained_shape` and :func:`transplant`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from charlm.checkpoint import LoadedModel, check_checkpoint_file, checked_model_config, load_checkpoint
from charlm.model import CharRNN, CharRNNConfig
from datamodules.io.vocab import Vocabulary, _first_few, describe_byte

FLAG = "--model.init_from"
# what the weights' tensors depend on: fixed by the checkpoint. dropout and weight_drop are not (a
# fine-tune may regularise differently); left unset, they are the checkpoint's too
SHAPE = ("cell", "num_layers", "hidden_size", "embedding_dim")


def read_shape(path: str | Path) -> CharRNNConfig:
    """The checkpoint's network config, the network not built (a memory-mapped load; the weights are only checked
    to be finite), for the CLI to fill in the shape flags; errors are one line naming ``--model.init_from``."""
    return checked_model_config(check_checkpoint_file(path, FLAG), path, FLAG)


def read_pretrained(path: str | Path) -> LoadedModel:
    """The checkpoint's network and vocabulary; errors are one line naming ``--model.init_from``.

    Leaves the random state as it was (building the old network draws its initial weights), so that the
    fine-tuned model's fresh rows are those a new model would get from the same seed."""
    with torch.random.fork_rng(devices=[]):
        return load_checkpoint(path, "cpu", arg=FLAG)


def pretrained_shape(old: CharRNNConfig, given: Mapping[str, Any], path: str | Path) -> dict[str, Any]:
    """The fine-tuned network's settings (CharLM's ``**shape``): those of ``old``, the checkpoint's config, with
    the ``dropout`` / ``weight_drop`` of ``given`` (the ``--model.*`` values the user set) where set.

    Raises ValueError naming every shape flag in ``given`` that contradicts the checkpoint, with both values.
    The values are not checked here: CharRNNConfig checks them, where CharLM builds it.
    """
    clashes = [f"--model.{name} {given[name]!r} (the checkpoint's is {getattr(old, name)!r})"
               for name in SHAPE if name in given and given[name] != getattr(old, name)]
    if clashes:
        raise ValueError(
            f"{FLAG} {path}: the network's shape comes from the checkpoint ({old.describe()}), and "
            f"{', '.join(clashes)} contradict{'s' * (len(clashes) == 1)} it; leave "
            f"{'that flag' if len(clashes) == 1 else 'those flags'} out (dropout, weight_drop, lr ... may be changed)."
        )
    return {**old.to_hparams(), **{name: given[name] for name in ("dropout", "weight_drop") if name in given}}


@dataclass(frozen=True)
class Transplant:
    """What :func:`transplant` did with each byte: kept its rows, got fresh ones, or was dropped."""

    mapped: tuple[int, ...]  # byte values in both vocabularies
    added: tuple[int, ...]  # only in the new one: fresh rows
    dropped: tuple[int, ...]  # only in the old one: their rows are gone

    def describe(self) -> str:
        """'62 bytes mapped, 3 added ('{' (0x7b), ...), 3 dropped ('$' (0x24), ...)'."""
        def listed(values: tuple[int, ...]) -> str:
            return f" ({_first_few([describe_byte(b) for b in values])})" if values else ""

        return (f"{len(self.mapped)} bytes mapped, {len(self.added)} added{listed(self.added)}, "
                f"{len(self.dropped)} dropped{listed(self.dropped)}")


@torch.no_grad()
def transplant(model: CharRNN, vocab: Vocabulary, pretrained: LoadedModel) -> Transplant:
    """Copy ``pretrained``'s weights into ``model`` (built with ``vocab``, the new corpus's, and the same shape):
    every recurrent weight, and the embedding and head rows (weight and bias) of each byte both vocabularies
    hold; the rows of bytes new to ``vocab`` keep ``model``'s own initialisation. Exact copies (no casts
    beyond ``model``'s dtype)."""
    old_model, old_vocab = pretrained.model, pretrained.vocab
    shape = {name: getattr(model.config, name) for name in SHAPE}
    if shape != {name: getattr(old_model.config, name) for name in SHAPE}:
        raise ValueError(f"{FLAG}: the model is {model.config.describe()}, the checkpoint's "
                         f"{old_model.config.describe()}; build the model with the checkpoint's shape.")
    old_ids = old_vocab.byte_to_id  # (256,): old token id of each byte, -1 if the old model never saw it
    symbols = torch.tensor(vocab.symbols)
    from_old = torch.from_numpy(old_ids[list(vocab.symbols)].astype("int64"))  # (V_new,)
    shared = from_old >= 0
    old_state = old_model.state_dict()
    for name, tensor in model.state_dict().items():  # state_dict tensors share storage with the parameters
        source = old_state[name]
        if name in ("embed.weight", "head.weight", "head.bias"):  # (V, E), (V, H), (V,): one row per symbol
            tensor[shared] = source[from_old[shared]].to(tensor.dtype)
        else:
            tensor.copy_(source)
    kept = set(vocab.symbols)
    return Transplant(mapped=tuple(int(s) for s in symbols[shared]), added=tuple(int(s) for s in symbols[~shared]),
                      dropped=tuple(s for s in old_vocab.symbols if s not in kept))

"""Fine-tuning: a new model that starts from a trained checkpoint's weights (``--model.init_from``).

Unlike ``--ckpt_path``, which resumes a run (optimizer, schedule, step count, hidden state), this
starts a new run whose network is the checkpoint's: its shape comes from the file, and its weights
are copied in before the first optimizer step. The new corpus's vocabulary may differ from the old
one. The embedding and the output head have one row per symbol; a byte both vocabularies hold keeps
its old rows (embedding, head weight and bias), a byte only the new corpus holds keeps the fresh
rows a new model was given, and a byte only the old one held is dropped. The recurrent layers have
no per-symbol rows and are copied whole.

No Lightning here: CharLM calls :func:`pretrained_config` and :func:`transplant`, the CLI calls
:func:`pretrained_config` early, to refuse a contradicting ``--model.*`` flag before any data is
prepared.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from charlm.checkpoint import LoadedModel, load_checkpoint
from charlm.model import CharRNN, CharRNNConfig
from datamodules.vocab import Vocabulary, _first_few, describe_byte

FLAG = "--model.init_from"
# what the weights' tensors depend on: fixed by the checkpoint. dropout and weight_drop are not (a
# fine-tune may regularise differently); left unset, they are the checkpoint's too
SHAPE = ("cell", "num_layers", "hidden_size", "embedding_dim")


# the last file read_pretrained loaded, for the next call in this process: the CLI reads it for the shape, then
# CharLM builds from it (each DDP rank is its own process and reads it once). Key: (resolved path, mtime, size)
_kept: dict[tuple[str, int, int], LoadedModel] = {}


def read_pretrained(path: str | Path, keep: bool = True) -> LoadedModel:
    """The checkpoint's network and vocabulary; errors are one line naming ``--model.init_from``.

    Read once per process: the result is kept for the next call with the same unchanged file, which takes it
    (``keep=False``: and forgets it, so the old network's memory is freed once the new one has its weights).
    Leaves the random state as it was (building the old network draws its initial weights), so that the
    fine-tuned model's fresh rows are those a new model would get from the same seed."""
    try:
        stat = Path(path).expanduser().stat()
        key = (str(Path(path).expanduser().resolve()), stat.st_mtime_ns, stat.st_size)
    except OSError:  # not there: load_checkpoint says so
        key = None
    loaded = _kept.pop(key, None) if key is not None else None
    _kept.clear()
    if loaded is None:
        with torch.random.fork_rng(devices=[]):
            loaded = load_checkpoint(path, "cpu", arg=FLAG)
    if keep and key is not None:
        _kept[key] = loaded
    return loaded


def pretrained_config(pretrained: LoadedModel, given: Mapping[str, Any], vocab_size: int, path: str | Path) -> (
        CharRNNConfig):
    """The fine-tuned network's config: the checkpoint's, with ``vocab_size`` symbols and the ``dropout`` /
    ``weight_drop`` of ``given`` (the ``--model.*`` values the user set) where set.

    Raises ValueError naming every shape flag in ``given`` that contradicts the checkpoint, with both values.
    """
    old = pretrained.model.config
    clashes = [f"--model.{name} {given[name]!r} (the checkpoint's is {getattr(old, name)!r})"
               for name in SHAPE if name in given and given[name] != getattr(old, name)]
    if clashes:
        raise ValueError(
            f"{FLAG} {path}: the network's shape comes from the checkpoint ({old.describe()}), and "
            f"{', '.join(clashes)} contradict{'s' * (len(clashes) == 1)} it; leave "
            f"{'that flag' if len(clashes) == 1 else 'those flags'} out (dropout, weight_drop, lr ... may be changed)."
        )
    free = {name: given[name] for name in ("dropout", "weight_drop") if name in given}
    try:
        return replace(old, vocab_size=vocab_size, **free)
    except ValueError as err:  # each message starts with the field's name
        raise ValueError(f"--model.{err}") from None


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

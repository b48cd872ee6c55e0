"""charlm's commands, in one table: their names, the line ``charlm --help`` shows for each, and where each
checkpoint command's function lives. A leaf: the parser (charlm.cli.parser), the error wording
(charlm.cli.errors) and ``fit`` (charlm.cli.commands.fit) read it; it imports nothing.
"""

from __future__ import annotations

from collections.abc import Iterable

# LightningCLI's commands (charlm.cli.commands.fit), each with its line for `charlm --help` (and `charlm fit --help`)
TRAINING = {
    "fit": "Train a model (the default run: a 2 x 256 LSTM on Tiny Shakespeare).",
    "validate": "The bpc of --ckpt_path on the validation split.",
    "test": "The bpc of --ckpt_path on the test split.",
}
# the commands that need only a checkpoint, as module:function; each line in `charlm --help` is the
# first line of the function's docstring. A module is imported only when charlm builds this parser.
CHECKPOINT = {
    "sample": "charlm.cli.commands.sample:sample",
    "score": "charlm.cli.commands.score:score",
    "classify": "charlm.cli.commands.classify:classify",
    "visualize": "charlm.cli.commands.visualize:visualize",
    "export": "charlm.cli.commands.export:export",
    "serve": "charlm.cli.commands.serve:serve",
}
NAMES = (*TRAINING, *CHECKPOINT)


def _listing(names: Iterable[str]) -> str:
    """'`charlm a`, `charlm b` and `charlm c`'."""
    quoted = [f"`charlm {name}`" for name in names]
    return ", ".join(quoted[:-1]) + " and " + quoted[-1]


DESCRIPTION = (f"Character-level RNN / GRU / LSTM language models. {_listing(TRAINING)} read the default run "
               f"(charlm/defaults.yaml) before any --config; {_listing(CHECKPOINT)} need only a checkpoint. "
               f"Add --help to any command. Scores are in bpc, bits per character: the mean number of bits the "
               f"model needs to encode each byte of a text (fewer is better; 8 would be no model at all).")

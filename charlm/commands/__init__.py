"""The commands that need only a checkpoint: no corpus, no Trainer, and no Lightning import.

``sample`` and ``visualize`` are typed functions (jsonargparse builds their ``--help`` from the
docstrings); ``score`` and ``classify`` take several checkpoints, so they have argparse parsers.
"""

from __future__ import annotations

import importlib
from typing import Any

FUNCTION_COMMANDS = {"sample": "charlm.commands.sample:sample", "visualize": "charlm.commands.visualize:visualize"}
ARGPARSE_COMMANDS = {"score": "charlm.commands.score:score_main", "classify": "charlm.commands.score:classify_main"}
NAMES = set(FUNCTION_COMMANDS) | set(ARGPARSE_COMMANDS)


def _load(spec: str):
    module, name = spec.split(":")
    return getattr(importlib.import_module(module), name)


def run_command(argv: list[str]) -> Any:
    """Run ``argv[0]`` (one of NAMES) with the rest of ``argv`` as its arguments."""
    name, rest = argv[0], argv[1:]
    if name in ARGPARSE_COMMANDS:
        return _load(ARGPARSE_COMMANDS[name])(rest)
    from jsonargparse import CLI, ArgumentParser

    from charlm.parse_errors import OneLineErrors

    class CommandParser(OneLineErrors, ArgumentParser):
        """jsonargparse's parser with one-line errors (charlm.parse_errors)."""

    return CLI(_load(FUNCTION_COMMANDS[name]), args=rest, as_positional=False, prog=f"charlm {name}",
               parser_class=CommandParser)

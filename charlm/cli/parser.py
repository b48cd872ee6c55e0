"""The one parser of the commands that need only a checkpoint, and the dispatch of every command.

``fit``, ``validate`` and ``test`` train and evaluate through LightningCLI (charlm.cli.commands.fit: a Trainer,
a data module, ``--model.*`` / ``--data.*`` / ``--trainer.*``). ``sample``, ``score``, ``classify``
and ``visualize`` need only a checkpoint: each is a typed function whose docstring is its
``--help``, and one jsonargparse parser holds them as subcommands (as litgpt's ``__main__`` does
with its dict of functions). That parser never imports Lightning (half the start-up time), and it
also answers ``charlm --help`` and a bare ``charlm``, listing every command of the table.
"""

from __future__ import annotations

import importlib
import inspect
import sys
import typing
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from charlm.cli.table import CHECKPOINT, DESCRIPTION, TRAINING

if TYPE_CHECKING:
    from jsonargparse import ArgumentParser

def load(name: str) -> Callable[..., Any]:
    """The function behind the checkpoint command ``name``."""
    module, function = CHECKPOINT[name].split(":")
    return getattr(importlib.import_module(module), function)


def summary(function: Callable[..., Any]) -> str:
    """The first line of ``function``'s docstring: its line in ``charlm --help``."""
    return (inspect.getdoc(function) or "").split("\n", 1)[0]


def description(function: Callable[..., Any]) -> str:
    """``function``'s docstring up to its ``Args:`` (which document the flags): the top of ``charlm NAME --help``."""
    return (inspect.getdoc(function) or "").split("\nArgs:", 1)[0].strip()


def _add_function(parser: ArgumentParser, function: Callable[..., Any]) -> None:
    """``function``'s parameters as flags, documented by its docstring.

    A ``list[str]`` parameter takes its values one after another, as argparse's ``nargs='+'``
    (``--ckpt_path a.ckpt b.ckpt``); jsonargparse alone would want ``--ckpt_path '[a.ckpt, b.ckpt]'``
    and has no ``nargs`` for function parameters, so such a parameter is added by hand, with the
    help jsonargparse wrote for it from the docstring. So is a ``bool`` one, as a switch: ``--interactive``
    alone means true (jsonargparse would want ``--interactive true``, which still works), and
    ``--no_interactive``, which takes no value, false. (jsonargparse's ActionYesNo gives both forms
    the same optional value, so that ``--no_interactive false`` would mean true.)
    """
    from argparse import SUPPRESS

    from jsonargparse import ArgumentParser

    from charlm.compat import parser_actions

    parameters = inspect.signature(function).parameters
    hints = typing.get_type_hints(function)
    many = [name for name in parameters if hints.get(name) in (list[str], list[str] | None)]
    switches = [name for name in parameters if hints.get(name) is bool]
    if many or switches:
        scratch = ArgumentParser()
        scratch.add_function_arguments(function, as_group=False)
        helps = {action.dest: action.help for action in parser_actions(scratch)}
    def add_many(name: str) -> None:
        default = parameters[name].default
        required = default is inspect.Parameter.empty
        parser.add_argument(f"--{name}", type=str, nargs="+", required=required, help=helps[name],
                            **({} if required else {"default": default}))

    # in the signature's order, as far as it goes: a list that comes first (classify's --ckpt_path) stays first
    leading = [name for name in many if name == next(iter(parameters))]
    for name in leading:
        add_many(name)
    parser.add_function_arguments(function, as_group=False, skip={*many, *switches}, sub_configs=True)
    for name in many:
        if name not in leading:
            add_many(name)
    for name in switches:
        parser.add_argument(f"--{name}", type=bool, nargs="?", const=True, default=parameters[name].default,
                            help=helps[name])
        # default SUPPRESS: the flag above gives the default (and --help shows it there, not twice)
        parser.add_argument(f"--no_{name}", dest=name, action="store_const", const=False, default=SUPPRESS,
                            help=f"the same as --{name} false.")


def build_parser() -> ArgumentParser:
    """``charlm``: every command of the table as a subcommand. The checkpoint commands are parsed here;
    fit / validate / test are listed only (run_command hands them to LightningCLI before parsing)."""
    from jsonargparse import ActionConfigFile, ArgumentParser

    from charlm.cli.errors import OneLineErrors, ReadableDefaults

    class CommandParser(OneLineErrors, ArgumentParser):
        """jsonargparse's parser with one-line errors (charlm.cli.errors)."""

    root = CommandParser(prog="charlm", description=DESCRIPTION, formatter_class=ReadableDefaults)
    commands = root.add_subcommands(required=True)
    for name, line in TRAINING.items():
        commands.add_subcommand(name, CommandParser(description=line, formatter_class=ReadableDefaults), help=line)
    for name in CHECKPOINT:
        function = load(name)
        parser = CommandParser(description=description(function), formatter_class=ReadableDefaults)
        parser.add_argument("--config", action=ActionConfigFile, help="Settings from a YAML file (flags override).")
        _add_function(parser, function)
        commands.add_subcommand(name, parser, help=summary(function))
        parser.prog = f"charlm {name}"  # not jsonargparse's "charlm [options] NAME": the root has no options
    return root


def run_command(argv: list[str]) -> Any:
    """Run the command ``argv[0]`` with the rest of ``argv`` as its arguments; no command: list them."""
    if argv and argv[0] in TRAINING:
        from charlm.cli.commands.fit import main

        return main(None if argv == sys.argv[1:] else argv)  # LightningCLI warns if given sys.argv's own args
    parser = build_parser()
    if not argv:
        parser.print_help()  # what there is to run; then one error line, exit 2
    config = parser.parse_args(argv)
    name = config.subcommand
    arguments = config[name].as_dict()
    arguments.pop("config", None)
    return load(name)(**arguments)

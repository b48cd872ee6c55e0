"""One line for a command line jsonargparse cannot parse, instead of its usage dump.

jsonargparse reports a bad value inside a subclass (``--data.batch_size abc``) as a nest of
"Parser key", "Does not validate against any of the Union subtypes", "Errors:" and "Given value"
lines, after thirty lines of usage. :func:`short_parse_error` keeps the flag and the one line that
says what is wrong; :class:`OneLineErrors` prints it as ``charlm: error: ...`` with a ``--help``
hint (CHARLM_TRACEBACK=1 shows jsonargparse's full report). No Lightning import here.
"""

from __future__ import annotations

import argparse
import contextlib
import contextvars
import copy
import difflib
import itertools
import json
import os
import re
import sys
from collections.abc import Iterator
from typing import NoReturn

from jsonargparse import DefaultHelpFormatter

from charlm.compat import parser_actions

_NOISE = ("Does not validate against any of the Union subtypes", "Subtypes:", "Errors:", "Given value",
          "- Expected a <class 'NoneType'>", "Expected a <class 'NoneType'>")
_KEY = re.compile(r'(?:- )?Parser key "([^"]+)":\s*(.*)')
_CLASS_PATH = re.compile(r"(?:- )?Problem with given class_path '[^']*':\s*(.*)")

# charlm builds its optimizer and schedule itself (charlm.train.lightning_module); LightningCLI's --optimizer /
# --lr_scheduler would silently replace AdamW and drop warmup and cosine decay, so they are not offered
OPTIMIZER_FLAGS = ("--optimizer", "--lr_scheduler")
OPTIMIZER_HINT = ("charlm trains with AdamW, linear warmup and cosine decay, set by --model.lr, --model.weight_decay, "
                  "--model.betas, --model.warmup_steps, --model.lr_schedule (cosine or constant), "
                  "--model.min_lr_ratio and --model.grad_clip")


def _readable(detail: str) -> str:
    """jsonargparse's type names as a user would write them."""
    detail = re.sub(r"<class '(?:builtins\.)?(\w+)'>", r"\1", detail)
    detail = re.sub(r"typing\.Literal\[(.*?)\]", lambda m: "one of " + m[1].replace("'", ""), detail)
    return detail.replace("Expected a ", "expected ").replace(". Got value:", ", got")


def short_parse_error(message: str) -> str:
    """The flag and the first line that says what is wrong with it (see the module docstring)."""
    keys: list[str] = []
    details: list[str] = []
    given = None
    for line in message.splitlines():
        text = line.strip()
        if text.startswith("Given value:"):
            given = text.removeprefix("Given value:").strip()
        if not text or text.startswith(_NOISE):
            continue
        if match := _KEY.fullmatch(text):
            keys.append(match[1])
            text = match[2]
        elif match := _CLASS_PATH.fullmatch(text):
            text = match[1]
        if text and not text.startswith(_NOISE):
            details.append(text.removeprefix("- "))
    if not details:
        return message.strip().splitlines()[0] if message.strip() else "invalid arguments"
    if re.search(r'argument subcommand: invalid choice|"subcommand" to be one of', message):
        from charlm.cli.table import NAMES

        given = re.search(r"invalid choice: '([^']*)'", message)
        commands = ", ".join(NAMES)
        return f"{'no command ' + repr(given[1]) if given else 'give a command'}: charlm's commands are {commands}"
    if keys == ["data"] and "Expected a dot import path" in message:  # --data Foo: no such class
        from datamodules import _WHERE

        corpora = ", ".join(n for n in _WHERE if n.endswith("DataModule") and n != "CharDataModule")
        return f"--data {given}: no such data module; choose one of {corpora} (or a class path, a.b.MyDataModule)"
    if unknown := _unknown_setting(keys, message):
        return unknown
    choices = [m for d in details if (m := re.fullmatch(r"Expected a typing\.Literal\[(.*)\]", d))]
    if len(choices) > 1 and len(choices) == len(details):  # a union of Literals (--trainer.precision): all of them
        values = [v.strip().strip("'\"") for m in choices for v in m[1].split(",")]
        details = [f"Expected a typing.Literal[{', '.join(dict.fromkeys(values))}]"]
    detail = _readable(details[0])
    if given is not None and ", got" not in detail:
        detail += f", got {given}"
    flag = "--" + ".".join(keys) if keys else ""
    return detail if not flag or detail.startswith("--") else f"{flag}: {detail}"


def closest_flag(flag: str, options: list[str]) -> str | None:
    """The one of ``options`` that ``flag`` most likely misspells or shortens (``--text`` -> ``--text_file``)."""
    longer = [option for option in options if option.startswith(flag)]
    if len(longer) == 1:
        return longer[0]
    close = difflib.get_close_matches(flag, options, n=1, cutoff=0.75)
    return close[0] if close else None


def _suggestion(message: str, options: list[str]) -> str:
    """' (did you mean --trainer.max_steps?)' for a misspelt flag among ``options``."""
    match = re.search(r"unrecognized arguments: (\S+)", message)
    if not match:
        return ""
    flag = match[1].split("=", 1)[0]
    if flag.startswith(OPTIMIZER_FLAGS):
        return ""
    close = closest_flag(flag, options)
    return f" (did you mean {close}?)" if close else ""


def _class_settings(class_path: str) -> list[str]:
    """The init_args the class at ``class_path`` takes (its bases' too, through **kwargs), or [] if it does
    not import."""
    from jsonargparse import ArgumentParser

    from charlm.compat import entry_class

    cls = entry_class(type("Entry", (), {"class_path": class_path}))
    if cls is None:
        return []
    parser = ArgumentParser()
    parser.add_class_arguments(cls, as_group=False)
    return [o.removeprefix("--") for a in parser_actions(parser) for o in a.option_strings
            if o.startswith("--") and o != "--help"]


def _unknown_setting(keys: list[str], message: str) -> str | None:
    """For ``--data.pth x``: "--data.pth: ShakespeareDataModule takes no setting pth (did you mean --data.path?)"."""
    option = re.search(r"Option '([^']+)' is not accepted", message)
    given_class = re.search(r"Problem with given class_path '([^']+)'", message)
    if not option or not keys:
        return None
    group = "--" + ".".join(keys)
    line = f"{group}.{option[1]}: "
    if given_class:
        settings = _class_settings(given_class[1])
        line += f"{given_class[1].rsplit('.', 1)[-1]} takes no setting {option[1]!r}"
        close = closest_flag(option[1], settings)
        line += f" (did you mean {group}.{close}?)" if close else f"; it takes {', '.join(settings)}"
    else:
        line += f"no such setting (see {group}.help)"
    return line


def check_config_files(argv: list[str]) -> None:
    """Raise ValueError naming a ``--config`` file that is not UTF-8 text or not a YAML mapping.

    jsonargparse reports these as "Problems parsing config: while parsing a flow node", "Unexpected
    config: hello" or a bare UnicodeDecodeError, none naming the file. Values that are not existing
    files (inline YAML, a missing path) are left to jsonargparse, which already words those well.
    """
    import yaml  # PyYAML, as jsonargparse reads configs with it

    values = [b for a, b in itertools.pairwise(argv) if a in ("--config", "-c")]
    values += [a.split("=", 1)[1] for a in argv if a.startswith("--config=")]
    for value in values:
        if not os.path.isfile(value):
            continue
        with open(value, "rb") as f:
            raw = f.read()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise ValueError(f"--config {value}: not UTF-8 text (byte {raw[err.start]:#04x} at offset {err.start}); "
                             f"save it as UTF-8.") from None
        try:
            settings = yaml.safe_load(text)
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(err, "problem", None) or str(err).splitlines()[0]
            raise ValueError(f"--config {value}: not valid YAML: {problem}{where}.") from None
        if settings is None:  # empty, or comments only: jsonargparse says "Unexpected config: "
            raise ValueError(f"--config {value}: holds no settings; write some (e.g. 'trainer: {{max_steps: 100}}', "
                             f"or '{{}}' for none) or leave --config out.")
        if not isinstance(settings, dict):
            shown = text.strip().splitlines()[0][:40]
            raise ValueError(f"--config {value}: holds {shown!r}, not a mapping of settings such as "
                             f"'trainer: {{max_steps: 100}}' (see `charlm fit --print_config`).")


def _missing_flags(message: str) -> tuple[str, str] | None:
    """For "required: classify.ckpt_path" (the root parser checks a command's required arguments):
    the command, and "the following arguments are required: --ckpt_path"."""
    from charlm.cli.table import NAMES

    match = re.fullmatch(r"the following arguments are required: (.*)", message.strip())
    keys = match[1].split(", ") if match else []
    commands = {key.split(".", 1)[0] for key in keys}
    if len(commands) != 1 or not all("." in key for key in keys) or not commands <= set(NAMES):
        return None
    flags = ", ".join("--" + key.split(".", 1)[1] for key in keys)
    return commands.pop(), f"the following arguments are required: {flags}"


class ReadableDefaults(DefaultHelpFormatter):
    """jsonargparse's help formatter, showing a default that holds a newline or a tab as it is written on a
    command line (``default: "\\n"``): printed as it is, it broke the help line (``default: `` and a blank)."""

    def _expand_help(self, action: argparse.Action) -> str:
        if isinstance(action.default, str) and not action.default.isprintable():
            action = copy.copy(action)
            action.default = json.dumps(action.default)
        return super()._expand_help(action)


_RAISE = contextvars.ContextVar("charlm_parse_errors_raised", default=False)


@contextlib.contextmanager
def errors_raised() -> Iterator[None]:
    """Within it, a command line that does not parse raises ValueError with the one line (for Python callers,
    charlm.train) instead of printing it and exiting 2."""
    token = _RAISE.set(True)
    try:
        yield
    finally:
        _RAISE.reset(token)


class OneLineErrors:
    """Mixin for jsonargparse parsers: ``error`` prints one line and exits 2. A flag must be spelt in full
    (``allow_abbrev=False``): argparse would take ``--text`` for ``--text_file`` and ``--trainer.max_step``
    for ``--trainer.max_steps`` without a word; a misspelt flag gets a did-you-mean instead."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)  # type: ignore[call-arg]

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        if os.environ.get("CHARLM_TRACEBACK") or not getattr(self, "exit_on_error", True):
            super().error(message, ex)  # type: ignore[misc]
        parser = getattr(ex, "subcommand_parser", None) or self
        prog = str(getattr(parser, "prog", "charlm")).replace(" [options]", "")
        if flag := re.search(r"unrecognized arguments: .*?(--optimizer|--lr_scheduler)\b", message):
            line = f"{flag[1]} is not available: {OPTIMIZER_HINT}"
        elif missing := _missing_flags(message):  # checked by the root parser: name the command's flags
            command, line = missing
            prog = f"{prog} {command}"
        else:
            options = [s for a in parser_actions(parser) for s in a.option_strings]
            line = short_parse_error(message) + _suggestion(message, options)
        if _RAISE.get():
            raise ValueError(line)
        sys.stderr.write(f"charlm: error: {line} (see `{prog} --help`)\n")
        sys.exit(2)

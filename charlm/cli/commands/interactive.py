"""``charlm sample --interactive``: prompts from standard input, one sample each, the model kept loaded.

Input, from a terminal or a pipe, line by line:

- a line is a prompt; the model continues it (the line's own newline is not part of it). A line
  ending in a backslash goes on with the next line: the backslash becomes a newline, so
  ``ROMEO:\\`` then ``What`` is the prompt "ROMEO:\\nWhat". An empty line is the prompt "\\n", the
  default of ``--prompt``. ``::text`` is the prompt ":text".
- a line starting with ``:`` is a command (HELP below): ``:temperature 0.5``, ``:set top_k=5
  top_p=0.9``, ``:show``, ``:help``, ``:quit``.

Output: standard output holds the samples only, each followed by one line
``===== end of sample N =====`` (N counts the prompts from 1; a sample stopped by Ctrl-C ends with
``===== end of sample N (stopped by Ctrl-C) =====``, a refused prompt has only
``===== end of sample N (refused, see stderr) =====``), so a script splits on lines starting with
``===== end of sample ``, and a script that writes one prompt at a time can read up to that line
before it writes the next. Errors (``charlm: error: line L: ...``), notes, the ``> `` prompt and
the answers to commands go to standard error; prompt, banner and answers only when the input is a
terminal.

With ``--seed`` (or ``:seed N``) the random generator is seeded once there, so the same lines give
the same samples. Ctrl-C stops the sample being written and the session goes on; at the prompt,
Ctrl-C clears the line and a second one in a row ends the session (exit 130), as end of input does
(Ctrl-D; exit 0). A Ctrl-C never ends the session while a line is being handled (CtrlC): during a
sample it stops that sample, whose end line still comes, marked; during a command or the
bookkeeping around a sample (commands take no time) it is let go.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import signal
import sys
from collections.abc import Iterator
from types import FrameType
from typing import Literal

import torch

from charlm.checkpoint import LoadedModel
from charlm.infer.beam import check_beam_memory
from charlm.infer.engine import Settings, check_settings, encode_prompt, seeded, write_beams, write_samples
from charlm.model import CharRNNConfig

HELP = """\
commands (a line starting with ':'):
  :help                 this list
  :show                 the current settings
  :NAME VALUE           change one setting, e.g. :temperature 0.5
  :set NAME=VALUE ...   change several at once, e.g. :set top_k=5 top_p=0.9
  :quit                 end the session (as end of input, Ctrl-D, does)
settings: length, temperature, top_k, top_p, seed (seeds the generator now), beam (beam search of
  that width instead of sampling), num_samples (beams to print, at most beam), unknown (prompt bytes
  the model never saw: error refuses the prompt, skip leaves them out). 'none' clears top_k, top_p,
  seed and beam.
prompts: one per line; end a line with \\ to go on with the next; an empty line is the prompt "\\n";
  '::text' is the prompt ':text'. Ctrl-C stops a sample; twice at the prompt, it ends the session."""

NAMES = ("length", "temperature", "top_k", "top_p", "seed", "beam", "num_samples", "unknown")
FLOATS = ("temperature", "top_p")  # the others are integers, but for the words of WORDS
CLEARABLE = ("top_k", "top_p", "seed", "beam")
WORDS = {"unknown": ("error", "skip")}  # settings that take one of these words


def parse_command(line: str) -> dict[str, object] | str:
    """The settings a ``:`` line changes ({name: value}), or the name of a command without settings
    (help, show, quit). Raises ValueError saying what is wrong with the line."""
    words = line[1:].split()
    if not words:
        raise ValueError("a ':' line needs a command; :help lists them")
    command, rest = words[0], words[1:]
    if command in ("help", "?", "show", "quit", "exit"):
        if rest:
            raise ValueError(f":{command} takes no value")
        return {"?": "help", "exit": "quit"}.get(command, command)
    if command == "set":
        if not rest or any("=" not in word for word in rest):
            raise ValueError("write :set NAME=VALUE [NAME=VALUE ...], e.g. :set temperature=0.5 top_k=5")
        pairs = [word.split("=", 1) for word in rest]
    elif len(rest) == 1:
        pairs = [[command, rest[0]]]
    else:
        raise ValueError(f"write :{command} VALUE (one value){'; :help lists the commands' if rest else ''}"
                         if command in NAMES else f"no command :{command}; :help lists them")
    changes = {}
    for name, text in pairs:
        if name not in NAMES:
            raise ValueError(f"no setting {name!r} (:help lists the commands); the settings are {', '.join(NAMES)}")
        changes[name] = parse_value(name, text)
    return changes


def parse_value(name: str, text: str) -> int | float | str | None:
    """The value of setting ``name`` written as ``text`` ('none' or 'off' clears an optional one)."""
    if name in WORDS:
        if text not in WORDS[name]:
            raise ValueError(f":{name} takes {' or '.join(WORDS[name])}, got {text!r}")
        return text
    if text.lower() in ("none", "off") and name in CLEARABLE:
        return None
    try:
        return float(text) if name in FLOATS else int(text)
    except ValueError:
        kind = "a number" if name in FLOATS else "an integer"
        clear = " or none" if name in CLEARABLE else ""
        raise ValueError(f":{name} takes {kind}{clear}, got {text!r}") from None


def banner(config: CharRNNConfig) -> str:
    """What a terminal user reads first: the model, and how to talk to it, in lines of at most 80 columns."""
    return (f"charlm: sampling interactively from a {config.num_layers} x {config.hidden_size} {config.cell.upper()} "
            f"({config.vocab_size} symbols).\n"
            "One prompt per line; end a line with \\ to go on with the next.\n"
            ":help lists the commands; Ctrl-C stops a sample; Ctrl-D quits.")


def as_command(message: str) -> str:
    """A settings error as the session words it: ``--top_k`` -> ``:top_k``."""
    return re.sub(r"--(" + "|".join(NAMES) + r")\b", r":\1", message)


class CtrlC:
    """The SIGINT handler of a session: a KeyboardInterrupt only between ``arm()`` and ``disarm()``,
    at most one per ``arm()``; any other Ctrl-C is only noted (``pending``).

    Python raises KeyboardInterrupt between any two bytecodes, so with the default handler a Ctrl-C
    can land in the bookkeeping of a line (the end-of-sample line, the counter, a setting half
    changed) and end the session. Here it lands only where the session expects it: while a line is
    read, and while a sample is written (``arm`` inside a ``try`` whose ``except KeyboardInterrupt``
    runs disarmed, so that no second Ctrl-C can escape from it).
    """

    def __init__(self) -> None:
        self.armed = False
        self.pending = False  # a Ctrl-C came while disarmed

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.armed:
            self.armed = False  # one KeyboardInterrupt per arm(): the handler of the first runs undisturbed
            raise KeyboardInterrupt
        self.pending = True

    def arm(self, deliver_pending: bool) -> None:
        """Let a Ctrl-C raise from now on; one that came since the last ``disarm`` raises now if
        ``deliver_pending`` (it came while the line was being handled), else is forgotten."""
        if not deliver_pending:
            self.pending = False
        self.armed = True
        if self.pending:  # checked after arming: one that comes in between raises in the handler instead
            self.pending = self.armed = False
            raise KeyboardInterrupt

    def disarm(self) -> None:
        self.armed = False

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """This handler for SIGINT, the previous one back afterwards."""
        previous = signal.signal(signal.SIGINT, self)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)


class Session:
    """One interactive session: read a line, sample or change a setting, until end of input."""

    def __init__(self, loaded: LoadedModel, settings: Settings, generator: torch.Generator, stop_strings: list[str],
                 echo_prompt: bool, unknown: Literal["error", "skip"]) -> None:
        self.loaded, self.settings, self.generator = loaded, settings, generator
        self.stop_strings, self.echo_prompt, self.unknown = stop_strings, echo_prompt, unknown
        self.device = next(loaded.model.parameters()).device
        self.terminal = sys.stdin.isatty()
        self.editing = self.terminal and sys.stdout.isatty()  # input(): line editing and history
        if self.editing:
            with contextlib.suppress(ImportError):
                import readline  # noqa: F401  (input() edits lines with it once imported)
        self.line_number = 0  # lines read, for messages
        self.count = 0  # prompts answered, for the end-of-sample lines
        self.ctrl_c = CtrlC()

    def run(self) -> None:
        """Answer every line of standard input; the samples go to stdout only (none is kept: a
        session may run for hours)."""
        with self.ctrl_c.installed():
            self.loop()

    def loop(self) -> None:
        """Read and handle lines until end of input, :quit, or Ctrl-C twice at the prompt."""
        if self.terminal:
            self.say(banner(self.loaded.model.config))
        pending: bytes | None = None  # the lines so far of a prompt continued with a backslash
        interrupted = False  # Ctrl-C at the prompt once already
        while True:
            try:
                # a Ctrl-C while the last line was handled is done with; but after a first Ctrl-C at the
                # prompt, one that comes while "(Ctrl-C again...)" is written is the second
                self.ctrl_c.arm(deliver_pending=interrupted)
                try:
                    line = self.read_line("> " if pending is None else "... ")
                finally:
                    self.ctrl_c.disarm()
            except KeyboardInterrupt:
                if interrupted:
                    self.say("")
                    raise  # charlm's entry point: exit 130, quietly
                interrupted, pending = True, None
                self.say("\n(Ctrl-C again, or Ctrl-D, to quit)")
                continue
            interrupted = False
            # from here to the next read, a Ctrl-C raises only while a sample is written (answer)
            if line is None:  # end of input; an unfinished continued prompt is still a prompt
                if pending is not None:
                    self.answer(pending)
                break
            if line.endswith(b"\\"):
                pending = (pending or b"") + line[:-1] + b"\n"
                continue
            if pending is None and line.startswith(b":") and not line.startswith(b"::"):
                if self.command(line.decode("utf-8", errors="replace")) == "quit":
                    break
                continue
            text = (pending or b"") + line
            pending = None
            self.answer(text[1:] if text.startswith(b"::") else text)
        if self.terminal:
            self.say("")

    def read_line(self, prompt: str) -> bytes | None:
        """The next line without its line end, or None at end of input."""
        if self.editing:
            try:
                line = input(prompt).encode("utf-8", errors="surrogateescape")
            except EOFError:
                return None
        else:
            if self.terminal:
                self.say(prompt, end="")
            line = sys.stdin.buffer.readline()
            if not line:
                return None
            line = line.removesuffix(b"\n").removesuffix(b"\r")
        self.line_number += 1  # not counted if a Ctrl-C took the line away
        return line

    def answer(self, prompt: bytes) -> None:
        """Write the sample (or beams) for one prompt, then its end-of-sample line: a Ctrl-C (CtrlC)
        stops only the writing of the sample, never the end line or the session."""
        self.count += 1
        try:
            self.ctrl_c.arm(deliver_pending=True)  # a Ctrl-C since the line was read stops this sample
            try:
                self.write(prompt or b"\n")
            finally:
                self.ctrl_c.disarm()
            how = ""
        except ValueError as err:
            self.error(as_command(str(err)))
            # over a pipe, stdout holds the samples only; at a terminal the reason is the line just above
            how = " (refused: the reason is above)" if self.terminal else " (refused, see stderr)"
        except KeyboardInterrupt:
            sys.stdout.write("\n")
            how = " (stopped by Ctrl-C)"
        sys.stdout.write(f"===== end of sample {self.count}{how} =====\n")
        sys.stdout.flush()

    def write(self, prompt: bytes) -> None:
        """Write the sample (or beams) for one prompt to stdout (num_samples is 1 unless beam is on:
        sample() and change() refuse the rest)."""
        prompt, ids = encode_prompt(self.loaded.vocab, prompt, self.unknown, f"line {self.line_number}")
        s = self.settings
        if s.beam is not None:
            write_beams(self.loaded, prompt, ids, s, self.echo_prompt, sys.stdout)
        else:
            write_samples(self.loaded, prompt, ids, s, self.generator, self.stop_strings, self.echo_prompt, sys.stdout)

    def command(self, line: str) -> str | None:
        """Carry out a ``:`` line; returns "quit" for :quit."""
        try:
            parsed = parse_command(line)
            if parsed == "help":
                self.say(HELP, always=True)
            elif parsed == "show":
                self.say(self.describe(), always=True)
            elif parsed == "quit":
                return "quit"
            else:
                self.change(parsed)
        except ValueError as err:
            self.error(as_command(str(err)))
        return None

    def change(self, changes: dict[str, object]) -> None:
        """Apply settings all together, or none of them if any is refused."""
        unknown = changes.pop("unknown", self.unknown)  # the session's, not a sample's setting
        new = dataclasses.replace(self.settings, **changes)
        if "beam" in changes and "num_samples" not in changes and new.beam is None and new.num_samples > 1:
            new = dataclasses.replace(new, num_samples=1)  # :beam none alone goes back to one sample per prompt
        if new.beam is None and new.num_samples > 1:
            raise ValueError(":num_samples above 1 needs :beam (a session streams one sample per prompt)")
        if new.beam is not None and self.stop_strings:
            raise ValueError(":beam runs every continuation to :length, so it does not combine with --stop")
        check_settings(new)
        if new.beam is not None:
            check_beam_memory(new.beam, new.length, self.loaded.model, self.device, keep=new.num_samples)
        self.settings, self.unknown = new, unknown
        if "seed" in changes:
            seeded(self.generator, new.seed)
        unused = [n for n in ("temperature", "top_k", "top_p") if n in changes and new.beam is not None]
        self.say(self.describe() + (f" ({', '.join(unused)} unused while beam is on)" if unused else ""))

    def describe(self) -> str:
        s = self.settings
        return ", ".join(f"{name} {'none' if value is None else value}" for name, value in [
            ("length", s.length), ("temperature", s.temperature), ("top_k", s.top_k), ("top_p", s.top_p),
            ("unknown", self.unknown), ("seed", s.seed), ("beam", s.beam), ("num_samples", s.num_samples)])

    def say(self, text: str, end: str = "\n", always: bool = False) -> None:
        """A line for the person at the terminal (stderr; nothing over a pipe unless ``always``)."""
        if self.terminal or always:
            print(text, end=end, file=sys.stderr, flush=True)

    def error(self, message: str) -> None:
        """``charlm: error: line L: message`` on stderr (L: the line being handled)."""
        where = f"line {self.line_number}: "
        print(f"charlm: error: {message if message.startswith(where) else where + message}", file=sys.stderr,
              flush=True)

"""``charlm sample --interactive`` as a script and a person use it: through a real pipe, and through a
real pseudo-terminal where Ctrl-C is the byte 0x03 that the terminal turns into SIGINT."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import subprocess
import sys
import termios
import time

import pytest

from charlm.interactive import parse_command
from tests.cli_runs import charlm, child_env, default_signals
from tests.conftest import REPO

OLD_CKPT = str(REPO / "tests" / "fixtures" / "lstm_1x16_v0.ckpt")  # 58 symbols (no 'K'), 1 x 16 LSTM
END = re.compile(r"^===== end of sample (\d+)(.*) =====\n", re.M)


def records(stdout: str) -> list[tuple[str, str]]:
    """(text, how it ended) of each sample, split on the end-of-sample lines."""
    parts = END.split(stdout)
    assert parts[-1] == "", stdout  # nothing after the last end line
    numbers, hows, texts = parts[1::3], parts[2::3], parts[0::3][:-1]
    assert numbers == [str(i + 1) for i in range(len(numbers))], stdout
    return list(zip(texts, hows, strict=True))


def test_a_script_pipes_prompts_and_settings(charlm_main):
    lines = ["ROMEO:", ":temperature 0", "JULIET:", ":bogus 1", ":top_k x", "bad\u20acline", "KING",
             ":set beam=2 num_samples=2", "AB\\", "C", "::colon", ":beam none", ""]
    args = ["sample", "--ckpt_path", OLD_CKPT, "--interactive", "--length", "30", "--seed", "1"]
    first = charlm(*args, input="\n".join(lines) + "\n")
    assert first.returncode == 0, first.stderr
    got = records(first.stdout)
    assert [how for _, how in got] == ["", "", " (refused, see stderr)", " (refused, see stderr)", "", "", ""]
    # the first sample is the one `sample --prompt ROMEO: --seed 1` writes: the generator is seeded once, first
    alone = charlm_main("sample", "--ckpt_path", OLD_CKPT, "--prompt", "ROMEO:", "--length", "30", "--seed", "1")
    assert got[0][0] == alone.stdout
    greedy = charlm_main("sample", "--ckpt_path", OLD_CKPT, "--prompt", "JULIET:", "--length", "30",
                         "--temperature", "0")
    assert got[1][0] == greedy.stdout
    assert got[2][0] == got[3][0] == ""
    beams = re.split(r"^===== beam [12]/2: \d+\.\d{4} bits per character =====\n", got[4][0], flags=re.M)
    assert beams[0] == "" and len(beams) == 3 and all(b.startswith("AB\nC") for b in beams[1:])
    assert got[5][0].count("===== beam ") == 2 and got[5][0].split("\n")[1].startswith(":colon")
    assert got[6][0].startswith("\n") and "===== beam" not in got[6][0]  # beam off; empty line = prompt "\n"
    errors = [line for line in first.stderr.splitlines() if line.startswith("charlm: error:")]
    assert len(errors) == 4, first.stderr
    assert "no setting 'bogus'" in errors[0] and ":top_k takes an integer" in errors[1]
    assert errors[2].startswith("charlm: error: line 6: ") and "'€' (U+20AC, bytes e2 82 ac)" in errors[2]
    assert errors[3].startswith("charlm: error: line 7: ") and "'K' (0x4b)" in errors[3]
    assert "--unknown skip" in errors[2]
    again = charlm(*args, input="\n".join(lines) + "\n")
    assert again.stdout == first.stdout  # same seed, same input: same output


def test_unknown_skip_and_settings_answers_over_a_pipe():
    out = charlm("sample", "--ckpt_path", OLD_CKPT, "--interactive", "--unknown", "skip", "--length", "5",
                 "--seed", "2", input="bad\u20acline\n:show\n:help\n:num_samples 2\n:quit\nnever read\n")
    assert out.returncode == 0, out.stderr
    ((text, how),) = records(out.stdout)
    assert how == "" and text.startswith("badline")
    assert "note: line 1: skipped 3 bytes" in out.stderr
    assert "length 5, temperature 0.8, top_k none, top_p none, seed 2, beam none, num_samples 1" in out.stderr
    assert ":set NAME=VALUE" in out.stderr  # :help
    assert "charlm: error: :num_samples above 1 needs :beam" in out.stderr


def test_bad_commands_are_named():
    assert parse_command(":set temperature=0.5 top_k=none") == {"temperature": 0.5, "top_k": None}
    assert parse_command(":seed 3") == {"seed": 3}
    for line, words in [(":", "needs a command"), (":temperature", "write :temperature VALUE"),
                        (":frobnicate", "no command :frobnicate"), (":set top_k", "write :set NAME=VALUE"),
                        (":length none", ":length takes an integer, got 'none'"), (":show x", "takes no value")]:
        with pytest.raises(ValueError, match=re.escape(words)):
            parse_command(line)


# --- a real terminal ------------------------------------------------------------------------------
class Terminal:
    """``python -m charlm ARGS`` on a new pseudo-terminal that is its controlling terminal, so that
    the byte 0x03 typed there reaches it as SIGINT, as Ctrl-C at a keyboard does."""

    def __init__(self, *args: str) -> None:
        self.master, slave = pty.openpty()

        def control() -> None:  # after setsid (start_new_session): make the pty this session's terminal
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        with default_signals():
            self.proc = subprocess.Popen([sys.executable, "-m", "charlm", *args], cwd=REPO, stdin=slave,
                                         stdout=slave, stderr=slave, start_new_session=True, preexec_fn=control,
                                         env=child_env(TERM="dumb"))
        os.close(slave)
        self.seen = ""

    def type(self, data: str) -> None:
        os.write(self.master, data.encode())

    def wait_for(self, pattern: str, after: int = 0, deadline: float = 120) -> int:
        """Read until ``pattern`` (a regex; ``.`` matches newlines too) shows after position ``after``;
        returns where it ends.
        (The deadline only keeps a broken build from hanging the test run.)"""
        end = time.monotonic() + deadline
        while not (found := re.compile(pattern, re.S).search(self.seen, after)):
            assert time.monotonic() < end, f"no {pattern!r} in {self.seen[-2000:]!r}"
            if select.select([self.master], [], [], 1)[0]:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:  # the child has gone and closed the terminal
                    chunk = b""
                assert chunk, f"the terminal closed before {pattern!r}: {self.seen[-2000:]!r}"
                self.seen += chunk.decode("utf-8", errors="replace").replace("\r\n", "\n")
        return found.end()

    def close(self) -> int:
        try:
            while select.select([self.master], [], [], 1)[0] and os.read(self.master, 65536):
                pass
        except OSError:
            pass
        code = self.proc.wait(timeout=120)
        os.close(self.master)
        return code


def test_ctrl_c_stops_a_sample_in_a_terminal_and_the_session_goes_on():
    term = Terminal("sample", "--ckpt_path", OLD_CKPT, "--interactive", "--length", "10000000", "--seed", "1")
    try:
        at = term.wait_for(r"sampling interactively.*?\n> ")
        term.type("ROMEO:\n")
        at = term.wait_for(r"ROMEO:\n.{300}", at)  # the sample streams (10 million bytes: Ctrl-C lands in it)
        term.type("\x03")
        at = term.wait_for(r"===== end of sample 1 \(stopped by Ctrl-C\) =====\n> ", at)
        term.type(":length 20\n")
        at = term.wait_for(r"length 20, temperature 0.8.*?\n> ", at)
        term.type("JULIET:\n")
        at = term.wait_for(r"JULIET:.{20}\n===== end of sample 2 =====\n> ", at)
        term.type("\x03")  # at the prompt: the session stays, and says how to leave
        at = term.wait_for(r"Ctrl-C again, or Ctrl-D, to quit\)\n> ", at)
        term.type("\x03")
        assert term.close() == 130
    finally:
        term.proc.kill()


def test_ctrl_d_in_a_terminal_ends_the_session():
    term = Terminal("sample", "--ckpt_path", OLD_CKPT, "--interactive", "--length", "5", "--temperature", "0")
    try:
        at = term.wait_for(r"\n> ")
        term.type("a\\\n")  # a backslash goes on with the next line
        at = term.wait_for(r"\.\.\. ", at)
        term.type("b\n")
        at = term.wait_for(r"a\nb.{5}\n===== end of sample 1 =====\n> ", at)
        term.type("\x04")
        assert term.close() == 0
    finally:
        term.proc.kill()

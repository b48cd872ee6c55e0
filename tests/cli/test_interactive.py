"""``charlm sample --interactive`` as a script and a person use it: through a real pipe, and through a
real pseudo-terminal where Ctrl-C is the byte 0x03 that the terminal turns into SIGINT."""

from __future__ import annotations

import fcntl
import os
import pathlib
import pty
import re
import select
import subprocess
import sys
import termios
import threading
import time

import pytest

from charlm.cli.commands.interactive import parse_command
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
    beams = re.split(r"^===== beam [12]/2: \d+\.\d{4} bpc =====\n", got[4][0], flags=re.M)
    assert beams[0] == "" and len(beams) == 3 and all(b.startswith("AB\nC") for b in beams[1:])
    assert got[5][0].count("===== beam ") == 2 and got[5][0].split("\n")[1].startswith(":colon")
    assert got[6][0].startswith("\n") and "===== beam" not in got[6][0]  # beam off; empty line = prompt "\n"
    errors = [line for line in first.stderr.splitlines() if line.startswith("charlm: error:")]
    assert len(errors) == 4, first.stderr
    assert "no setting 'bogus'" in errors[0] and ":top_k takes an integer" in errors[1]
    assert errors[0].startswith("charlm: error: line 4: ") and errors[1].startswith("charlm: error: line 5: ")
    assert errors[2].startswith("charlm: error: line 6: ") and "'€' (U+20AC, bytes e2 82 ac)" in errors[2]
    assert errors[3].startswith("charlm: error: line 7: ") and "'K' (0x4b)" in errors[3]
    assert ":unknown skip" in errors[2]  # the session's own command (issue 20, 7), not the flag
    again = charlm(*args, input="\n".join(lines) + "\n")
    assert again.stdout == first.stdout  # same seed, same input: same output


def test_unknown_skip_and_settings_answers_over_a_pipe():
    out = charlm("sample", "--ckpt_path", OLD_CKPT, "--interactive", "--unknown", "skip", "--length", "5",
                 "--seed", "2", input="bad\u20acline\n:show\n:help\n:num_samples 2\n:quit\nnever read\n")
    assert out.returncode == 0, out.stderr
    ((text, how),) = records(out.stdout)
    assert how == "" and text.startswith("badline")
    assert "note: line 1: skipped 3 bytes" in out.stderr
    assert ("length 5, temperature 0.8, top_k none, top_p none, unknown skip, seed 2, beam none, num_samples 1"
            in out.stderr)
    assert ":set NAME=VALUE" in out.stderr  # :help
    assert "charlm: error: line 4: :num_samples above 1 needs :beam" in out.stderr


def test_beam_off_keeps_a_num_samples_given_with_it_and_refuses_it():
    # `:beam none` alone goes back to one sample per prompt; `:set beam=none num_samples=2` asks for two
    # streamed samples, which a session does not do: refused, and nothing of the line applied
    lines = [":set beam=2 num_samples=2", ":set beam=none num_samples=2", ":show", ":beam none", ":show"]
    out = charlm("sample", "--ckpt_path", OLD_CKPT, "--interactive", "--length", "5",
                 input="\n".join(lines) + "\n")
    assert out.returncode == 0 and out.stdout == "", out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("charlm: error:")]
    refused = "charlm: error: line 2: :num_samples above 1 needs :beam (a session streams one sample per prompt)"
    assert errors == [refused], out.stderr
    shows = [line for line in out.stderr.splitlines() if line.startswith("length 5")]
    assert [show.split(", ")[-2:] for show in shows] == [["beam 2", "num_samples 2"], ["beam none", "num_samples 1"]]


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

    def __init__(self, *args: str, stdout: int | None = None, stderr: int | None = None) -> None:
        """``stdout`` / ``stderr``: a file descriptor to write to instead of the terminal."""
        self.master, slave = pty.openpty()

        def control() -> None:  # after setsid (start_new_session): make the pty this session's terminal
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        with default_signals():
            self.proc = subprocess.Popen([sys.executable, "-m", "charlm", *args], cwd=REPO, stdin=slave,
                                         stdout=slave if stdout is None else stdout,
                                         stderr=slave if stderr is None else stderr, start_new_session=True,
                                         preexec_fn=control,
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


PROMPT_PAUSE = 0.5  # seconds between seeing a prompt and pressing Ctrl-C at it (see below)


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
        # At the prompt. A pause first: CPython's input() with readline loses a SIGINT that lands
        # between its drawing the prompt and its waiting for a key (its select() has no timeout), a
        # window of microseconds for a person but one a test that types at once can hit.
        time.sleep(PROMPT_PAUSE)
        term.type("\x03")  # the session stays, and says how to leave
        at = term.wait_for(r"Ctrl-C again, or Ctrl-D, to quit\)\n> ", at)
        time.sleep(PROMPT_PAUSE)
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


# --- a Ctrl-C between the sample and its end line, or in a command ---------------------------------
PAGE = 4096  # the smallest pipe (F_SETPIPE_SZ rounds up to a page): writes that fill it merge into that page


def small_pipe() -> tuple[int, int]:
    """(read end, write end) of a pipe that holds exactly PAGE bytes, so that a write blocks there."""
    read, write = os.pipe()
    assert fcntl.fcntl(write, fcntl.F_SETPIPE_SZ, PAGE) == PAGE
    return read, write


def blocked_writing(pid: int) -> bool:
    """Whether the process sleeps in a write to a full pipe (the kernel's wait channel of its main
    thread: ``pipe_write``, or ``anon_pipe_write`` since Linux 6.x; ``0`` while it runs)."""
    return "pipe_write" in pathlib.Path(f"/proc/{pid}/wchan").read_text()


def wait_until_blocked_writing(term: Terminal, deadline: float = 120) -> None:
    """Poll (no timing in the assertion: the deadline only stops a broken build from hanging)."""
    end = time.monotonic() + deadline
    while not blocked_writing(term.proc.pid):
        wchan = pathlib.Path(f"/proc/{term.proc.pid}/wchan").read_text()
        assert term.proc.poll() is None and time.monotonic() < end, (wchan, term.seen[-2000:])
        time.sleep(0.05)


def read_pipe_until(fd: int, pattern: str, seen: bytes = b"", deadline: float = 120) -> bytes:
    end = time.monotonic() + deadline
    while not re.search(pattern.encode(), seen):
        assert time.monotonic() < end, seen[-2000:]
        if select.select([fd], [], [], 1)[0]:
            chunk = os.read(fd, 65536)
            assert chunk, f"the pipe closed before {pattern!r}: {seen[-2000:]!r}"
            seen += chunk
    return seen


def test_ctrl_c_as_the_end_of_sample_line_is_written_leaves_the_session_running():
    # stdout is a pipe that the sample fills to the last byte: "A", 4094 bytes, "\n" (the model's
    # 58 symbols are ASCII), so the process blocks writing the end line, outside the sample itself
    read, write = small_pipe()
    term = Terminal("sample", "--ckpt_path", OLD_CKPT, "--interactive", "--length", str(PAGE - 2), "--seed", "1",
                    stdout=write)
    os.close(write)
    try:
        term.wait_for(r"sampling interactively.*?\n> ")
        term.type("A\n")
        wait_until_blocked_writing(term)
        assert fcntl.ioctl(read, termios.FIONREAD, b"\0" * 4) == PAGE.to_bytes(4, sys.byteorder)  # the sample, all
        term.type("\x03")  # the terminal sends SIGINT, and echoes ^C once it has
        at = term.wait_for(r"\^C")
        out = read_pipe_until(read, r"===== end of sample 1 =====\n")  # written once there is room
        term.type(":length 5\nB\n")
        term.wait_for(r"length 5, .*?\n> .*?> ", at)
        out = read_pipe_until(read, r"===== end of sample 2 =====\n", out)
        term.type("\x04")
        assert term.close() == 0
    finally:
        term.proc.kill()
        os.close(read)
    got = records(out.decode())
    assert [how for _, how in got] == ["", ""]  # the Ctrl-C came after the sample was complete: not stopped
    assert len(got[0][0]) == PAGE and got[1][0].startswith("B")  # the whole sample, then the next


def test_ctrl_c_in_a_command_leaves_the_session_running():
    # stderr, where :help answers, is a pipe that fills: the answer's write blocks inside the command.
    # (stdout is a pipe too: line editing, which would wait on readline, is off, as over ssh -T)
    read, write = small_pipe()
    out_read, out_write = os.pipe()
    term = Terminal("sample", "--ckpt_path", OLD_CKPT, "--interactive", "--length", "5", "--temperature", "0",
                    stdout=out_write, stderr=write)
    os.close(write)
    os.close(out_write)
    errors = bytearray()
    drain = threading.Thread(target=lambda: errors.extend(read_all(read)))
    try:
        term.type(":help\n" * 8)  # 8 x 900 bytes: more than the pipe holds
        wait_until_blocked_writing(term)
        term.type("\x03")  # (the terminal also drops the lines typed ahead and not yet read)
        term.wait_for(r"\^C")
        drain.start()  # room on stderr: the :help goes on
        term.type("ROMEO:\n")
        out = read_pipe_until(out_read, r"===== end of sample 1 =====\n")
        term.type("\x04")
        assert term.close() == 0
    finally:
        term.proc.kill()
        if drain.is_alive():
            drain.join()
        os.close(read)
        os.close(out_read)
    assert records(out.decode()) == [(f"ROMEO:{out.decode()[6:11]}\n", "")]
    assert errors.count(b":set NAME=VALUE") >= 2 and b"Traceback" not in errors


def read_all(fd: int) -> bytes:
    """Everything from ``fd`` up to end of file."""
    data = b""
    while chunk := os.read(fd, 65536):
        data += chunk
    return data


def test_unknown_can_be_set_within_a_session(charlm_main):
    args = ["sample", "--ckpt_path", OLD_CKPT, "--interactive", "--length", "5", "--seed", "1"]
    out = charlm(*args, input="Ka\n:unknown skip\nKa\n:show\n:unknown maybe\n")
    got = records(out.stdout)
    assert [how for _, how in got] == [" (refused, see stderr)", ""]
    assert got[1][0].startswith("a") and len(got[1][0]) == len("a") + 5 + 1
    errors = [line for line in out.stderr.splitlines() if line.startswith("charlm: error:")]
    assert "or use :unknown skip" in errors[0]  # the session's own command, not the flag
    assert errors[1] == "charlm: error: line 5: :unknown takes error or skip, got 'maybe'"
    assert "unknown skip" in out.stderr.split("note: line 3")[1]  # :show


def test_the_banner_fits_80_columns():
    from charlm.cli.commands.interactive import banner
    from charlm.model import CharRNNConfig

    text = banner(CharRNNConfig(vocab_size=205, cell="lstm", num_layers=12, hidden_size=4096, embedding_dim=512))
    assert text.startswith("charlm: sampling interactively from a 12 x 4096 LSTM (205 symbols).")
    assert all(len(line) <= 80 for line in text.splitlines()), text


def test_a_refusal_at_a_terminal_is_shown_there_in_full():
    term = Terminal("sample", "--ckpt_path", OLD_CKPT, "--interactive", "--length", "5")
    try:
        at = term.wait_for(r"Ctrl-D quits\.\n> ")
        term.type("K\n")
        at = term.wait_for(r"charlm: error: line 1: the prompt contains the characters 'K' \(0x4b\).*Known symbols: "
                           r".*\n===== end of sample 1 \(refused: the reason is above\) =====\n> ", at)
        term.type("\x04")
        assert term.close() == 0
    finally:
        term.proc.kill()

"""A standard stream closed before charlm starts (`<&-`, `>&-`, `2>&-`): one line and exit 2 where the command
needs the stream, never an AttributeError traceback; the stream a command does not need is not asked for."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

FIXTURE = REPO / "tests" / "fixtures" / "lstm_1x16_v0.ckpt"


def charlm_with_closed(fds: tuple[int, ...], *args: str) -> subprocess.CompletedProcess:
    """``python -m charlm ARGS`` with the file descriptors ``fds`` closed (as a shell's ``<&-`` / ``>&-``)."""
    def close() -> None:
        for fd in fds:
            os.close(fd)

    return subprocess.run([sys.executable, "-m", "charlm", *args], capture_output=True, text=True, timeout=120,
                          preexec_fn=close, env={**os.environ, "OMP_NUM_THREADS": "1"})


@pytest.mark.parametrize(("fds", "args", "words"), [
    ((0,), ["sample", "--interactive"], "standard input is closed (<&-)"),
    ((0,), ["score"], "standard input is closed (<&-)"),
    ((1,), ["sample", "--length", "5"], "standard output is closed (>&-)"),
], ids=["sample --interactive <&-", "score <&-", "sample >&-"])
def test_a_closed_stream_the_command_needs_is_one_line(fds, args, words):
    done = charlm_with_closed(fds, args[0], "--ckpt_path", str(FIXTURE), *args[1:])
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert lines[0].startswith(f"charlm: error: {words}"), lines[0]


def test_a_closed_stream_the_command_does_not_need_is_no_matter():
    done = charlm_with_closed((0,), "sample", "--ckpt_path", str(FIXTURE), "--length", "5", "--seed", "1")
    assert done.returncode == 0 and len(done.stdout) > 5, done.stderr
    assert charlm_with_closed((2,), "sample", "--ckpt_path", str(FIXTURE), "--length", "5").returncode == 0

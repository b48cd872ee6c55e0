"""How ``python -m charlm`` ends when it cannot finish: one line a user can act on, or quietly.

- An OSError whose errno a user can act on (disk full, no permission, a read-only disk, a file where
  a folder should be, ...) becomes one line naming the file and what to do (``describe_os_error``).
- The reader of standard output went away (``charlm sample | head -c 100``): exit 141 without a
  word, as a shell pipeline expects (128 + SIGPIPE; ``quiet_broken_pipe``).
- Ctrl-C in a command that is not training: exit 130 (128 + SIGINT), without a traceback.
- A standard stream closed before start (``<&-``, ``>&-``: Python sets ``sys.stdin`` ... to None): reading a
  closed standard input, or starting with no standard output, is one line (``closed_standard_streams``).
"""

from __future__ import annotations

import errno
import os
import select
import signal
import sys
from typing import TextIO

BROKEN_PIPE_EXIT_STATUS = 128 + signal.SIGPIPE  # 141: what a shell reports for `... | head`
INTERRUPT_EXIT_STATUS = 128 + signal.SIGINT  # 130: what a shell reports after Ctrl-C

ELSEWHERE = ("point charlm elsewhere (runs: --trainer.default_root_dir; prepared corpora: --data.cache_dir or "
              "$CHARLM_CACHE; visualize: --out)")

# errno -> (what happened to {name}, what to do); a code missing here is not the user's to fix
_OS_ERRORS: dict[int, tuple[str, str]] = {
    errno.ENOSPC: ("could not write {name}: the disk is full", "Free some space there, or {elsewhere}."),
    errno.EDQUOT: ("could not write {name}: your disk quota is used up", "Free some space there, or {elsewhere}."),
    errno.EFBIG: ("could not write {name}: the file grew past what that disk (or `ulimit -f`) allows",
                  "Raise the limit, or {elsewhere}."),
    errno.EACCES: ("permission denied: {name}", "Give yourself access to it (chmod / chown), or {elsewhere}."),
    errno.EPERM: ("operation not permitted on {name}", "Give yourself access to it (chmod / chown), or {elsewhere}."),
    errno.EROFS: ("{name} is on a read-only file system", "Use a writable folder: {elsewhere}."),
    errno.ENOTDIR: ("{name}: part of this path is a file, not a folder", "Fix the path, or move that file away."),
    errno.EISDIR: ("{name} is a folder, where a file was expected", "Give the name of a file."),
    errno.ENOENT: ("{name} does not exist", "Check the path (a folder on it may be missing)."),
    errno.EEXIST: ("{name} already exists (as a file where a folder is needed?)",
                   "Move it away, or choose another path."),
    errno.ENAMETOOLONG: ("the path {name} is too long", "Use a shorter path."),
    errno.ELOOP: ("{name}: too many levels of symbolic links (a link loop?)", "Fix the links on that path."),
    errno.EMFILE: ("too many open files (at {name})", "Raise the limit (`ulimit -n 4096`) and run again."),
    errno.ENFILE: ("the system has too many open files (at {name})", "Close some programs and run again."),
    errno.EIO: ("input/output error at {name}",
                "The disk or network file system may be failing; check it, or use another."),
}


def describe_os_error(err: OSError, elsewhere: str = ELSEWHERE) -> str | None:
    """One line for an OSError the user can act on, naming its file; None for any other OSError. ``elsewhere``
    says how to write somewhere else (a command that writes one file: "choose another --out")."""
    if err.errno not in _OS_ERRORS:
        return None
    what, todo = _OS_ERRORS[err.errno]
    names = [str(n) for n in (err.filename, err.filename2) if n is not None]
    name = " -> ".join(names) if names else "a file"
    return f"{what.format(name=name)} ({err.strerror or os.strerror(err.errno)}). {todo.format(elsewhere=elsewhere)}"


CLOSED_STDIN = ("standard input is closed (<&-), and this command reads it: give the text with a flag "
                "(--text_file FILE, --prompt_file FILE) or on standard input (< FILE, or a pipe).")
CLOSED_STDOUT = ("standard output is closed (>&-), and charlm writes its results there: send them to a file "
                 "(> out.txt) or discard them (> /dev/null).")


class ClosedInput:
    """What ``sys.stdin`` is while standard input is closed: never a terminal; reading it raises ValueError
    (CLOSED_STDIN), which the entry point prints as one line. ``buffer`` is itself, for byte reads."""

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        raise ValueError(CLOSED_STDIN)

    def read(self, *_: object) -> str:
        raise ValueError(CLOSED_STDIN)

    readline = read

    @property
    def buffer(self) -> ClosedInput:
        return self


def closed_standard_streams() -> None:
    """Stand-ins for standard streams that were closed before start (Python gives None for them, and the first
    ``sys.stdout.write`` would be an AttributeError): stdin reads as a one-line error (ClosedInput); a closed
    stdout is refused now, before any work (ValueError CLOSED_STDOUT); a closed stderr is /dev/null, as there
    is nowhere to say anything (the exit status still tells)."""
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115  (for the life of the process)
    if sys.stdin is None:
        sys.stdin = ClosedInput()  # type: ignore[assignment]
    if sys.stdout is None:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115  (the interpreter's last flush needs a stream)
        raise ValueError(CLOSED_STDOUT)


def stream_closed(stream: TextIO) -> bool:
    """Whether the reader at the other end of ``stream``'s pipe has gone (``| head`` is done).

    True too where this cannot be told (no poll()): a broken pipe is then taken to be this one.
    """
    try:
        fd = stream.fileno()
    except (AttributeError, ValueError, OSError):
        return False  # not a real file (pytest's capture, a StringIO)
    if not hasattr(select, "poll"):
        return True
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))


def silence(stream: TextIO) -> None:
    """Point ``stream``'s file descriptor at /dev/null, so that the interpreter's last flush of
    what is still buffered cannot fail again ("Exception ignored ... BrokenPipeError")."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (AttributeError, ValueError, OSError):
        pass


def quiet_broken_pipe() -> bool:
    """After a BrokenPipeError: silence the closed stream(s); False if neither stdout nor stderr is
    closed (the error came from somewhere else and is a real one)."""
    closed = [s for s in (sys.stdout, sys.stderr) if stream_closed(s)]
    for stream in closed:
        silence(stream)
    return bool(closed)


def quiet_interrupt() -> None:
    """After Ctrl-C: flush what was written (the reader may be gone too: Ctrl-C reaches a whole pipeline)."""
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        silence(sys.stdout)

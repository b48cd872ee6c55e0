"""Entry point of ``python -m charlm`` and the ``charlm`` console script.

Mistakes in what the user asked for (a missing file, a bad value, a damaged archive, a full disk, a
folder without permission) end with one line ``charlm: error: ...`` and exit status 2 instead of a
traceback; set CHARLM_TRACEBACK=1 to see the traceback anyway. ``charlm sample | head`` ends
quietly with 141 once ``head`` has had enough, and Ctrl-C outside training with 130 (training
handles Ctrl-C itself: it saves ``interrupted.ckpt``).
"""

from __future__ import annotations

import os
import sys

from charlm.cli.exits import (
    BROKEN_PIPE_EXIT_STATUS,
    INTERRUPT_EXIT_STATUS,
    closed_standard_streams,
    describe_os_error,
    quiet_broken_pipe,
    quiet_interrupt,
)
from charlm.cli.parser import run_command
from datamodules.common.errors import (
    CacheWriteError,
    ChecksumMismatchError,
    CorpusUnavailableError,
    CorruptArchiveError,
)

# Exceptions whose message is written for the user: printed as one line, exit status 2. Add a
# class here when its messages name the file or flag at fault and say what to do. (Most of
# charlm's own errors subclass ValueError and are covered already.) OSErrors are described from
# their errno and file name by charlm.cli.exits.describe_os_error.
USER_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    FileNotFoundError,
    CorpusUnavailableError,
    ChecksumMismatchError,
    CorruptArchiveError,
    CacheWriteError,
)


def _dispatch() -> None:
    from charlm.cli.errors import check_config_files

    closed_standard_streams()  # `<&-`, `>&-`: one line, not an AttributeError on None
    check_config_files(sys.argv[1:])  # before jsonargparse, whose reports of a broken file do not name it
    run_command(sys.argv[1:])  # fit / validate / test: LightningCLI; the others without importing Lightning


def _fail(message: str) -> None:
    try:
        print(f"charlm: error: {message}", file=sys.stderr)
    except OSError:  # stderr itself is a closed pipe (`2>&1 | head`)
        quiet_broken_pipe()
    sys.exit(2)


def run() -> None:
    """``charlm ...``: run the command, with the exit statuses and one-line errors of the module docstring."""
    traceback = bool(os.environ.get("CHARLM_TRACEBACK"))
    try:
        _dispatch()
    except BrokenPipeError:
        if traceback or not quiet_broken_pipe():
            raise
        sys.exit(BROKEN_PIPE_EXIT_STATUS)
    except KeyboardInterrupt:
        if traceback:
            raise
        quiet_interrupt()
        sys.exit(INTERRUPT_EXIT_STATUS)
    except OSError as err:
        line = describe_os_error(err) if err.errno is not None else None
        if line is None and isinstance(err, USER_ERRORS):
            line = str(err)  # charlm's own FileNotFoundError: its message is already the line
        if traceback or line is None:
            raise
        _fail(line)
    except USER_ERRORS as err:
        if traceback:
            raise
        _fail(str(err))


if __name__ == "__main__":
    run()

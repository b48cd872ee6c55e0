"""Entry point of ``python -m charlm`` and the ``charlm`` console script.

Mistakes in what the user asked for (a missing file, a bad value) end with one clear line instead
of a traceback; set CHARLM_TRACEBACK=1 to see the traceback anyway.
"""

import os
import sys

from charlm.commands import NAMES as CHECKPOINT_COMMANDS
from datamodules.fetch import ChecksumMismatchError, CorpusUnavailableError

USER_ERRORS = (ValueError, FileNotFoundError, CorpusUnavailableError, ChecksumMismatchError)


def run() -> None:
    try:
        if len(sys.argv) > 1 and sys.argv[1] in CHECKPOINT_COMMANDS:
            from charlm.commands import run_command  # no Lightning import: half the start-up time

            run_command(sys.argv[1:])
        else:
            from charlm.cli import main

            main()
    except USER_ERRORS as err:
        if os.environ.get("CHARLM_TRACEBACK"):
            raise
        print(f"charlm: error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    run()

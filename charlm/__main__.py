"""Entry point of ``python -m charlm`` and the ``charlm`` console script.

Mistakes in what the user asked for (a missing file, a bad value) end with one clear line instead
of a traceback; set CHARLM_TRACEBACK=1 to see the traceback anyway.
"""

import os
import sys

from charlm.cli import main
from datamodules.fetch import ChecksumMismatchError, CorpusUnavailableError

USER_ERRORS = (ValueError, FileNotFoundError, CorpusUnavailableError, ChecksumMismatchError)


def run() -> None:
    try:
        main()
    except USER_ERRORS as err:
        if os.environ.get("CHARLM_TRACEBACK"):
            raise
        print(f"charlm: error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    run()

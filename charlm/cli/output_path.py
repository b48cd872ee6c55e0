"""The file a command writes (``export --output``, ``visualize --out``, the neuron pages of a run): refused
before any work when it cannot be or must not be (check_output_path: never over a file the same command
reads, never over an existing file unless asked), then written whole (write_output)."""

from __future__ import annotations

import os
from pathlib import Path

from charlm.cli.exits import describe_os_error
from datamodules.io.atomic_files import write_file


def _same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` are one file on disk (links and hard links included); False if either is missing."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_output_path(given: str, flag: str, what: str, example: str, *, inputs: dict[str, str | None],
                      folder_made: bool = False, overwrite: bool = False) -> Path:
    """The path ``flag`` names (``~`` expanded), or a one-line error naming the flag: one of the files the
    command reads (``inputs``: flag -> path; refused even with ``--overwrite``), a folder (suggesting ``example``
    inside it for ``what``, e.g. "the page"), a path through a file, a folder that does not exist (unless
    ``folder_made``: the command creates it), an existing file without ``overwrite`` (``--overwrite``). A name
    that is not a regular file (``/dev/stdout``, a FIFO) is written through and replaces nothing."""
    path = Path(given).expanduser()
    for input_flag, input_path in inputs.items():
        if input_path is not None and _same_file(path, Path(input_path).expanduser()):
            raise ValueError(f"{flag} {given} is the file this command reads as {input_flag}; it is never written "
                             f"over. Write {what} elsewhere, e.g. {flag} {example}")
    if path.is_dir():
        raise ValueError(f"{flag} {given} is a folder; give {what} a file name, e.g. {flag} {path / example}")
    blocker = next((p for p in path.absolute().parents if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        raise ValueError(f"{flag} {given}: {blocker} is a file, not a folder; choose another path for {what}.")
    if not folder_made and not path.parent.is_dir():
        raise FileNotFoundError(f"{flag}: the folder {path.parent} does not exist. Create it first "
                                f"(mkdir -p {path.parent}), or write elsewhere.")
    if not overwrite and path.is_file():  # is_file follows a link to the file it names
        raise ValueError(f"{flag}: {path} already exists. Add --overwrite to replace it, or choose another name.")
    return path


def write_output(target: Path, data: bytes, flag: str) -> Path:
    """Write ``data`` to ``target`` whole (datamodules.io.atomic_files.write_file: links and FIFOs written
    through) and return where it went; an OSError the user can act on is one line naming ``flag`` (the
    command's output flag) and what to do."""
    try:
        return write_file(target, data)
    except OSError as err:
        line = describe_os_error(err, f"give {flag} a file in another folder") if err.errno is not None else None
        if line is None:
            raise
        raise ValueError(f"{flag}: {line}") from None

"""The file a command writes (``export --output``, ``visualize --out``), refused before any work when it cannot be."""

from __future__ import annotations

from pathlib import Path


def check_output_path(given: str, flag: str, what: str, example: str, *, folder_made: bool = False,
                      overwrite: bool = True) -> Path:
    """The path ``flag`` names (``~`` expanded), or a one-line error naming the flag: a folder (suggesting
    ``example`` inside it for ``what``, e.g. "the page"), a path through a file, a folder that does not exist
    (unless ``folder_made``: the command creates it), an existing file without ``overwrite`` (``--overwrite``)."""
    path = Path(given).expanduser()
    if path.is_dir():
        raise ValueError(f"{flag} {given} is a folder; give {what} a file name, e.g. {flag} {path / example}")
    blocker = next((p for p in path.absolute().parents if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        raise ValueError(f"{flag} {given}: {blocker} is a file, not a folder; choose another path for {what}.")
    if not folder_made and not path.parent.is_dir():
        raise FileNotFoundError(f"{flag}: the folder {path.parent} does not exist. Create it first "
                                f"(mkdir -p {path.parent}), or write elsewhere.")
    if not overwrite and path.exists():
        raise ValueError(f"{flag}: {path} already exists. Add --overwrite to replace it, or choose another name.")
    return path

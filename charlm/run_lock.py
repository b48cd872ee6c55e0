"""One writer per run folder: ``<run folder>/charlm.lock`` names the process writing it.

Two fits in one folder (``fit --ckpt_path same.ckpt`` twice at once) would each write metrics.csv,
samples.jsonl and checkpoints there: rows twice, ``last-v1.ckpt``, a "best" of either. The folder's
writer (charlm's CSV logger, on rank 0 only: the process that writes the folder) takes the lock before
it touches metrics.csv (a resumed fit, before anything is prepared: ``charlm.resume_folder``) and gives
it back when the fit ends however it ends (Lightning finalizes the logger after Ctrl-C, SIGTERM and
crashes too; an exit handler is the backstop). A second process is refused in one line naming the first
one's pid. A lock whose process is gone (killed with SIGKILL, a machine that went down) is taken over,
with a note.

The lock file is written whole before it is linked into place (``os.link`` fails if the name exists),
so a reader never sees half of one. A process is told from a later one that reuses its pid by its
start time (Linux's /proc; elsewhere the pid alone). A lock from another host cannot be checked and
counts as held.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from charlm.run_folders import RunFolderError
from datamodules.rank_zero import rank_zero_note

LOCK_NAME = "charlm.lock"
_held: set[Path] = set()  # lock files this process holds, released at exit if the fit did not


class RunFolderInUse(RunFolderError):
    """Another live process writes the run folder (a user error: one line, exit 2)."""


def _start_time(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, /proc/<pid>/stat field 22), None where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]  # after "pid (comm)": field 3 is index 0


def _me() -> dict[str, Any]:
    return {"pid": os.getpid(), "host": socket.gethostname(), "start": _start_time(os.getpid()),
            "since": time.strftime("%Y-%m-%d %H:%M:%S"), "command": " ".join(["charlm", *sys.argv[1:]])[:300]}


def _read(lock: Path) -> dict[str, Any] | None:
    """The lock's holder, or None when there is no lock file; ``{}`` for one that is not charlm's."""
    try:
        holder = json.loads(lock.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) and isinstance(holder.get("pid"), int) else {}


def _is_mine(holder: dict[str, Any]) -> bool:
    return holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname()


def _alive(holder: dict[str, Any]) -> bool:
    """Whether the process that wrote ``holder`` still runs (a lock from another host: assumed so)."""
    if not holder:
        return False  # not a lock charlm wrote
    if holder.get("host") != socket.gethostname():
        return True
    try:
        os.kill(holder["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process
    started = _start_time(holder["pid"])
    return not (holder.get("start") and started and started != holder["start"])  # else: its pid, reused


def _in_use(folder: Path, holder: dict[str, Any]) -> RunFolderInUse:
    where = "" if holder.get("host") == socket.gethostname() else f" on {holder.get('host')}"
    return RunFolderInUse(
        f"the run folder {folder} is being written by another process: pid {holder['pid']}{where}, since "
        f"{holder.get('since', '?')} (its command line is in {folder / LOCK_NAME}); a run folder has one writer. "
        f"Wait for it to end, or stop it (kill {holder['pid']}: it saves interrupted.ckpt) and resume then; to "
        f"train a second copy, copy the checkpoint out of the run folder first (it then starts a new version_N).")


def hold(folder: str | os.PathLike) -> None:
    """Take ``folder``'s lock (created if need be), or keep it if this process holds it already; take over
    the lock of a process that is gone, with a note. Raises :class:`RunFolderInUse` if a live one holds it."""
    folder = Path(folder)
    lock = folder / LOCK_NAME
    folder.mkdir(parents=True, exist_ok=True)
    for _ in range(3):  # a stale lock removed, then a race with another taker at most
        if _link_new(lock):
            _held.add(lock)
            return
        holder = _read(lock)
        if holder is None:
            continue  # released meanwhile
        if _is_mine(holder):
            _held.add(lock)
            return
        if _alive(holder):
            raise _in_use(folder, holder)
        gone = f"pid {holder['pid']}, which is no longer running" if holder else "it is not charlm's"
        rank_zero_note(f"charlm: taking over {lock} ({gone}); that run ended without releasing it, so its last "
                       f"rows and checkpoint may be older than it got.")
        _remove_stale(lock)
    raise RunFolderInUse(f"could not take the lock {lock} (other processes keep taking it); run again.")


def _link_new(lock: Path) -> bool:
    """Write this process's lock beside ``lock`` and link it into place; False if ``lock`` exists."""
    fd, tmp = tempfile.mkstemp(dir=lock.parent, prefix=f".{LOCK_NAME}.")
    try:
        with os.fdopen(fd, "w") as file:
            json.dump(_me(), file)
        try:
            os.link(tmp, lock)
        except FileExistsError:
            return False
        except OSError:  # a file system without hard links: create it exclusively (a reader may see it empty)
            return _create_new(lock)
        return True
    finally:
        os.unlink(tmp)


def _create_new(lock: Path) -> bool:
    try:
        with open(lock, "x") as file:
            json.dump(_me(), file)
    except FileExistsError:
        return False
    return True


def _remove_stale(lock: Path) -> None:
    # renamed away first: of two processes taking over the same stale lock, only one removes it
    aside = lock.with_name(f".{LOCK_NAME}.stale-{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        os.rename(lock, aside)
        aside.unlink()


def release(folder: str | os.PathLike) -> None:
    """Give back ``folder``'s lock if this process holds it (a lock taken over by another is left alone)."""
    lock = Path(folder) / LOCK_NAME
    _held.discard(lock)
    holder = _read(lock)
    if holder and _is_mine(holder):
        with contextlib.suppress(FileNotFoundError):
            lock.unlink()


@atexit.register
def _release_all() -> None:
    for lock in list(_held):
        release(lock.parent)

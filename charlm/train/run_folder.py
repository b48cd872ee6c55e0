"""The run folder (``runs/<corpus>/version_N``): where a run writes, checked before anything is trained; one
writer at a time; and a resumed fit continuing the folder it was saved in.

**Where.** A folder that cannot be written would otherwise end the run at its first checkpoint with a
traceback, or send the W&B run quietly to the system's temp folder. Loggers whose ``save_dir`` is
empty (``""`` or null, as in charlm/defaults.yaml) write under ``--trainer.default_root_dir``, so that one flag
moves a whole run.

**One writer.** ``<run folder>/charlm.lock`` names the process writing it. Two fits in one folder
(``fit --ckpt_path same.ckpt`` twice at once) would each write metrics.csv, samples.jsonl and
checkpoints there: rows twice, ``last-v1.ckpt``, a "best" of either. The folder's writer (charlm's CSV
logger, on rank 0 only: the process that writes the folder) takes the lock before it touches metrics.csv
(a resumed fit, before anything is prepared: ``continue_run_folder``) and gives it back when the fit ends
however it ends (Lightning finalizes the logger after Ctrl-C, SIGTERM and crashes too; an exit handler is
the backstop). A second process is refused in one line naming the first one's pid. A lock whose process is
gone (killed with SIGKILL, a machine that went down) is taken over, with a note. The lock file is written
whole before it is linked into place (``os.link`` fails if the name exists), so a reader never sees half
of one. A process is told from a later one that reuses its pid by its start time (Linux's /proc; elsewhere
the pid alone). A lock from another host cannot be checked and counts as held.

**Continuing.** ``fit --ckpt_path runs/shakespeare/version_0/checkpoints/interrupted.ckpt`` would
otherwise log to a new ``version_1``: a second metrics.csv, samples.jsonl and neurons/, and a second
checkpoints folder, where Lightning's ModelCheckpoint forgets the best score so far ("The dirpath has
changed") and can name a worse checkpoint "best". Here the CSV logger is given that run's version, so its
folder and the checkpoints' folder are the same as before, and ``continue_from_step`` (charlm's
ResumableCSVLogger) so that its metrics.csv is continued, not deleted. The version comes from the path
alone, so every DDP process picks the same one.
"""

from __future__ import annotations

import atexit
import contextlib
import inspect
import json
import os
import re
import socket
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from charlm.checkpoint import read_checkpoint
from charlm.compat import entry_class, entry_is
from datamodules.common.rank_zero import is_rank_zero, rank_zero_note
from datamodules.io.atomic_files import process_is_gone

if TYPE_CHECKING:
    import lightning as L


# --- where a run writes ---------------------------------------------------------------------------
ROOT_FLAG = "--trainer.default_root_dir"


class RunFolderError(ValueError):
    """A run folder cannot be created or written (a user error: one line, exit 2)."""


def check_writable(folder: str | os.PathLike, advice: str) -> None:
    """Raise :class:`RunFolderError` unless ``folder`` is a writable folder or can be created.

    Creates nothing: it writes a nameless temporary file in the folder, or in the nearest
    existing folder above it (where the run would create it).
    """
    path = Path(folder).expanduser()
    existing = path
    try:
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir():
            problem = f"{existing} is a file, not a folder"
        else:
            with tempfile.TemporaryFile(dir=existing, prefix=".charlm-write-test-"):
                return
    except OSError as err:  # read-only file system, permission denied, immutable folder, ...
        problem = f"{existing} cannot be written ({err.strerror or err})"
    raise RunFolderError(f"cannot write the run folder {path}: {problem}; {advice}.")


def loggers_of(trainer_config: Any) -> list[Any]:
    """The logger entries of a parsed ``trainer`` config (``logger: false`` / ``true`` give none)."""
    loggers = trainer_config.logger
    loggers = loggers if isinstance(loggers, list) else [loggers]
    return [logger for logger in loggers if getattr(logger, "init_args", None) is not None]


def follow_root_dir(trainer_config: Any) -> None:
    """Loggers configured with an empty ``save_dir`` (``""`` or null) write under the trainer's
    ``default_root_dir`` (Lightning's CSVLogger requires a string, hence ``""``)."""
    for logger in loggers_of(trainer_config):
        if "save_dir" in logger.init_args and not logger.init_args.save_dir:
            logger.init_args.save_dir = trainer_config.default_root_dir or "."


def check_run_folders(trainer_config: Any) -> None:
    """Check every folder the run will write to: ``default_root_dir``, each logger's ``save_dir``
    and each ``ModelCheckpoint``'s ``dirpath``; the message names the setting to change."""
    from lightning.pytorch.callbacks import ModelCheckpoint  # here: this module is imported without Lightning too

    root = trainer_config.default_root_dir or "."
    folders = {str(Path(root)): f"choose a writable folder with {ROOT_FLAG} DIR"}
    for logger in loggers_of(trainer_config):
        save_dir = logger.init_args.get("save_dir") or logger.init_args.get("dir")
        if save_dir:
            kind = str(logger.class_path).rsplit(".", 1)[-1]  # for the message: the class's name as configured
            folders.setdefault(str(Path(save_dir)), f"set the {kind}'s save_dir in your config to a writable folder "
                                                    f"(or to \"\": it then follows {ROOT_FLAG})")
    for callback in trainer_config.callbacks or []:
        dirpath = getattr(callback, "init_args", None) and callback.init_args.get("dirpath")
        if dirpath and entry_is(callback, ModelCheckpoint):
            folders.setdefault(str(Path(dirpath)), "set the ModelCheckpoint's dirpath to a writable folder")
    for folder, advice in folders.items():
        check_writable(folder, advice)


def run_log_dir(trainer: L.Trainer) -> Path | None:
    """The run's own log folder (e.g. runs/shakespeare/version_3), for code that runs on rank 0 only.

    ``trainer.log_dir`` would broadcast from rank 0 and so hang a rank-0-only caller under DDP.
    """
    for logger in trainer.loggers:
        log_dir = getattr(logger, "log_dir", None)
        if log_dir:
            return Path(log_dir)
    return None


# --- one writer: the folder's lock -----------------------------------------------------------------
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
    valid = isinstance(holder, dict) and isinstance(holder.get("pid"), int) and holder["pid"] > 0
    return holder if valid else {}


def _is_mine(holder: dict[str, Any]) -> bool:
    return holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname()


def _alive(holder: dict[str, Any]) -> bool:
    """Whether the process that wrote ``holder`` still runs (a lock from another host: assumed so)."""
    if not holder:
        return False  # not a lock charlm wrote
    if holder.get("host") != socket.gethostname():
        return True
    if process_is_gone(holder["pid"]):
        return False
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


# --- a resumed fit continues its folder -------------------------------------------------------------
def run_version(ckpt_path: str | Path, save_dir: str | Path, name: str | None) -> int | None:
    """N when ``ckpt_path`` is ``<save_dir>/<name>/version_<N>/checkpoints/<file>`` (resolved paths:
    ``runs`` and ``./runs/`` are the same folder), else None."""
    ckpt = Path(ckpt_path).expanduser().resolve()
    runs = (Path(save_dir or ".").expanduser() / (name or "")).resolve()
    folder = ckpt.parent.parent  # version_N
    match = re.fullmatch(r"version_(\d+)", folder.name)
    if ckpt.parent.name != "checkpoints" or folder.parent != runs or match is None:
        return None
    return int(match.group(1))


def checkpoint_step(ckpt_path: str | Path) -> int:
    """The checkpoint's global step (charlm.checkpoint.read_checkpoint: the file's one read)."""
    return int(read_checkpoint(ckpt_path).get("global_step", 0))


def _continues_its_folder(entry: Any) -> bool:
    """Whether a logger entry's class can continue a folder's metrics.csv (it takes ``continue_from_step``:
    charlm's ResumableCSVLogger); Lightning's own CSVLogger would delete it."""
    cls = entry_class(entry)
    return cls is not None and "continue_from_step" in inspect.signature(cls).parameters


def continue_run_folder(config: Any) -> Path | None:
    """For ``fit --ckpt_path FILE`` with FILE in a run's own ``checkpoints/`` folder: set each
    ResumableCSVLogger without a ``version`` of its own to that run's, to continue from the
    checkpoint's step. Returns the run folder continued, or None (a new ``version_N``, as before:
    a checkpoint copied elsewhere, another corpus's, another ``default_root_dir``)."""
    ckpt_path = config.get("ckpt_path")
    if not ckpt_path or not Path(ckpt_path).is_file():
        return None  # none, or "last"/"hpc": Lightning looks for those in a new folder
    continued = None
    for logger in loggers_of(config.trainer):
        args = logger.init_args
        if not _continues_its_folder(logger) or args.get("version") is not None:
            continue  # Lightning's own CSVLogger would delete metrics.csv; a version the user chose wins
        version = run_version(ckpt_path, args.get("save_dir") or ".", args.get("name"))
        if version is None:
            continue
        continued = Path(args.get("save_dir") or ".") / (args.get("name") or "") / f"version_{version}"
        if is_rank_zero():  # before anything is prepared or any logger starts (the CSV logger keeps it, then)
            hold(continued)
        args.version, args.continue_from_step = version, checkpoint_step(ckpt_path)
        rank_zero_note(f"charlm: continuing the run in {continued} from step {args.continue_from_step} "
                       f"(metrics.csv, samples, neuron pages and checkpoints go on in that folder).")
    if continued is not None:
        # ModelCheckpoint's note on setup; here the folder is meant to be in use
        warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
    return continued

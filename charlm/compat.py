"""Every place charlm relies on Lightning, W&B or jsonargparse beyond their public API, one function each.

Each function says in its first line why the public API is not enough; tests/core/test_compat.py
runs each against the installed library and fails if the library stops behaving so (the ranges in
pyproject.toml are the ones tested). The data modules' own reaches (Lightning's loop position,
tarfile, datasets) are in ``datamodules.common.compat``: ``datamodules/`` imports nothing from ``charlm/``.

Besides these functions, three charlm subclasses override private hooks by name, which no function
can hold; their tests are in the same file:

- ``charlm.train.csv_logger.ContinuingWriter`` overrides ``ExperimentWriter._check_log_dir_exists`` (where
  Lightning deletes an old metrics.csv) and ``_rewrite_with_new_header`` (where it rewrites the file
  for a new metric), and reads ``metrics_keys`` / ``metrics_file_path``.
- ``charlm.callbacks.LearningRateMonitor`` overrides ``_extract_stats`` (where Lightning's monitor builds the
  values it logs) to log the parameter groups that share a rate once.
- ``charlm.train.checkpoint_io``'s replacement for ``ModelCheckpoint._link_checkpoint`` keeps its signature
  (:func:`replace_checkpoint_linker`).

Nothing heavy is imported at module level: checkpoint-only commands start without Lightning.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import lightning as L
    from lightning.fabric.plugins import CheckpointIO
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger, WandbLogger
    from lightning.pytorch.loggers.csv_logs import ExperimentWriter


# --- Lightning: the module and the trainer ---------------------------------------------------------
def attached_trainer(module: L.LightningModule) -> L.Trainer | None:
    """The trainer ``module`` is attached to, or None: ``module.trainer`` raises when there is none."""
    return module._trainer


def fit_interrupted(trainer: L.Trainer) -> bool:
    """Whether fit is stopping on an exception (Ctrl-C, SIGTERM, a crash): no hook argument or public
    flag tells a checkpoint saved from ``on_exception`` from any other; only ``trainer.state`` does."""
    from lightning.pytorch.trainer.states import TrainerStatus

    return trainer.state.status == TrainerStatus.INTERRUPTED


# --- Lightning: loop state inside a checkpoint ------------------------------------------------------
# ``checkpoint["loops"]["fit_loop"]`` is Lightning's own record of where fit stood (its layout is
# undocumented); charlm.train.resume rewrites it before Lightning restores its loops from it.
_VAL_PROGRESS = "epoch_loop.val_loop.batch_progress"
_TRAIN_PROGRESS = "epoch_loop.batch_progress"
_TRAIN_STATE = "epoch_loop.state_dict"
_LOGGED_STEPS = "_batches_that_stepped"
_EPOCH_PROGRESS = "epoch_progress"
_PER_EPOCH_PROGRESS = (_TRAIN_PROGRESS, "epoch_loop.scheduler_progress",
                       "epoch_loop.automatic_optimization.optim_progress")


def _fit_loop(checkpoint: dict[str, Any]) -> dict[str, Any]:
    return checkpoint.get("loops", {}).get("fit_loop", {})


def val_batch_progress(checkpoint: dict[str, Any]) -> dict[str, Any] | None:
    """The validation loop's batch counters (``current``/``total`` of ready, started, processed,
    completed, and ``is_last_batch``), editable in place: Lightning has no API to redo a validation."""
    return _fit_loop(checkpoint).get(_VAL_PROGRESS) or None


def train_batch_progress(checkpoint: dict[str, Any]) -> dict[str, Any] | None:
    """The training epoch loop's batch counters (same layout), editable in place: no public API reads
    where in its epoch a checkpoint was written."""
    return _fit_loop(checkpoint).get(_TRAIN_PROGRESS) or None


def epoch_progress(checkpoint: dict[str, Any]) -> dict[str, Any] | None:
    """The fit loop's epoch counters (``current``/``total`` of ready, started, processed, completed),
    editable in place: no public API reads whether a checkpoint was written between two epochs."""
    return _fit_loop(checkpoint).get(_EPOCH_PROGRESS) or None


def per_epoch_counters(checkpoint: dict[str, Any]) -> list[dict[str, int]]:
    """Every ``current`` counter set that Lightning's training epoch loop zeroes when an epoch starts (its
    batches, scheduler steps, and the optimizer's steps and zero_grads), editable in place: Lightning
    restores them into its loops and has no API to start a checkpoint's next epoch."""
    found: list[dict[str, int]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("current"), dict):
                found.append(node["current"])
            for key, value in node.items():
                if key != "current":
                    walk(value)

    for key in _PER_EPOCH_PROGRESS:
        walk(_fit_loop(checkpoint).get(key))
    return found


def logged_steps(checkpoint: dict[str, Any]) -> int | None:
    """The step Lightning logs metrics at (``_batches_that_stepped``), or None: it is private, and a
    resume from a batch start counts it once too often (charlm.train.resume)."""
    state = _fit_loop(checkpoint).get(_TRAIN_STATE) or {}
    return state.get(_LOGGED_STEPS) or None


def set_logged_steps(checkpoint: dict[str, Any], steps: int) -> None:
    """Set what :func:`logged_steps` reads, for Lightning to restore (no public setter exists)."""
    _fit_loop(checkpoint)[_TRAIN_STATE][_LOGGED_STEPS] = steps


def callback_state(checkpoint: dict[str, Any], cls: type) -> dict[str, Any]:
    """What a callback of class ``cls`` saved in ``checkpoint`` ({} if nothing): its key
    (``Callback.state_key``) is a property of an instance, by default the class's ``__qualname__``,
    and this reads a file with no instance at hand."""
    return checkpoint.get("callbacks", {}).get(cls.__qualname__) or {}


# --- Lightning: checkpoint files ------------------------------------------------------------------
def is_local_path(path: Any) -> bool:
    """Whether Lightning saves ``path`` to the local disk: its own private test, so charlm's atomic
    writes and Lightning's fsspec writes agree on which paths are remote (``s3://`` ...)."""
    from lightning.fabric.utilities.cloud_io import _is_local_file_protocol

    return _is_local_file_protocol(path)


def wrapped_checkpoint_io(io: CheckpointIO) -> CheckpointIO | None:
    """The CheckpointIO inside a wrapper such as ``AsyncCheckpointIO``, or None when ``io`` is not one:
    the wrapper base class is private."""
    from lightning.pytorch.plugins.io.wrapper import _WrappingCheckpointIO

    return io.checkpoint_io if isinstance(io, _WrappingCheckpointIO) else None


def replace_wrapped_checkpoint_io(io: CheckpointIO, inner: CheckpointIO) -> None:
    """Put ``inner`` inside the wrapper ``io``: the public setter ignores a new one once a base is set."""
    io._checkpoint_io = inner


def replace_checkpoint_linker(callback: ModelCheckpoint, link: Callable[[L.Trainer, str, str], None]) -> None:
    """Make ``callback`` link ``last.ckpt`` (``save_last="link"``) with ``link(trainer, filepath,
    linkpath)``: Lightning deletes the old link before making the new one, and has no hook for it."""
    # an instance attribute shadows the staticmethod; ModelCheckpoint calls self._link_checkpoint(...)
    callback._link_checkpoint = link  # type: ignore[method-assign]


# --- Lightning: loggers ------------------------------------------------------------------------------
def csv_experiment(logger: CSVLogger, make_writer: Callable[[str], ExperimentWriter]) -> ExperimentWriter:
    """``CSVLogger.experiment`` with ``make_writer(log_dir)`` in place of Lightning's writer: the
    property builds its ``ExperimentWriter`` itself, with no parameter for another class."""
    if logger._experiment is None:
        logger._fs.makedirs(logger.root_dir, exist_ok=True)
        logger._experiment = make_writer(logger.log_dir)
    return logger._experiment


def subcommand_parsers(cli: Any) -> dict[str, Any]:
    """LightningCLI's parser of each subcommand (fit, validate, test), by name: it keeps them private, and
    their ``prog`` and the help of the flags it adds from the Trainer's methods are only reachable there."""
    return cli._subcommand_parsers


def lightning_info_logger() -> logging.Logger:
    """The ``logging`` logger behind Lightning's ``rank_zero_info`` / ``rank_zero_warn`` messages:
    its name is an implementation detail, and filtering it is the only way to drop one message."""
    return logging.getLogger("lightning.pytorch.utilities.rank_zero")


# --- W&B (through Lightning's WandbLogger) -----------------------------------------------------------
def wandb_init_args(logger: WandbLogger) -> dict[str, Any]:
    """The keyword arguments the logger will pass to ``wandb.init`` (a live dict: changing ``mode``
    before the run starts changes the run): Lightning keeps them private."""
    return logger._wandb_init


def started_wandb_run(logger: WandbLogger) -> Any | None:
    """The logger's W&B run if it has started, else None: ``logger.experiment`` would start one."""
    return logger._experiment


def wandb_upstream_url(url: str) -> str | None:
    """The W&B API server behind a Forge server ``url`` (whose ~/.netrc entry ``wandb login`` may have
    written), or None for a wandb without Forge: only its private ``wandb.sdk.lib.urls`` knows it."""
    try:
        from wandb.sdk.lib.urls import forge_upstream_url
    except ImportError:
        return None
    return forge_upstream_url(url)


# --- jsonargparse: config entries and errors ------------------------------------------------------------
def entry_class(entry: Any) -> type | None:
    """The class a parsed config entry (``class_path`` + ``init_args``) names, or None: jsonargparse
    gives it as an import path (a string) until it instantiates the entry."""
    path = str(getattr(entry, "class_path", "") or "")
    parts = path.split(".")
    for cut in range(len(parts) - 1, 0, -1):  # the longest importable module, then attributes (nested classes)
        try:
            obj: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for name in parts[cut:]:
                obj = getattr(obj, name)
        except AttributeError:
            return None
        return obj if isinstance(obj, type) else None
    return None


def entry_is(entry: Any, base: type) -> bool:
    """Whether a parsed config entry names ``base`` or a subclass of it (the one "which class is
    this entry" test of charlm: by class, not by the spelling of its path)."""
    cls = entry_class(entry)
    return cls is not None and issubclass(cls, base)


def parser_actions(parser: Any) -> list[Any]:
    """The argparse actions of a (jsonargparse) parser, each with ``dest``, ``help`` and ``option_strings``:
    argparse lists them only in its private ``_actions``, and has no public way to ask what flags it takes."""
    return list(getattr(parser, "_actions", []))


def drop_old_defaults_on_class_switch() -> None:
    """Make jsonargparse drop, when a subclass entry switches class (``--data Enwik8DataModule`` after the
    default run's ShakespeareDataModule, or a config's ``class_path``), the init_args that only held the old
    class's own defaults, so the new class gets its own (Tiny Shakespeare's ``url`` and ``sha256`` went to
    enwik8). Values someone set (the default run's ``batch_size: 32``) still carry over, as jsonargparse
    intends. Its one hook, the module-level ``discard_init_args_on_class_path_change`` (which drops only the
    init_args the new class does not take), is private; installed once, for the whole process."""
    from jsonargparse import _typehints

    keep_shared = _typehints.discard_init_args_on_class_path_change
    if getattr(keep_shared, "charlm", False):
        return

    def discard(parser_or_action: Any, prev_val: Any, value: Any) -> None:
        keep_shared(parser_or_action, prev_val, value)
        prev = _typehints.subclass_spec_as_namespace(prev_val) if prev_val else None
        if not prev or not prev.get("init_args") or not prev.get("class_path") \
                or prev["class_path"] == value["class_path"]:
            return
        sub_add_kwargs = getattr(parser_or_action, "sub_add_kwargs", {})
        try:
            old_defaults = _typehints.ActionTypeHint.get_class_parser(prev["class_path"], sub_add_kwargs).get_defaults()
        except Exception:  # noqa: BLE001  (an old class that no longer imports has no defaults to drop)
            return
        for key, old in list(prev.init_args.items(branches=True, nested=False)):
            if key in old_defaults and old_defaults[key] == old:
                del prev.init_args[key]

    discard.charlm = True  # type: ignore[attr-defined]
    _typehints.discard_init_args_on_class_path_change = discard


def _raised_in_jsonargparse(err: BaseException) -> bool:
    tb: TracebackType | None = err.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and "jsonargparse" in tb.tb_frame.f_code.co_filename


def original_error(err: BaseException) -> BaseException:
    """What a class's ``__init__`` raised, out of the report on every Union subtype jsonargparse
    wraps it in ("Does not validate against any of the Union subtypes ..."); ``err`` if not wrapped.
    jsonargparse keeps the original only as ``__cause__``, and raises the wrapper from its own code."""
    root = err
    while root.__cause__ is not None and _raised_in_jsonargparse(root):
        root = root.__cause__
    return root

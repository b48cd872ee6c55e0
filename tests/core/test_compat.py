"""charlm.compat against the installed Lightning, W&B and jsonargparse: each test fails if the library
stops behaving as the function relies on (an attribute gone, a key moved, a hook no longer called)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, ClassVar

import lightning as L
import pytest
import torch
from jsonargparse import ArgumentParser, Namespace
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.demos.boring_classes import BoringModel
from lightning.pytorch.loggers import CSVLogger, Logger
from lightning.pytorch.loggers import WandbLogger as LightningWandbLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.plugins.io import AsyncCheckpointIO, TorchCheckpointIO
from lightning.pytorch.utilities import rank_zero_info

from charlm.compat import (
    attached_trainer,
    callback_state,
    csv_experiment,
    drop_old_defaults_on_class_switch,
    entry_class,
    entry_is,
    epoch_progress,
    fit_interrupted,
    is_local_path,
    lightning_info_logger,
    logged_steps,
    original_error,
    parser_actions,
    per_epoch_counters,
    replace_checkpoint_linker,
    replace_wrapped_checkpoint_io,
    set_logged_steps,
    started_wandb_run,
    train_batch_progress,
    val_batch_progress,
    wandb_init_args,
    wandb_upstream_url,
    wrapped_checkpoint_io,
)
from charlm.train.csv_logger import ResumableCSVLogger
from charlm.train.resume import between_epochs, count_logged_steps_once, start_the_next_epoch
from tests.helpers import SaveAtBatchStart

COUNTERS = {"ready", "started", "processed", "completed"}


def trainer(tmp_path: Path, **kwargs: Any) -> L.Trainer:
    """A CPU Trainer for BoringModel (a 32 -> 2 linear layer on 64 random rows): a fit takes a second."""
    settings = {"accelerator": "cpu", "devices": 1, "max_steps": 3, "limit_train_batches": 8, "limit_val_batches": 2,
                "logger": False, "enable_checkpointing": False, "enable_progress_bar": False,
                "enable_model_summary": False, "num_sanity_val_steps": 0, "default_root_dir": tmp_path}
    return L.Trainer(**{**settings, **kwargs})


class Record(L.Callback):
    """Calls ``probe(trainer, pl_module)`` at a hook and keeps what it returns, by hook."""

    def __init__(self, probe, *hooks: str) -> None:
        self.seen: dict[str, list] = {hook: [] for hook in hooks}
        for hook in hooks:
            setattr(self, hook, lambda trainer, pl_module, *_, _hook=hook: self.seen[_hook].append(probe(trainer,
                                                                                                         pl_module)))

    def state_dict(self) -> dict[str, Any]:
        return {"kept": 7}


# --- Lightning: the module and the trainer -------------------------------------------------------------
def test_attached_trainer_is_none_where_module_trainer_raises(tmp_path):
    model = BoringModel()
    assert attached_trainer(model) is None
    with pytest.raises(RuntimeError, match="not attached"):
        model.trainer  # noqa: B018  (why attached_trainer exists)
    record = Record(lambda trainer, module: attached_trainer(module) is trainer, "on_train_batch_end")
    trainer(tmp_path, callbacks=[record]).fit(model)
    assert record.seen["on_train_batch_end"] == [True, True, True]


class Crashes(BoringModel):
    def training_step(self, batch, batch_idx):
        if batch_idx == 2:
            raise RuntimeError("boom")
        return super().training_step(batch, batch_idx)


def test_fit_interrupted_only_while_fit_stops_on_an_exception(tmp_path):
    record = Record(lambda trainer, module: fit_interrupted(trainer), "on_train_batch_end", "on_exception")
    with pytest.raises(RuntimeError, match="boom"):
        trainer(tmp_path, callbacks=[record]).fit(Crashes())
    assert record.seen == {"on_train_batch_end": [False, False], "on_exception": [True]}


# --- Lightning: loop state inside a checkpoint ----------------------------------------------------------
def test_loop_state_and_callback_state_are_where_the_functions_look(tmp_path):
    record = Record(lambda trainer, module: None, "on_train_end")
    fitted = trainer(tmp_path, callbacks=[record], max_steps=3, limit_train_batches=3)
    fitted.fit(BoringModel())
    fitted.save_checkpoint(tmp_path / "end.ckpt")
    ckpt = torch.load(tmp_path / "end.ckpt", weights_only=False)

    train, val = train_batch_progress(ckpt), val_batch_progress(ckpt)
    for progress in (train, val):
        assert set(progress["current"]) == COUNTERS and set(progress["total"]) == COUNTERS
        assert "is_last_batch" in progress
    assert train["total"]["completed"] == train["current"]["completed"] == 3
    assert val["total"]["completed"] == 2  # the one validation, at the end of the 3-batch epoch
    assert logged_steps(ckpt) == 3  # one per optimizer step
    set_logged_steps(ckpt, 2)
    assert logged_steps(ckpt) == 2
    assert callback_state(ckpt, Record) == {"kept": 7}
    assert train_batch_progress({}) is None and val_batch_progress({}) is None and logged_steps({}) is None
    epochs = epoch_progress(ckpt)
    assert set(epochs["current"]) == COUNTERS and epochs["total"]["completed"] == 1
    # the batches', the scheduler's, and the optimizer's steps and zero_grads: each epoch counts from 0
    currents = per_epoch_counters(ckpt)
    assert len(currents) == 4 and all(set(current) <= COUNTERS for current in currents)
    assert any(current is train["current"] for current in currents)
    assert epoch_progress({}) is None and per_epoch_counters({}) == []


class LogsEveryStep(BoringModel):
    def training_step(self, batch, batch_idx):
        out = super().training_step(batch, batch_idx)
        self.log("x", float(batch_idx))
        return out


class Steps(Logger):
    """A logger that keeps the step of every row logged."""

    def __init__(self) -> None:
        super().__init__()
        self.steps: list[int] = []

    name, version = "steps", 0

    def log_hyperparams(self, *args: Any, **kwargs: Any) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        if "x" in metrics:
            self.steps.append(step)


@pytest.mark.filterwarnings("ignore:You're resuming from a checkpoint that ended before the epoch ended")
def test_a_resume_from_a_batch_start_logs_one_step_late_unless_the_count_is_lowered(tmp_path):
    # what charlm.train.resume.count_logged_steps_once corrects: Lightning adds 1 to the logged step on restart
    ckpt_path = tmp_path / "batch-start.ckpt"
    whole = Steps()
    trainer(tmp_path, max_steps=4, logger=whole, log_every_n_steps=1,
            callbacks=[SaveAtBatchStart(ckpt_path, 2)]).fit(LogsEveryStep())
    assert whole.steps == [0, 1, 2, 3]
    ckpt = torch.load(ckpt_path, weights_only=False)
    assert logged_steps(ckpt) == 2

    resumed = Steps()
    trainer(tmp_path, max_steps=4, logger=resumed, log_every_n_steps=1).fit(LogsEveryStep(), ckpt_path=ckpt_path)
    assert resumed.steps == [3, 4]  # one step late: 2 and 3 were due

    set_logged_steps(ckpt, logged_steps(ckpt) - 1)
    torch.save(ckpt, tmp_path / "lowered.ckpt")
    lowered = Steps()
    trainer(tmp_path, max_steps=4, logger=lowered, log_every_n_steps=1).fit(LogsEveryStep(),
                                                                             ckpt_path=tmp_path / "lowered.ckpt")
    assert lowered.steps == [2, 3]


def test_a_resume_from_between_two_epochs_runs_an_empty_epoch_unless_the_next_one_is_started(tmp_path):
    # what charlm.train.resume.start_the_next_epoch corrects: a file written after an epoch's end (SIGTERM stops
    # there) resumes, in a run bounded by max_steps, into an epoch whose batches are all done
    fitted = trainer(tmp_path, max_steps=3, limit_train_batches=3)
    fitted.fit(BoringModel())  # one epoch of 3 batches
    fitted.save_checkpoint(tmp_path / "between.ckpt")  # fit ended after the epoch's end hooks
    ckpt = torch.load(tmp_path / "between.ckpt", weights_only=False)
    assert between_epochs(ckpt)

    def resume(path: Path) -> tuple[L.Trainer, list[int]]:
        logged = Steps()
        resumed = trainer(tmp_path, max_steps=6, limit_train_batches=3, logger=logged, log_every_n_steps=1)
        resumed.fit(LogsEveryStep(), ckpt_path=path)
        return resumed, logged.steps

    empty, steps = resume(tmp_path / "between.ckpt")
    assert empty.current_epoch == 3 and steps == [4, 5, 6]  # an empty epoch 1; epoch 2 trained, a step late

    assert start_the_next_epoch(ckpt) and count_logged_steps_once(ckpt)
    torch.save(ckpt, tmp_path / "next.ckpt")
    started, steps = resume(tmp_path / "next.ckpt")
    assert started.current_epoch == 2 and steps == [3, 4, 5]


# --- Lightning: checkpoint files --------------------------------------------------------------------------
def test_is_local_path(tmp_path):
    assert is_local_path(tmp_path / "last.ckpt") and is_local_path(str(tmp_path / "last.ckpt"))
    assert is_local_path("file:///tmp/last.ckpt")
    assert not is_local_path("s3://bucket/last.ckpt") and not is_local_path("memory://last.ckpt")


def test_the_checkpoint_io_inside_a_wrapper_can_be_replaced():
    base, mine = TorchCheckpointIO(), TorchCheckpointIO()
    wrapper = AsyncCheckpointIO(base)
    try:
        assert wrapped_checkpoint_io(wrapper) is base
        assert wrapped_checkpoint_io(base) is None
        wrapper.checkpoint_io = mine
        assert wrapper.checkpoint_io is base  # why: the public setter keeps a base already set
        replace_wrapped_checkpoint_io(wrapper, mine)
        assert wrapped_checkpoint_io(wrapper) is mine and wrapper.checkpoint_io is mine
    finally:
        wrapper.teardown()


def test_model_checkpoint_links_last_through_the_replaced_linker(tmp_path):
    calls: list[tuple[str, str]] = []
    callback = ModelCheckpoint(dirpath=tmp_path / "ckpts", save_last="link", every_n_train_steps=1, save_top_k=1,
                               monitor=None)
    replace_checkpoint_linker(callback, lambda trainer, filepath, linkpath: calls.append((filepath, linkpath)))
    trainer(tmp_path, max_steps=2, callbacks=[callback], enable_checkpointing=True).fit(BoringModel())
    assert calls and all(Path(link).name == "last.ckpt" for _, link in calls)
    assert all(Path(target).parent == tmp_path / "ckpts" and Path(target).name != "last.ckpt" for target, _ in calls)
    assert not (tmp_path / "ckpts" / "last.ckpt").exists()  # Lightning's own linker did not run


# --- Lightning: loggers --------------------------------------------------------------------------------
class Hooks(ExperimentWriter):
    """Lightning's writer, noting when it calls the hooks charlm.train.csv_logger.ContinuingWriter overrides."""

    calls: ClassVar[list[str]] = []

    def _check_log_dir_exists(self) -> None:
        self.calls.append("check")
        super()._check_log_dir_exists()

    def _rewrite_with_new_header(self, fieldnames: list[str]) -> None:
        self.calls.append(f"rewrite {','.join(fieldnames)}")
        super()._rewrite_with_new_header(fieldnames)


def test_csv_experiment_is_the_loggers_experiment(tmp_path):
    logger = CSVLogger(tmp_path, name="run", version=0)
    made: list[str] = []
    writer = csv_experiment(logger, lambda log_dir: made.append(log_dir) or Hooks(log_dir))
    assert isinstance(writer, Hooks) and made == [logger.log_dir]
    assert csv_experiment(logger, lambda log_dir: pytest.fail("made twice")) is writer
    assert logger.experiment is writer  # Lightning's own property returns it
    assert Path(logger.log_dir).is_dir()


@pytest.mark.filterwarnings("ignore:Experiment logs directory .* exists and is not empty")
def test_the_csv_writer_hooks_charlm_overrides_are_called(tmp_path):
    Hooks.calls = []
    (tmp_path / "metrics.csv").write_text("step,a\n0,1\n")
    writer = Hooks(str(tmp_path))
    assert Hooks.calls == ["check"]  # on construction, where Lightning deletes an old metrics.csv
    assert not (tmp_path / "metrics.csv").exists()  # why ResumableCSVLogger overrides it
    assert writer.metrics_file_path == str(tmp_path / "metrics.csv") and writer.metrics_keys == []
    writer.log_metrics({"a": 1.0}, step=0)
    writer.save()
    writer.log_metrics({"b": 2.0}, step=1)
    writer.save()
    assert Hooks.calls == ["check", "rewrite a,b,step"]  # a new metric: the whole file, under the new header
    assert writer.metrics_keys == ["a", "b", "step"]


def test_lightning_info_messages_go_through_the_named_logger():
    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())  # type: ignore[method-assign]
    logger = lightning_info_logger()
    logger.addHandler(handler)
    try:
        rank_zero_info("charlm compat probe")
    finally:
        logger.removeHandler(handler)
    assert seen == ["charlm compat probe"]


# --- W&B ----------------------------------------------------------------------------------------------------
def test_wandb_init_args_reach_wandb_init_and_the_run_is_kept(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    logger = LightningWandbLogger(project="charlm-compat", save_dir=str(tmp_path), mode="offline")
    assert wandb_init_args(logger)["project"] == "charlm-compat" and wandb_init_args(logger)["mode"] == "offline"
    wandb_init_args(logger)["mode"] = "disabled"  # before the run starts: the run is made so
    assert started_wandb_run(logger) is None
    run = logger.experiment
    try:
        assert started_wandb_run(logger) is run
        assert run.disabled
        assert not list(tmp_path.glob("wandb/offline-run-*"))
    finally:
        run.finish()


def test_wandb_upstream_url_of_its_forge_server():
    import wandb

    default = wandb.Settings().base_url
    upstream = wandb_upstream_url(default)
    if "forge" in default:  # wandb >= 0.31: a Forge server in front of the W&B API
        assert upstream is not None and upstream.startswith("https://") and upstream != default
    assert wandb_upstream_url("https://wandb.example.com") in (None, "https://wandb.example.com")


# --- jsonargparse -----------------------------------------------------------------------------------------
def test_entry_class_follows_the_class_not_its_spelling():
    def entry(path: str) -> Namespace:
        return Namespace(class_path=path, init_args=Namespace())

    assert entry_class(entry("charlm.train.csv_logger.ResumableCSVLogger")) is ResumableCSVLogger
    assert entry_is(entry("charlm.train.csv_logger.ResumableCSVLogger"), CSVLogger)
    assert entry_is(entry("lightning.pytorch.loggers.CSVLogger"), CSVLogger)
    assert not entry_is(entry("lightning.pytorch.loggers.CSVLogger"), ResumableCSVLogger)
    assert entry_is(entry("charlm.callbacks.InterruptCheckpoint"), L.Callback)  # a re-exported name
    assert entry_is(entry("charlm.train.wandb_logger.WandbLogger"), LightningWandbLogger)
    assert not entry_is(entry("lightning.pytorch.loggers.TensorBoardLogger"), LightningWandbLogger)
    assert entry_class(entry("no.such.module.Thing")) is None and entry_class(entry("lightning.NoSuchThing")) is None
    assert entry_class(True) is None and entry_class(None) is None  # logger: true / null


def test_jsonargparse_gives_parsed_entries_their_full_class_path():
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--logger", type=Logger | None)
    config = parser.parse_args(["--logger", "CSVLogger", "--logger.save_dir", "runs"])
    assert config.logger.class_path == "lightning.pytorch.loggers.CSVLogger"
    assert entry_is(config.logger, CSVLogger)


def test_parser_actions_are_the_flags_with_their_help():
    def f(ckpt_path: str, count: int = 2) -> None:
        """Do something.

        Args:
            ckpt_path: a checkpoint.
            count: how many.
        """

    parser = ArgumentParser(exit_on_error=False)
    parser.add_function_arguments(f, as_group=False)
    actions = {action.dest: action for action in parser_actions(parser)}
    assert actions["ckpt_path"].option_strings == ["--ckpt_path"] and actions["ckpt_path"].help == "a checkpoint."
    assert actions["count"].help == "how many." and "--help" in actions["help"].option_strings


class Picky:
    def __init__(self, size: int = 1) -> None:
        if size < 1:
            raise ValueError("--thing.size must be >= 1")


def test_original_error_unwraps_jsonargparse_union_report():
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--thing", type=Picky | None)
    config = parser.parse_args(["--thing", f"{__name__}.Picky", "--thing.size", "0"])
    with pytest.raises(ValueError, match=r"thing\.size must be >= 1") as caught:
        parser.instantiate(config)
    assert "--thing.size must be >= 1" in str(caught.value)
    root = original_error(caught.value)
    assert str(root) == "--thing.size must be >= 1"
    error = ValueError("not from jsonargparse")
    assert original_error(error) is error


class Source:
    """A base with a subclass-specific default, as a data module's url."""

    def __init__(self, url: str = "base", size: int = 1) -> None:
        self.url, self.size = url, size


class FirstSource(Source):
    def __init__(self, url: str = "first", size: int = 1) -> None:
        super().__init__(url, size)


class SecondSource(Source):
    def __init__(self, url: str = "second", size: int = 1) -> None:
        super().__init__(url, size)


def test_a_class_switch_drops_the_old_class_defaults_and_keeps_what_was_set(tmp_path):
    drop_old_defaults_on_class_switch()
    defaults = tmp_path / "defaults.yaml"
    defaults.write_text(f"source:\n  class_path: {__name__}.FirstSource\n  init_args:\n    size: 7\n")
    parser = ArgumentParser(default_config_files=[str(defaults)])
    parser.add_subclass_arguments(Source, "source")
    switched = parser.parse_args(["--source", f"{__name__}.SecondSource"]).source
    assert switched.class_path.endswith("SecondSource")
    assert switched.init_args.url == "second"  # jsonargparse alone carries "first" over
    assert switched.init_args.size == 7  # set in the defaults: carried over, as jsonargparse intends
    given = parser.parse_args(["--source", f"{__name__}.SecondSource", "--source.url", "mine"]).source
    assert given.init_args.url == "mine"


def test_the_lr_monitor_logs_what_its_extract_stats_returns(tmp_path):
    from charlm.callbacks.lr_monitor import LearningRateMonitor

    class TwoGroups(BoringModel):
        def configure_optimizers(self):
            weight, bias = self.layer.weight, self.layer.bias
            return torch.optim.AdamW([{"params": [weight]}, {"params": [bias], "weight_decay": 0.0}], lr=0.1)

    logged: list[dict] = []

    class Keep(Logger):
        name, version = "keep", 0

        def log_metrics(self, metrics, step=None):
            logged.append(dict(metrics))

        def log_hyperparams(self, params, *args, **kwargs):
            pass

    trainer(tmp_path, logger=Keep(), log_every_n_steps=1, callbacks=[LearningRateMonitor("step")]).fit(TwoGroups())
    keys = {key for row in logged for key in row if key.startswith("lr-")}
    assert keys == {"lr-AdamW"}, keys  # Lightning's: lr-AdamW/pg1 and lr-AdamW/pg2, the same values


def test_the_lr_monitor_merges_every_value_its_groups_share():
    from charlm.callbacks.lr_monitor import merge_equal_groups

    stats = {"lr-AdamW/pg1": 0.1, "lr-AdamW/pg2": 0.1, "lr-AdamW/pg1-momentum": 0.9, "lr-AdamW/pg2-momentum": 0.9,
             "lr-AdamW/pg1-weight_decay": 0.01, "lr-AdamW/pg2-weight_decay": 0.0}
    assert merge_equal_groups(stats) == {"lr-AdamW": 0.1, "lr-AdamW-momentum": 0.9, "lr-AdamW/pg1-weight_decay": 0.01,
                                         "lr-AdamW/pg2-weight_decay": 0.0}

"""Every config shipped with charlm (cli.yaml, configs/*.yaml) parses against the code, and the
Tiny Shakespeare presets train a step as written: a renamed flag or class cannot break one unseen."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from jsonargparse import ArgumentParser
from lightning.pytorch.callbacks import Timer

import datamodules
from charlm.cli.commands.fit import DEFAULTS
from charlm.train.lightning_module import CharLM
from tests.cli_runs import run_in
from tests.conftest import REPO

CONFIGS = [REPO / "cli.yaml", *sorted((REPO / "configs").glob("*.yaml"))]


def test_the_presets_are_found():
    assert {p.name for p in CONFIGS} >= {"cli.yaml", "cpu_15min.yaml", "gpu_60s.yaml", "enwik8_gpu_1h.yaml"}


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_config_parses_and_its_model_builds(config: Path, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:  # --print_config prints the resolved config, then exits 0
        run_in(tmp_path, ["fit", "--config", str(config), "--print_config"])
    assert exit_.value.code in (None, 0)
    resolved = yaml.safe_load(capsys.readouterr().out)
    # what the file says is what the run gets, on top of the default run
    for section, values in (yaml.safe_load(config.read_text()) or {}).items():
        for key, value in values.items():
            if key != "callbacks" and not isinstance(value, dict):
                assert resolved[section][key] == value, f"{config.name}: {section}.{key}"
    model = {k: v for k, v in resolved["model"].items() if k != "vocab"}
    lit = CharLM(vocab=range(65), **model)  # the values pass the model's own checks
    assert lit.model.config.hidden_size == resolved["model"]["hidden_size"]


DATA_MODULES = [name for name in datamodules.__all__ if name.endswith("DataModule") and name != "CharDataModule"]


def own_defaults(name: str) -> dict:
    """The init_args a data module has when nobody sets any: its signature's (its base's for **kwargs)."""
    parser = ArgumentParser()
    parser.add_class_arguments(getattr(datamodules, name), "data")
    defaults = parser.get_defaults().data.as_dict()
    return {key: list(value) if isinstance(value, tuple) else value for key, value in defaults.items()}  # as YAML


def written_data_settings(*files: Path) -> dict:
    """The data init_args the default run and ``files`` write, later files winning."""
    written: dict = {}
    for file in files:
        written.update(((yaml.safe_load(file.read_text()) or {}).get("data") or {}).get("init_args") or {})
    return written


@pytest.mark.parametrize("start", [None, *CONFIGS], ids=lambda p: p.name if p else "default-run")
@pytest.mark.parametrize("name", DATA_MODULES)
def test_a_data_module_reached_by_a_switch_gets_its_own_defaults(name: str, start: Path | None, tmp_path, capsys):
    # LightningCLI keeps init_args of the same name across --data X: enwik8 got Tiny Shakespeare's url and sha256.
    # What nobody wrote must be the class's own default; what the default run or the preset wrote carries over.
    config = ["--config", str(start)] if start else []
    with pytest.raises(SystemExit) as exit_:
        run_in(tmp_path, ["fit", *config, "--data", name, "--print_config"])
    assert exit_.value.code in (None, 0)
    resolved = yaml.safe_load(capsys.readouterr().out)["data"]
    assert resolved["class_path"] == f"datamodules.{name}"
    written = written_data_settings(DEFAULTS, *([start] if start else []))
    expected = {key: written.get(key, default) for key, default in own_defaults(name).items()}
    assert resolved["init_args"] == expected


def test_a_setting_given_after_the_switch_is_kept(tmp_path, capsys):
    with pytest.raises(SystemExit):
        run_in(tmp_path, ["fit", "--data", "Enwik8DataModule", "--data.url", "http://127.0.0.1:1/e.zip",
                          "--data.sha256", "null", "--print_config"])
    resolved = yaml.safe_load(capsys.readouterr().out)["data"]["init_args"]
    assert resolved["url"] == "http://127.0.0.1:1/e.zip" and resolved["sha256"] is None


SHAKESPEARE_PRESETS = [p for p in CONFIGS if p.parent.name == "configs" and "Shakespeare" in p.read_text()]


@pytest.mark.parametrize("config", SHAKESPEARE_PRESETS, ids=lambda p: p.name)
def test_shakespeare_preset_trains_a_step(config: Path, tmp_path, shakespeare_path):
    cli = run_in(tmp_path, ["fit", "--config", str(config), "--data.path", str(shakespeare_path),
                            "--trainer.fast_dev_run", "1", "--trainer.logger", "false",
                            # small batches: the preset's settings, model and callbacks run, in seconds on a CPU
                            "--data.batch_size", "4", "--data.seq_len", "32", "--data.eval_batch_size", "4",
                            "--trainer.enable_progress_bar", "false"])
    assert cli.trainer.global_step == 1
    precision = yaml.safe_load(config.read_text()).get("trainer", {}).get("precision")
    if precision:
        assert re.sub(r"-true$", "", str(cli.trainer.precision)) == re.sub(r"-true$", "", str(precision))


BUDGET = re.compile(r"_(\d+)(s|min|h)$")  # a preset named for its time budget: gpu_60s, cpu_15min, enwik8_gpu_1h


@pytest.mark.parametrize("config", [p for p in CONFIGS if BUDGET.search(p.stem)], ids=lambda p: p.name)
def test_a_time_budget_preset_stops_within_its_budget(config: Path):
    amount, unit = BUDGET.search(config.stem).groups()
    budget = int(amount) * {"s": 1, "min": 60, "h": 3600}[unit]
    max_time = (yaml.safe_load(config.read_text()).get("trainer") or {}).get("max_time")
    assert max_time, f"{config.name}: no trainer.max_time, so a slower machine overruns the budget in its name"
    seconds = Timer(duration=max_time).time_remaining()  # Lightning's reading of it, in every form it takes
    assert 0 < seconds <= budget, f"{config.name}: {max_time}"

"""``fit --model.init_from``: a new run from a trained checkpoint's weights, on a corpus with another vocabulary;
and ``--ckpt_path`` (resume) naming the ``--model.*`` flags its checkpoint overrides."""

from __future__ import annotations

import gc
import shutil
import warnings
import weakref
from pathlib import Path

import lightning as L
import pytest
import torch

from charlm.train import init_from
from charlm.train.lightning_module import CharLM
from tests.cli_runs import assert_one_line, charlm, run_in, with_callback
from tests.conftest import REPO, SHAKESPEARE
from tests.helpers import read_metrics

pytestmark = pytest.mark.usefixtures("one_torch_thread")

NEW_BYTES = {ord("z"): ord("{"), ord("Q"): ord("#")}  # the fine-tune corpus swaps these: 2 bytes added, 2 dropped


def quick(corpus: Path, *extra: str, cmd: str = "fit") -> list[str]:
    """A quick run on ``corpus`` (shape flags are the caller's), without loggers or sampling callbacks."""
    return [cmd, "--config", str(REPO / "cli.yaml"), "--data", "TextDataModule", "--data.path", str(corpus),
            "--data.batch_size", "16", "--data.seq_len", "64", "--data.eval_batch_size", "16",
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
            "--trainer.logger", "false", "--trainer.callbacks", "[]", "--trainer.limit_val_batches", "8",
            "--model.lr", "0.01", "--model.warmup_steps", "10", *extra]


@pytest.fixture(scope="module")
def corpora(tmp_path_factory) -> dict[str, Path]:
    """A 1 x 64 LSTM trained 150 steps on Tiny Shakespeare's first 200 KB ("checkpoint"), and a later slice
    of the play with 'z' -> '{' and 'Q' -> '#' ("new"), so that 2 bytes are new and 2 (with '&', which
    that slice lacks, 3) are dropped."""
    if not SHAKESPEARE.is_file():
        pytest.skip(f"the real Tiny Shakespeare is not at {SHAKESPEARE}")
    folder = tmp_path_factory.mktemp("init_from")
    text = SHAKESPEARE.read_bytes()
    (folder / "pre.txt").write_bytes(text[:200_000])
    (folder / "new.txt").write_bytes(text[-100_000:].translate(bytes(NEW_BYTES.get(b, b) for b in range(256))))
    cli = run_in(folder / "pre", quick(folder / "pre.txt", "--model.num_layers", "1", "--model.hidden_size", "64",
                                       "--model.embedding_dim", "16", "--model.dropout", "0.0",
                                       "--trainer.max_steps", "150", "--trainer.val_check_interval", "150",
                                       "--data.cache_dir", str(folder / "cache")))
    checkpoint = folder / "pretrained.ckpt"
    shutil.copy(folder / "pre" / cli.trainer.checkpoint_callback.best_model_path, checkpoint)
    return {"pre": folder / "pre.txt", "new": folder / "new.txt", "checkpoint": checkpoint}


def test_shared_bytes_keep_their_rows_new_ones_get_fresh_rows(corpora, tmp_path, capsys):
    old = torch.load(corpora["checkpoint"], weights_only=True)
    old_vocab, old_state = old["hyper_parameters"]["vocab"], old["state_dict"]
    # no shape flags: the default run's 2 x 256 is not "given", the checkpoint's 1 x 64 is used;
    # dropout may be changed for the fine-tune
    cli = run_in(tmp_path, quick(corpora["new"], "--model.init_from", str(corpora["checkpoint"]),
                                 "--model.dropout", "0.25", cmd="validate"))
    assert ("59 bytes mapped, 2 added ('#' (0x23), '{' (0x7b)), 3 dropped ('&' (0x26), 'Q' (0x51), 'z' (0x7a))"
            in capsys.readouterr().err)
    net, vocab = cli.model.model, cli.model.vocab
    assert net.config.to_dict() == {**old["model_config"], "vocab_size": len(vocab), "dropout": 0.25}
    assert "init_from" not in cli.model.hparams  # a resumed fine-tune must not transplant again
    assert set(old_vocab) - set(vocab.symbols) == {ord("&"), ord("Q"), ord("z")}  # dropped: no row for them
    assert net.embed.weight.shape[0] == net.head.weight.shape[0] == net.head.bias.shape[0] == len(vocab)
    added = []
    for new_id, byte in enumerate(vocab.symbols):
        if byte not in old_vocab:
            added.append(new_id)
            continue
        old_id = old_vocab.index(byte)
        assert torch.equal(net.embed.weight[new_id], old_state["model.embed.weight"][old_id])
        assert torch.equal(net.head.weight[new_id], old_state["model.head.weight"][old_id])
        assert torch.equal(net.head.bias[new_id], old_state["model.head.bias"][old_id])
    assert [vocab.symbols[i] for i in added] == sorted(NEW_BYTES.values())
    for name, weight in net.rnn.state_dict().items():
        assert torch.equal(weight, old_state[f"model.rnn.{name}"]), name

    # the added bytes' rows are those a new model of this vocabulary starts with (same seed)
    L.seed_everything(7)
    scratch = CharLM(vocab.symbols, **{k: old["model_config"][k] for k in ("num_layers", "hidden_size",
                                                                            "embedding_dim")}).model
    L.seed_everything(7)
    tuned = CharLM(vocab.symbols, init_from=str(corpora["checkpoint"])).model
    for name in ("embed.weight", "head.weight", "head.bias"):
        fresh, got = scratch.state_dict()[name], tuned.state_dict()[name]
        assert torch.equal(got[added], fresh[added]), name
        assert not torch.equal(got, fresh), name


@pytest.mark.parametrize(("flags", "says"), [
    (["--model.hidden_size", "32"], "--model.hidden_size 32 (the checkpoint's is 64) contradicts it"),
    (["--model.cell", "gru", "--model.num_layers", "2"],
     "--model.cell 'gru' (the checkpoint's is 'lstm'), --model.num_layers 2 (the checkpoint's is 1) contradict it"),
    (["--model.embedding_dim", "64"], "--model.embedding_dim 64 (the checkpoint's is 16)"),  # equal to the default
])
def test_a_shape_flag_that_contradicts_the_checkpoint_is_refused(corpora, charlm_main, tmp_path, flags, says):
    done = charlm_main(*quick(corpora["new"], "--model.init_from", corpora["checkpoint"], *flags))
    line = assert_one_line(done, "--model.init_from", str(corpora["checkpoint"]), says)
    assert "hidden_size 64 x num_layers 1 (lstm, embedding_dim 16)" in line
    assert not (tmp_path / "runs").exists()  # refused before any run folder or data


def test_each_refusal_names_its_flag_once(corpora, charlm_main, tmp_path):
    """A bad free setting is CharRNNConfig's message under its flag; a clash built in Python (no CLI) is the CLI's."""
    done = charlm_main(*quick(corpora["new"], "--model.init_from", corpora["checkpoint"], "--model.dropout", "1.5"))
    assert_one_line(done, "charlm: error: --model.dropout must lie in [0, 1), got 1.5")
    assert not (tmp_path / "runs").exists()
    with pytest.raises(ValueError, match=r"^--model\.init_from .*--model\.hidden_size 32 \(the checkpoint's is 64\)"):
        CharLM(range(40, 100), init_from=str(corpora["checkpoint"]), hidden_size=32)
    with pytest.raises(ValueError, match=r"^--model\.weight_drop must lie in \[0, 1\), got 1\.0$"):
        CharLM(range(40, 100), init_from=str(corpora["checkpoint"]), weight_drop=1.0)


def test_the_checkpoints_own_values_are_accepted(corpora, tmp_path):
    # and --data.path alone: the data module's class comes from the default run (ShakespeareDataModule)
    args = quick(corpora["new"], "--model.init_from", str(corpora["checkpoint"]), "--model.hidden_size", "64",
                 "--model.cell", "lstm", cmd="validate")
    cli = run_in(tmp_path, [a for a in args if a not in ("--data", "TextDataModule")])
    assert type(cli.datamodule).__name__ == "ShakespeareDataModule"
    assert cli.model.model.config.hidden_size == 64 and cli.model.model.config.num_layers == 1


def test_a_file_that_is_not_a_charlm_checkpoint_is_refused(corpora, charlm_main, tmp_path):
    state_dict = tmp_path / "state_dict.pt"
    torch.save(torch.nn.LSTM(4, 8).state_dict(), state_dict)
    damaged = []  # read by the CLI for the shape: the same checks as a full load's
    for name, change in [("cell", {"cell": "transformer"}), ("vocab", {"vocab_size": 99})]:
        ckpt = torch.load(corpora["checkpoint"], weights_only=True)
        ckpt["model_config"].update(change)
        torch.save(ckpt, tmp_path / f"{name}.ckpt")
        damaged.append(tmp_path / f"{name}.ckpt")
    for path, says in [(corpora["new"], "is not a checkpoint"), (tmp_path / "nothing.ckpt", "does not exist"),
                       (state_dict, "is not a charlm checkpoint"),
                       (damaged[0], "describes a model charlm cannot build: cell must be one of"),
                       (damaged[1], "describes a model of 99 symbols but holds a vocabulary of 62")]:
        done = charlm_main(*quick(corpora["new"], "--model.init_from", path))
        assert_one_line(done, f"charlm: error: --model.init_from: {path} {says}")
    assert not (tmp_path / "runs").exists()


CSV_ONLY = ["--trainer.logger", "charlm.train.csv_logger.ResumableCSVLogger",  # a run folder with config.yaml, no W&B
            "--trainer.logger.save_dir", "runs", "--trainer.logger.name", "null"]


def test_a_fine_tuned_run_resumes_from_its_command_or_its_config(corpora, tmp_path, capsys):
    """The fine-tune's own command, or --config its config.yaml (both hold --model.init_from), plus --ckpt_path:
    the run goes on from the checkpoint's step and weights, saying once that init_from is ignored; so do
    validate and test (even with an init_from file that is gone)."""
    pretrained, mapped = str(corpora["checkpoint"]), "(--model.init_from): 59 bytes mapped"
    fine_tune = quick(corpora["new"], "--model.init_from", pretrained, "--model.dropout", "0.0",
                      "--trainer.val_check_interval", "5", "--trainer.limit_val_batches", "2", *CSV_ONLY)
    first = run_in(tmp_path / "a", [*fine_tune, "--trainer.max_steps", "10"])
    assert capsys.readouterr().err.count(mapped) == 1
    run = Path("runs") / "text" / "version_0"  # in each folder; the checkpoint and config paths are relative to it
    ckpt = Path(first.trainer.checkpoint_callback.best_model_path)
    assert f"init_from: {pretrained}" in (tmp_path / "a" / run / "config.yaml").read_text()
    shutil.copytree(tmp_path / "a", tmp_path / "b")  # each resume continues its own copy of the run

    note = f"charlm: --model.init_from {pretrained} is ignored when resuming (--ckpt_path): the checkpoint already "
    for folder, args in [("a", [*fine_tune, "--trainer.max_steps", "20", "--ckpt_path", str(ckpt)]),
                         ("b", ["fit", "--config", str(run / "config.yaml"), "--ckpt_path", str(ckpt),
                                "--trainer.max_steps", "20"])]:
        metrics = tmp_path / f"{folder}.jsonl"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            resumed = run_in(tmp_path / folder, [*args, *with_callback("tests.helpers.DumpMetrics", path=metrics)])
        err = capsys.readouterr().err
        assert err.count(note) == 1 and mapped not in err, (folder, err[-3000:])  # nothing transplanted
        assert not [w for w in caught if "runs with the model settings" in str(w.message)], folder  # none differ
        assert resumed.model.hparams.get("init_from") is None and resumed.trainer.global_step == 20
        assert [row["step"] for row in read_metrics(metrics)] == [15, 20, 20], folder  # from step 10 on, not 0

    final = tmp_path / "b" / run / "checkpoints" / "epoch=0-step=20.ckpt"
    weights = torch.load(final, weights_only=True)["state_dict"]
    for cmd in ("validate", "test"):  # and --model.init_from a file that no longer exists: never read
        evaluated = run_in(tmp_path / "b", [cmd, "--config", str(run / "config.yaml"), "--ckpt_path", str(final),
                                            "--model.init_from", str(tmp_path / "gone.ckpt")])
        err = capsys.readouterr().err
        assert err.count(f"charlm: --model.init_from {tmp_path / 'gone.ckpt'} is ignored with --ckpt_path: "
                         f"{cmd} runs the checkpoint's weights ({final}).") == 1 and mapped not in err, err[-3000:]
        state = evaluated.model.state_dict()
        assert state.keys() == weights.keys() and all(torch.equal(state[k], weights[k]) for k in weights), cmd


def test_the_old_network_is_built_once_and_not_kept(corpora, tmp_path, monkeypatch):
    """The CLI reads only the shape from --model.init_from's file; CharLM builds the old network, once, and lets it
    go once the new one has its weights."""
    built = []
    real = init_from.load_checkpoint

    def load(*args, **kwargs):
        loaded = real(*args, **kwargs)
        built.append(weakref.ref(loaded.model))
        return loaded

    monkeypatch.setattr(init_from, "load_checkpoint", load)
    cli = run_in(tmp_path, quick(corpora["new"], "--model.init_from", str(corpora["checkpoint"]), cmd="validate"))
    assert len(built) == 1, built
    gc.collect()
    assert built[0]() is None  # the old network is not held once the new one has its weights
    assert cli.model.model.config.hidden_size == 64


def test_resuming_names_the_model_flags_the_checkpoint_overrides(corpora, tmp_path):
    checkpoint = tmp_path / "last.ckpt"  # outside its run folder: this run does not write into the fixture's
    shutil.copy(corpora["checkpoint"], checkpoint)
    with pytest.warns(UserWarning, match="runs with the model settings") as caught:
        cli = run_in(tmp_path, quick(corpora["pre"], "--ckpt_path", str(checkpoint), "--trainer.max_steps", "151",
                                     "--model.lr", "0.05", "--model.hidden_size", "64", "--model.cell", "gru"))
    overridden = [str(w.message) for w in caught if "runs with the model settings" in str(w.message)]
    assert len(overridden) == 1, overridden
    # the values the checkpoint holds (lr 0.01, hidden_size 64) win; a flag equal to its value is not named
    assert "--model.lr 0.05 (the checkpoint's: 0.01), --model.cell 'gru' (the checkpoint's: 'lstm') are ignored" in (
        overridden[0]), overridden[0]
    assert "hidden_size" not in overridden[0] and "--model.init_from" in overridden[0]
    assert cli.model.hparams.lr == 0.01 and cli.model.model.config.cell == "lstm"


def first_step_at(rows: list[dict], bpc: float) -> float:
    """The optimizer step of the first validation at or below ``bpc`` (inf if none)."""
    return next((row["step"] for row in rows if "val/bpc" in row and row["val/bpc"] <= bpc), float("inf"))


def test_fine_tuning_reaches_a_val_bpc_in_fewer_steps_than_training_from_scratch(corpora, tmp_path):
    curves = {}
    for name, extra in [("scratch", ["--model.num_layers", "1", "--model.hidden_size", "64",
                                     "--model.embedding_dim", "16"]),
                        ("fine-tuned", ["--model.init_from", str(corpora["checkpoint"])])]:
        metrics = tmp_path / f"{name}.jsonl"
        run_in(tmp_path / name, quick(corpora["new"], "--model.dropout", "0.0", "--trainer.max_steps", "60",
                                      "--trainer.val_check_interval", "20", *extra,
                                      *with_callback("tests.helpers.DumpMetrics", path=metrics)))
        curves[name] = read_metrics(metrics)
    # bits per byte on the new slice: from scratch, reached after 60 steps (4.04); fine-tuned, at the first
    # validation (3.39 at step 20: the pretrained model starts below it)
    target = 4.1
    steps = {name: first_step_at(rows, target) for name, rows in curves.items()}
    assert steps["fine-tuned"] < steps["scratch"] <= 60, curves


@pytest.mark.slow
def test_fine_tuning_under_ddp_loads_the_weights_on_every_rank(corpora, tmp_path, isolated_cache):
    """2 CPU processes (gloo), each building the model from the checkpoint: one mapping line (rank 0), and a first
    validation (step 10, averaged over both ranks' streams) near the pretrained model's, far from scratch's."""
    metrics = tmp_path / "ddp.jsonl"
    out = charlm(*quick(corpora["new"], "--model.init_from", str(corpora["checkpoint"]), "--trainer.max_steps", "10",
                        "--trainer.val_check_interval", "10",
                        "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp",
                        *with_callback("tests.helpers.DumpMetrics", path=metrics)),
                 cwd=tmp_path, cache=isolated_cache, timeout=240)
    assert out.returncode == 0, out.stderr[-4000:]
    assert out.stderr.count("(--model.init_from): 59 bytes mapped, 2 added") == 1, out.stderr[-4000:]
    assert read_metrics(metrics)[0]["val/bpc"] < 3.7  # scratch: 4.8 at step 20 (see the test above)

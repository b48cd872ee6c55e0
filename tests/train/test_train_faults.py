"""Training that is interrupted, pre-empted or diverges: through the real CLI, in-process and as a
real ``python -m charlm`` process sent real signals."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from tests.cli_runs import keeping_sigint, run_in, small_run, start_python, with_callback
from tests.helpers import read_metrics

CSV_ONLY = ["--trainer.logger", "lightning.pytorch.loggers.CSVLogger", "--trainer.logger.save_dir",
            "runs"]  # no W&B start-up


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def val_rows(path: Path) -> dict[int, float]:
    """{step: val/bpc} of the validations in a DumpMetrics file (not its end-of-training row)."""
    return {r["step"]: r["val/bpc"] for r in read_metrics(path)[:-1] if "val/bpc" in r} if path.exists() else {}


# --- a validation interrupted midway is redone from its start ---------------------------------------
COMMON = ["--trainer.max_steps", "30", "--trainer.val_check_interval", "10", "--trainer.limit_val_batches", "6",
          "--model.dropout", "0.3", "--model.num_layers", "2", "--model.warmup_steps", "5", *CSV_ONLY]


def test_resume_from_an_interrupted_validation_redoes_it(tmp_path, shakespeare_path):
    def fit(folder: Path, *extra: str):
        metrics = folder / "m.jsonl"
        cli = run_in(folder, small_run(shakespeare_path, *COMMON, *extra,
                                       *with_callback("tests.helpers.DumpMetrics", path=metrics)))
        return cli, val_rows(metrics)

    full, full_val = fit(tmp_path / "full")
    expected = {k: v.clone() for k, v in full.model.state_dict().items()}
    assert sorted(full_val) == [10, 20, 30]

    # Ctrl-C at the start of validation batch 3 of 6 of the validation after step 20
    with keeping_sigint(), pytest.raises(SystemExit):
        fit(tmp_path / "cut", *with_callback("tests.helpers.InterruptInValidation", step=20, batch=3))
    saved = next((tmp_path / "cut").rglob("interrupted.ckpt"))
    ckpt = torch.load(saved, weights_only=True)
    assert ckpt["global_step"] == 20 and ckpt["charlm"]["mid_validation"]

    resumed, got_val = fit(tmp_path / "resumed", "--ckpt_path", str(saved))
    # the whole validation at step 20 again: the uninterrupted run's value (Lightning alone skipped it)
    assert got_val == {20: full_val[20], 30: full_val[30]}
    best = Path(resumed.trainer.checkpoint_callback.best_model_path).name
    assert best == f"best-step{min(got_val, key=got_val.get)}-bpc{min(got_val.values()):.4f}.ckpt"
    # and training went on exactly where it stopped: carried hidden state, data position, dropout RNG
    got = resumed.model.state_dict()
    assert all(torch.equal(got[name], expected[name]) for name in expected)
    # `validate` on the interrupted checkpoint's weights agrees
    validated = run_in(tmp_path / "validate", small_run(shakespeare_path, "--trainer.limit_val_batches", "6", *CSV_ONLY,
                                                        "--ckpt_path", str(saved), cmd="validate"))
    assert float(validated.trainer.callback_metrics["val/bpc"]) == pytest.approx(full_val[20], abs=1e-6)

    # a checkpoint from before this fix, whose exception came inside a validation step: Lightning's
    # counters said "go on at batch 3" and so measured the bpc of the streams' batches 0-2 only
    ckpt["charlm"].pop("mid_validation")
    progress = ckpt["loops"]["fit_loop"]["epoch_loop.val_loop.batch_progress"]
    for counters in (progress["current"], progress["total"]):
        counters.update(ready=4, started=4, processed=3, completed=3)
    torch.save(ckpt, tmp_path / "old.ckpt")
    _, old_val = fit(tmp_path / "old", "--ckpt_path", str(tmp_path / "old.ckpt"))
    assert old_val == {20: full_val[20], 30: full_val[30]}

    # a checkpoint written at the end of a validation (last.ckpt after step 10) does not redo it
    last = next((tmp_path / "cut").rglob("last.ckpt"))
    assert torch.load(last, weights_only=True)["global_step"] == 10
    _, after_last = fit(tmp_path / "after_last", "--ckpt_path", str(last))
    assert after_last == {20: full_val[20], 30: full_val[30]}


# --- Ctrl-C is acted on wherever it lands -----------------------------------------------------------
def test_ctrl_c_inside_a_finalizer_still_stops_training(tmp_path, shakespeare_path, caplog):
    """Python loses a KeyboardInterrupt raised inside a finalizer; charlm's handler only records the
    Ctrl-C and stops at the next batch start, so it cannot be lost. What it prints is the resume
    line, without Lightning's "`weights_only` was not set" chatter."""
    args = ["--trainer.max_steps", "40", "--trainer.limit_val_batches", "2", *CSV_ONLY,
            *with_callback("tests.helpers.SigintInFinalizer", step=7)]
    before = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(SystemExit):
            run_in(tmp_path, small_run(shakespeare_path, *args))
        assert signal.getsignal(signal.SIGINT) is before  # charlm's handler is gone with the fit
    finally:
        signal.signal(signal.SIGINT, before)
    saved = next(tmp_path.rglob("interrupted.ckpt"))
    assert torch.load(saved, weights_only=True)["global_step"] == 7  # stopped before step 8
    assert "resume with --ckpt_path runs/lightning_logs/version_0/checkpoints/interrupted.ckpt" in caplog.text
    assert "weights_only" not in caplog.text


# --- 16-true is refused ----------------------------------------------------------------------------
def test_fp16_true_is_refused_with_one_line(charlm_main, shakespeare_path):
    done = charlm_main(*small_run(shakespeare_path, "--trainer.precision", "16-true", "--trainer.max_steps", "5"))
    last = done.stderr.strip().splitlines()[-1]
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert last.startswith("charlm: error: --trainer.precision 16-true cannot train"), done.stderr
    assert "16-mixed" in last and "bf16-mixed" in last
    assert not list(Path().rglob("*.ckpt")) and not list(Path().rglob("offline-run-*"))  # refused before anything ran


# --- Trainer values Lightning accepts but that cannot train ----------------------------------------
@pytest.mark.parametrize(
    ("flag", "value", "words"),
    [
        # torch's clip_grad_norm_ scales the gradients by max_norm / norm: a negative max_norm flips
        # them, and the run silently climbs the loss instead of descending it
        ("--trainer.gradient_clip_val", "-1", ["--trainer.gradient_clip_val must be >= 0", "got -1"]),
        ("--trainer.accumulate_grad_batches", "0", ["--trainer.accumulate_grad_batches must be a positive integer"]),
        ("--trainer.check_val_every_n_epoch", "0", ["--trainer.check_val_every_n_epoch must be a positive integer"]),
    ],
)
def test_trainer_values_that_cannot_train_are_one_line(flag, value, words, charlm_main, shakespeare_path):
    done = charlm_main(*small_run(shakespeare_path, flag, value, "--trainer.max_steps", "3", *CSV_ONLY))
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("charlm: error: ") and all(word in last for word in words), last
    assert not list(Path().rglob("*.ckpt"))  # refused before training


def test_gradient_clip_algorithm_value_clips_each_gradient(tmp_path, shakespeare_path):
    """--trainer.gradient_clip_algorithm value was silently treated as norm clipping."""
    cli = run_in(tmp_path, small_run(shakespeare_path, "--trainer.max_steps", "1", "--trainer.limit_val_batches", "2",
                                     *CSV_ONLY))
    params = list(cli.model.parameters())
    for p in params:
        p.grad = torch.ones_like(p)
    cli.model.configure_gradient_clipping(None, 1e-3, "value")
    assert all(torch.equal(p.grad, torch.full_like(p, 1e-3)) for p in params)  # each clamped, none rescaled
    cli.model.configure_gradient_clipping(None, 1e-3, "norm")
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in params]))
    assert norm == pytest.approx(1e-3, rel=1e-3)


# --- the precisions the 16-true message recommends do train, callbacks and all --------------------
@pytest.mark.parametrize("precision", ["bf16-true", "64-true"])
def test_true_precisions_other_than_fp16_train_with_the_default_callbacks(precision, charlm_main, shakespeare_path):
    """The sample and neuron-page callbacks step the model one byte at a time (CharRNN.step),
    whose hidden state must follow the weights' dtype (was: "mat1 and mat2 must have the same dtype")."""
    done = charlm_main(*small_run(shakespeare_path, "--trainer.precision", precision, "--trainer.max_steps", "3",
                                  "--trainer.limit_val_batches", "2", "--model.warmup_steps", "1", *CSV_ONLY))
    assert done.returncode == 0, done.stderr[-3000:]
    assert list(Path().rglob("neurons/step-3.html")) and list(Path().rglob("last.ckpt"))


# --- a diverged run stops, exit 2, and never records NaN ------------------------------------------
def test_diverged_run_stops_with_one_line_and_keeps_good_checkpoints(charlm_main, shakespeare_path):
    good = charlm_main(*small_run(shakespeare_path, "--trainer.max_steps", "10", "--trainer.val_check_interval", "10",
                                  "--trainer.limit_val_batches", "2", *CSV_ONLY))
    assert good.returncode == 0, good.stderr
    last = next(Path().rglob("last.ckpt"))
    before = last.read_bytes()
    # a second run in the same folder with lr 1e9: the loss is NaN within a few steps
    done = charlm_main(*small_run(shakespeare_path, "--model.lr", "1e9", "--trainer.max_steps", "40",
                                  "--trainer.val_check_interval", "10", "--trainer.limit_val_batches", "2",
                                  "--trainer.log_every_n_steps", "5", "--model.warmup_steps", "0", *CSV_ONLY))
    line = done.stderr.strip().splitlines()[-1]
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert line.startswith("charlm: error: training diverged: the loss is not finite at step "), line
    assert "last finite loss" in line and "--model.lr (now 1e+09)" in line and "--model.grad_clip" in line
    # no checkpoint holds NaN weights, no "best" holds a NaN score, and the first run's files are untouched
    assert last.read_bytes() == before
    for path in Path().rglob("*.ckpt"):
        assert "nan" not in path.name
        state = torch.load(path, weights_only=True)["state_dict"]
        assert all(torch.isfinite(w).all() for w in state.values() if w.is_floating_point()), path

    # with checks only every 100 steps and a checkpoint every 3 steps, the save itself refuses NaN weights
    saving = ["--trainer.callbacks+=lightning.pytorch.callbacks.ModelCheckpoint",
              "--trainer.callbacks.every_n_train_steps=3", "--trainer.callbacks.save_top_k=-1",
              "--trainer.callbacks.dirpath=every3", "--trainer.callbacks.filename={step}"]
    done = charlm_main(*small_run(shakespeare_path, "--model.lr", "1e9", "--trainer.max_steps", "40",
                                  "--trainer.log_every_n_steps", "100", "--model.warmup_steps", "0", *CSV_ONLY,
                                  *saving))
    line = done.stderr.strip().splitlines()[-1]
    assert done.returncode == 2, done.stderr
    assert line.startswith("charlm: error: training diverged: the loss is not finite"), done.stderr
    saved = sorted(Path("every3").glob("*.ckpt"))
    assert saved, "the steps before the divergence were saved"
    for path in saved:
        state = torch.load(path, weights_only=True)["state_dict"]
        assert all(torch.isfinite(w).all() for w in state.values() if w.is_floating_point()), path

    # sampling a checkpoint whose weights are NaN (as this bug left them) says so in one line
    ckpt = torch.load(last, weights_only=True)
    ckpt["state_dict"] = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v
                          for k, v in ckpt["state_dict"].items()}
    torch.save(ckpt, "nan.ckpt")
    sampled = charlm_main("sample", "--ckpt_path", "nan.ckpt", "--length", "20")
    assert sampled.returncode == 2 and "Traceback" not in sampled.stderr
    assert "not finite" in sampled.stderr.strip().splitlines()[-1], sampled.stderr


# --- real signals to a real `python -m charlm fit`, with W&B on (offline) --------------------------
def start_fit(folder: Path, args: list[str], cache: Path) -> subprocess.Popen:
    """``python -m charlm fit ARGS`` in ``folder``, on one thread; stdout and stderr in one pipe."""
    folder.mkdir(parents=True, exist_ok=True)
    return start_python("-m", "charlm", "fit", *args, cwd=folder, cache=cache, env={"OMP_NUM_THREADS": "1"},
                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def signal_when(proc: subprocess.Popen, marker: Path, signum: int, delay: float,
                timeout: float = 300) -> tuple[int, str]:
    """Wait for ``marker`` (bounded by ``timeout`` and by the process ending), wait ``delay`` more
    seconds, send ``signum``, and return the exit status and output."""
    deadline = time.monotonic() + timeout
    try:
        while not marker.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"training never reached its marker:\n{proc.communicate()[0][-3000:]}")
            time.sleep(0.05)
        time.sleep(delay)  # a random moment inside the following steps
        proc.send_signal(signum)
        output, _ = proc.communicate(timeout=timeout)
        return proc.returncode, output
    finally:
        proc.kill()


@pytest.mark.slow
def test_sigint_then_sigterm_at_random_moments_stop_with_checkpoints_that_resume(tmp_path, shakespeare_path,
                                                                                 isolated_cache):
    """Ctrl-C, then SIGTERM to the resumed run, each at a random moment (training, validation, a
    W&B log, sampling...); CHARLM_TEST_SEED=<seed from a failure> repeats the same moments."""
    seed = int(os.environ.get("CHARLM_TEST_SEED", random.randrange(10**6)))
    rng = random.Random(seed)
    # validation every 8 steps (8 batches): a random moment lands in validation about half the time
    args = small_run(shakespeare_path, "--trainer.max_steps", "100000", "--trainer.val_check_interval", "8",
                     "--trainer.limit_val_batches", "8", "--trainer.log_every_n_steps", "5")[1:]
    run = tmp_path / "run"
    ckpt: Path | None = None
    step = 0
    for signum, status in ((signal.SIGINT, 1), (signal.SIGTERM, 143)):
        marker = tmp_path / f"{signum}.started"
        target = step + rng.randint(3, 20)
        resume = ["--ckpt_path", str(ckpt)] if ckpt else []
        touch = with_callback("tests.helpers.TouchAt", step=target, path=marker)
        proc = start_fit(run, [*args, *resume, *touch], isolated_cache)
        code, output = signal_when(proc, marker, signum, rng.uniform(0, 0.5))
        context = f"{signal.Signals(signum).name} (seed {seed}):\n{output[-3000:]}"
        assert code == status, context
        assert "resume with --ckpt_path" in output, context
        ckpt = run / output.split("resume with --ckpt_path ")[-1].split()[0]
        saved = torch.load(ckpt, weights_only=True)["global_step"]
        assert saved >= target, context
        step = saved
    # the second checkpoint resumes to the end (in-process, without W&B: the quicker way to show it)
    resumed = run_in(run, small_run(shakespeare_path, "--trainer.max_steps", str(step + 5),
                                    "--trainer.val_check_interval", "8", "--trainer.limit_val_batches", "8", *CSV_ONLY,
                                    "--ckpt_path", str(ckpt)))
    assert resumed.trainer.global_step == step + 5


@pytest.mark.slow
def test_sighup_saves_a_checkpoint_and_exits_129(tmp_path, shakespeare_path, isolated_cache):
    """Closing the terminal (SIGHUP) must not lose the training since the last checkpoint."""
    args = small_run(shakespeare_path, "--trainer.max_steps", "100000", *CSV_ONLY)[1:]
    marker = tmp_path / "started"
    proc = start_fit(tmp_path / "run", [*args, *with_callback("tests.helpers.TouchAt", step=5, path=marker)],
                     isolated_cache)
    code, output = signal_when(proc, marker, signal.SIGHUP, 0.1)
    assert code == 128 + signal.SIGHUP, output[-3000:]
    assert "stopped by SIGHUP" in output, output[-3000:]
    (ckpt,) = (tmp_path / "run").rglob("interrupted.ckpt")
    assert torch.load(ckpt, weights_only=True)["global_step"] >= 5

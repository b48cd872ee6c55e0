"""One writer per run folder (charlm.train.run_folder): a second fit on a folder another process is writing is
refused in one line naming that process; a lock left by a process that is gone is taken over, with a
note; the lock goes when the fit ends, however it ends (signals: tests/train/test_resume_signals.py)."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from charlm.train import run_folder as run_lock
from tests.cli_runs import assert_one_line, run_in, small_run, start_python, with_callback

COMMON = ["--trainer.max_steps", "10", "--trainer.val_check_interval", "5", "--trainer.limit_val_batches", "2",
          "--trainer.logger", "charlm.train.csv_logger.ResumableCSVLogger", "--trainer.logger.save_dir", "runs",
          "--trainer.logger.name", "null"]  # no W&B start-up
RUN = Path("runs", "shakespeare", "version_0")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def dead_pid() -> int:
    """The pid of a process that has ended."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


def test_a_second_fit_on_a_folder_being_written_is_refused_naming_the_writer(tmp_path, shakespeare_path,
                                                                            isolated_cache, charlm_main):
    run_in(tmp_path, small_run(shakespeare_path, *COMMON))
    run, last = tmp_path / RUN, tmp_path / RUN / "checkpoints" / "last.ckpt"
    assert not (run / run_lock.LOCK_NAME).exists()  # given back at the end of that fit

    # the first `fit --ckpt_path last.ckpt`, as a real process, is training in the folder
    marker = tmp_path / "training"
    first = start_python("-m", "charlm", *small_run(shakespeare_path, *COMMON, "--trainer.max_steps", "100000",
                                                    "--ckpt_path", str(last),
                                                    *with_callback("tests.helpers.TouchAt", step=12, path=marker)),
                         cwd=tmp_path, cache=isolated_cache, env={"OMP_NUM_THREADS": "1"},
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 240
        while not marker.exists():
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()[0][-3000:]
            time.sleep(0.05)
        assert json.loads((run / run_lock.LOCK_NAME).read_text())["pid"] == first.pid

        # the second, the same command: refused before it touches anything
        second = charlm_main(*small_run(shakespeare_path, *COMMON, "--ckpt_path", str(last)))
        assert_one_line(second, f"the run folder {RUN} is being written by another process: pid {first.pid}",
                        "one writer", f"kill {first.pid}")
        assert sorted(p.name for p in run.parent.iterdir()) == ["version_0"]
        assert not list((run / "checkpoints").glob("last-v*.ckpt"))

        first.send_signal(signal.SIGTERM)  # it saves interrupted.ckpt and gives the folder back
        output, _ = first.communicate(timeout=240)
        assert first.returncode == 143, output[-3000:]
    finally:
        first.kill()
    assert not (run / run_lock.LOCK_NAME).exists()
    interrupted = run / "checkpoints" / "interrupted.ckpt"
    stopped = torch.load(interrupted, weights_only=True)["global_step"]
    resumed = charlm_main(*small_run(shakespeare_path, *COMMON, "--trainer.max_steps", str(stopped + 10),
                                     "--ckpt_path", str(interrupted)))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert not (run / run_lock.LOCK_NAME).exists()
    with open(run / "metrics.csv", newline="") as file:  # each validation's row once
        val_steps = [int(row["step"]) for row in csv.DictReader(file) if row["val/bpc"]]
    assert val_steps == sorted(set(val_steps)) and val_steps[-1] == (stopped + 10) // 5 * 5 - 1


def test_the_lock_of_a_process_that_is_gone_is_taken_over(tmp_path, shakespeare_path, charlm_main):
    run_in(tmp_path, small_run(shakespeare_path, *COMMON))
    run = tmp_path / RUN
    pid = dead_pid()  # a writer killed with SIGKILL leaves its lock behind
    (run / run_lock.LOCK_NAME).write_text(json.dumps({**run_lock._me(), "pid": pid, "start": None}))

    resumed = charlm_main(*small_run(shakespeare_path, *COMMON, "--trainer.max_steps", "12",
                                     "--ckpt_path", str(run / "checkpoints" / "last.ckpt")))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"charlm: taking over {RUN / run_lock.LOCK_NAME} (pid {pid}, which is no longer running)" in resumed.stderr
    assert not (run / run_lock.LOCK_NAME).exists()


def test_a_live_pid_holds_the_lock_unless_it_was_reused_by_a_later_process(tmp_path):
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        holder = {**run_lock._me(), "pid": sleeper.pid, "start": run_lock._start_time(sleeper.pid)}
        (tmp_path / run_lock.LOCK_NAME).write_text(json.dumps(holder))
        with pytest.raises(run_lock.RunFolderInUse, match=f"pid {sleeper.pid}"):
            run_lock.hold(tmp_path)

        if holder["start"] is None:
            pytest.skip("no /proc here: a reused pid cannot be told from its first process")
        # the lock's process started at another time: the pid now belongs to a later process
        (tmp_path / run_lock.LOCK_NAME).write_text(json.dumps({**holder, "start": "0"}))
        run_lock.hold(tmp_path)
        assert json.loads((tmp_path / run_lock.LOCK_NAME).read_text())["pid"] == run_lock.os.getpid()
        run_lock.hold(tmp_path)  # this process holds it already: kept
        run_lock.release(tmp_path)
        assert not (tmp_path / run_lock.LOCK_NAME).exists()
    finally:
        sleeper.kill()
        sleeper.wait()


@pytest.mark.parametrize("pid", [-1, 0, 2**70], ids=["minus one", "zero", "beyond any pid"])
def test_a_lock_naming_no_possible_process_is_taken_over(tmp_path, pid):
    # os.kill(-1, 0) succeeds (it signals every process), and a pid past the C int overflows os.kill
    (tmp_path / run_lock.LOCK_NAME).write_text(json.dumps({**run_lock._me(), "pid": pid, "start": None}))
    run_lock.hold(tmp_path)
    assert json.loads((tmp_path / run_lock.LOCK_NAME).read_text())["pid"] == run_lock.os.getpid()
    run_lock.release(tmp_path)

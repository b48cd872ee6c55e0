"""Real multi-process runs: DDP with 2 CPU processes (gloo), and torchrun.

(Real Ctrl-C and SIGTERM to a real process: tests/train/test_train_faults.py.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli_runs import charlm, child_env, small_run, with_callback
from tests.conftest import REPO
from tests.helpers import assert_ranks_trained_their_own_streams, read_metrics


def run_cli(folder: Path, args: list[str], cache: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    """Run ``python -m charlm ARGS`` in ``folder`` as a separate process (Lightning relaunches it for
    the other ranks: :func:`child_env` makes tests/ importable there)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = charlm(*args, cwd=folder, cache=cache, timeout=timeout)
    assert out.returncode == 0, out.stderr[-4000:]
    return out


@pytest.mark.slow
@pytest.mark.parametrize("processes", [2, 4])
def test_ddp_disjoint_streams_and_exact_val_bpc(tmp_path, shakespeare_path, isolated_cache, processes):
    metrics, batches = tmp_path / "ddp.jsonl", tmp_path / "batches"
    out = run_cli(tmp_path / "ddp", small_run(shakespeare_path, "--trainer.accelerator", "cpu",
                      "--trainer.devices", str(processes), "--trainer.strategy", "ddp", "--trainer.max_steps", "30",
                      "--trainer.val_check_interval", "30",
                      *with_callback("tests.helpers.RecordBatches", folder=batches, count=3),
                      *with_callback("tests.helpers.DumpMetrics", path=metrics)), isolated_cache)

    assert "is deprecated" not in out.stderr  # torch's notice inside Lightning's all_gather, once per process

    # each rank trained on its own contiguous streams, exactly those the batching scheme assigns it
    assert_ranks_trained_their_own_streams(batches, shakespeare_path, processes)

    # only rank 0 sampled and logged: one validation, so one row per temperature, in one W&B run
    samples = [json.loads(line) for line in next((tmp_path / "ddp").rglob("samples.jsonl")).read_text().splitlines()]
    assert sorted(row["temperature"] for row in samples) == [0.5, 0.8, 1.0]
    assert len(list((tmp_path / "ddp").glob("runs/wandb/offline-run-*"))) == 1

    # the N-process validation bpc equals a 1-process validation of the same weights
    ddp_bpc = read_metrics(metrics)[-1]["val/bpc"]
    last = next((tmp_path / "ddp").rglob("last.ckpt"))
    single = tmp_path / "single.jsonl"
    run_cli(tmp_path / "single", small_run(shakespeare_path, "--ckpt_path", str(last),
                      *with_callback("tests.helpers.DumpMetrics", path=single), cmd="validate"), isolated_cache)
    assert read_metrics(single)[-1]["val/bpc"] == pytest.approx(ddp_bpc, rel=1e-5)


@pytest.mark.slow
def test_torchrun_launch_via_the_multinode_script(tmp_path, shakespeare_path, isolated_cache):
    """scripts/multinode.sh on one node with 2 CPU processes: Lightning takes its ranks from torchrun."""
    metrics = tmp_path / "m.jsonl"
    port = 29500 + os.getpid() % 1000
    env = child_env(isolated_cache, NNODES="1", NPROC="2", MASTER=f"127.0.0.1:{port}",
                    PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    args = small_run(shakespeare_path, "--trainer.accelerator", "cpu", "--trainer.max_steps", "10",
                     "--trainer.val_check_interval", "10", "--trainer.limit_val_batches", "3",
                     *with_callback("tests.helpers.DumpMetrics", path=metrics))[1:]  # the script adds `fit`
    (tmp_path / "run").mkdir()
    out = subprocess.run([str(REPO / "scripts" / "multinode.sh"), *args], cwd=tmp_path / "run", env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in out.stderr + out.stdout  # two processes joined one job
    assert read_metrics(metrics)[-1]["step"] == 10

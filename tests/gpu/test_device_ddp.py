"""DDP through Lightning on the devices present: one process with --trainer.strategy ddp still takes
the DDP code path (process group, DistributedDataParallel wrapper); with 2+ GPUs, the checks of
tests/train/test_distributed.py (which runs them with CPU processes): each rank its own streams,
and the N-process val bpc equals a 1-process validation of the same weights."""

from __future__ import annotations

import json

import pytest
import torch

from tests.cli_runs import charlm, with_callback
from tests.conftest import CPU_AND_CUDA, needs_gpus
from tests.gpu.runs import device_run, fit_in
from tests.helpers import assert_ranks_trained_their_own_streams, read_metrics

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("device", CPU_AND_CUDA)
def test_one_device_with_the_ddp_strategy_goes_through_ddp(tmp_path, shakespeare_path, device):
    record = tmp_path / "strategy.json"
    try:
        fit_in(tmp_path, device_run(shakespeare_path, device, "--trainer.strategy", "ddp", "--trainer.max_steps",
                                    "5", "--trainer.val_check_interval", "5", "--trainer.limit_val_batches", "2",
                                    *with_callback("tests.gpu.runs.RecordStrategy", path=record)))
    finally:  # Lightning leaves its 1-process group behind; later tests in this process must not sync through it
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    seen = json.loads(record.read_text())
    assert seen == {"strategy": "DDPStrategy", "wrapper": "DistributedDataParallel", "world_size": 1,
                    "backend": "nccl" if device == "cuda" else "gloo"}, seen


@pytest.mark.gpu
@needs_gpus(2)
def test_ddp_on_every_gpu_disjoint_streams_and_exact_val_bpc(tmp_path, shakespeare_path, isolated_cache):
    gpus = torch.cuda.device_count()
    metrics, batches = tmp_path / "ddp.jsonl", tmp_path / "batches"
    args = device_run(shakespeare_path, "cuda", "--trainer.devices", str(gpus), "--trainer.strategy", "ddp",
                      "--trainer.max_steps", "30", "--trainer.val_check_interval", "30",
                      *with_callback("tests.helpers.RecordBatches", folder=batches, count=3),
                      *with_callback("tests.helpers.DumpMetrics", path=metrics))
    (tmp_path / "ddp").mkdir()
    out = charlm(*args, cwd=tmp_path / "ddp", cache=isolated_cache, timeout=300)  # Lightning starts the other ranks
    assert out.returncode == 0, out.stderr[-4000:]

    assert_ranks_trained_their_own_streams(batches, shakespeare_path, gpus)
    samples = next((tmp_path / "ddp").rglob("samples.jsonl")).read_text().splitlines()
    assert sorted(json.loads(row)["temperature"] for row in samples) == [0.5, 0.8, 1.0]  # rank 0 only

    ddp_bpc = read_metrics(metrics)[-1]["val/bpc"]
    last = next((tmp_path / "ddp").rglob("last.ckpt"))
    single = tmp_path / "single.jsonl"
    (tmp_path / "single").mkdir()
    out = charlm(*device_run(shakespeare_path, "cuda", "--ckpt_path", str(last),
                             *with_callback("tests.helpers.DumpMetrics", path=single), cmd="validate"),
                 cwd=tmp_path / "single", cache=isolated_cache, timeout=300)
    assert out.returncode == 0, out.stderr[-4000:]
    assert read_metrics(single)[-1]["val/bpc"] == pytest.approx(ddp_bpc, rel=1e-5)

"""A fit on the device: batches come from the device with no host copy per step, fused AdamW on a
GPU, the loss falls, and the checkpoint it writes samples on the CPU."""

from __future__ import annotations

import json

import pytest

from charlm.train.lightning_module import CharLM
from tests.cli_runs import charlm, with_callback
from tests.conftest import CPU_AND_CUDA
from tests.gpu.runs import device_run, fit_in

pytestmark = [pytest.mark.usefixtures("one_torch_thread"),
              pytest.mark.filterwarnings("ignore:You have overridden `on_before_batch_transfer`")]  # the spy

B, T = 64, 64  # a batch's bytes (B x (T+1) = 4,160 uint8) dwarf the few scalars a step may copy
STEPS = ["--data.batch_size", str(B), "--data.seq_len", str(T), "--trainer.max_steps", "60",
         "--trainer.val_check_interval", "60", "--trainer.limit_val_batches", "5", "--model.lr", "0.01",
         "--model.warmup_steps", "10", "--trainer.log_every_n_steps", "100"]  # no logging inside the profiled steps


def batch_devices(monkeypatch) -> list[str]:
    """The device of each training batch as the loader yields it, before Lightning's batch_to_device."""
    seen: list[str] = []
    original = CharLM.on_before_batch_transfer

    def spy(self, batch, dataloader_idx):
        if self.trainer.training:
            seen.append(batch[0].device.type)
        return original(self, batch, dataloader_idx)

    monkeypatch.setattr(CharLM, "on_before_batch_transfer", spy)  # the real hook still runs
    return seen


@pytest.mark.parametrize("device", CPU_AND_CUDA)
def test_fit_on_the_device_then_sample_on_the_cpu(tmp_path, shakespeare_path, device, monkeypatch):
    seen = batch_devices(monkeypatch)
    copies = tmp_path / "h2d.json"
    cli = fit_in(tmp_path, device_run(shakespeare_path, device, *STEPS,
                                      *with_callback("tests.gpu.runs.HostToDeviceBytes", path=copies)))
    assert set(seen) == {device} and len(seen) >= 60, seen[:5]  # the split lives on the device
    h2d = json.loads(copies.read_text())
    assert h2d["bytes"] < B * (T + 1), h2d  # five steps copied less than one batch: no per-step batch copy
    fused = cli.trainer.optimizers[0].defaults.get("fused")
    assert bool(fused) == (device == "cuda"), fused  # one kernel for all parameters on a GPU
    bpc = float(cli.trainer.callback_metrics["val/bpc"])
    assert bpc < 4.3, bpc  # from log2(65) = 6.0 at the start; 3.91 measured on the CPU

    last = tmp_path / cli.trainer.checkpoint_callback.last_model_path
    out = charlm("sample", "--ckpt_path", str(last), "--device", "cpu", "--length", "40", "--temperature", "0",
                 "--seed", "0")
    assert out.returncode == 0, out.stderr[-2000:]
    assert len(out.stdout.strip()) > 10, out.stdout


@pytest.mark.gpu
def test_a_split_fed_from_the_host_is_copied_every_step(tmp_path, shakespeare_path, monkeypatch):
    """The contrast (device_resident_fraction 0: batches through pinned memory): the measurement above sees
    per-step copies when there are some, so its "less than one batch" means something."""
    copies = tmp_path / "h2d.json"
    fit_in(tmp_path, device_run(shakespeare_path, "cuda", *STEPS, "--data.device_resident_fraction", "0",
                                *with_callback("tests.gpu.runs.HostToDeviceBytes", path=copies)))
    h2d = json.loads(copies.read_text())
    assert h2d["bytes"] >= 4 * B * (T + 1), h2d  # steps 5 to 10: a batch each

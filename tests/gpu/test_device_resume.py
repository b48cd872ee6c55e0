"""Resume on the device equals an uninterrupted run (tests/train/test_train.py: the CPU original,
2 layers, dropout 0.3).

Bit-exact with ``--trainer.deterministic true`` for one layer: the dropout before the head draws from
torch's RNG, which the checkpoint restores (CharLM.on_save_checkpoint). Two layers on a GPU are not:
cuDNN applies the dropout *between* layers itself, from a dropout state it seeds once per process and
keeps inside the library (aten/native/cudnn/RNN.cpp, get_dropout_state), out of reach of any RNG state a
checkpoint can hold; the resumed run's masks differ from step 26 on, so its weights differ by what 25
steps of other masks make (~1e-3). Its val bpc is held within 2% of the uninterrupted run's instead.
"""

from __future__ import annotations

import pytest
import torch

from tests.cli_runs import keeping_sigint, with_callback
from tests.gpu.runs import device_run, fit_in

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize(("device", "layers"), [
    pytest.param("cpu", 1, id="cpu-1layer"),
    pytest.param("cuda", 1, id="cuda-1layer", marks=pytest.mark.gpu),
    pytest.param("cuda", 2, id="cuda-2layers", marks=pytest.mark.gpu),
])
def test_resume_on_the_device_equals_an_uninterrupted_run(tmp_path, shakespeare_path, device, layers):
    common = ["--trainer.max_steps", "50", "--trainer.val_check_interval", "50", "--trainer.limit_val_batches", "5",
              "--model.dropout", "0.3", "--model.num_layers", str(layers), "--model.warmup_steps", "10",
              "--trainer.deterministic", "true"]
    full = fit_in(tmp_path / "full", device_run(shakespeare_path, device, *common))
    expected = {k: v.detach().cpu().clone() for k, v in full.model.state_dict().items()}
    full_bpc = float(full.trainer.callback_metrics["val/bpc"])

    with keeping_sigint(), pytest.raises(SystemExit):  # Lightning exits after its graceful Ctrl-C shutdown
        fit_in(tmp_path / "cut", device_run(shakespeare_path, device, *common,
                                            *with_callback("tests.helpers.InterruptAt", step=25)))
    saved = list((tmp_path / "cut").rglob("interrupted.ckpt"))
    assert len(saved) == 1
    resumed = fit_in(tmp_path / "cut", device_run(shakespeare_path, device, *common, "--ckpt_path", str(saved[0])))
    assert resumed.trainer.global_step == 50
    got = {k: v.detach().cpu() for k, v in resumed.model.state_dict().items()}
    assert got.keys() == expected.keys()
    if layers == 1 or device == "cpu":
        for name in expected:
            assert torch.equal(got[name], expected[name]), name
    else:
        assert float(resumed.trainer.callback_metrics["val/bpc"]) == pytest.approx(full_bpc, rel=0.02)

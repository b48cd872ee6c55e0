"""A fit resumed from a checkpoint written at a batch end (``ModelCheckpoint(every_n_train_steps=...)``)
continues with the next batch: it ends with the weights of a run that never stopped."""

import torch

from tests.cli_runs import run_in, small_run, with_callback


def test_resume_from_a_batch_end_checkpoint_equals_uninterrupted(tmp_path, shakespeare_path):
    # 60 steps of 3 x ~61 batch epochs: the checkpoint at step 20 is mid-epoch, after validation at 15
    common = ["--trainer.max_steps", "60", "--trainer.val_check_interval", "15", "--trainer.limit_val_batches", "2",
              "--model.dropout", "0.3", "--model.warmup_steps", "10"]
    every_20 = with_callback("lightning.pytorch.callbacks.ModelCheckpoint", every_n_train_steps=20, save_top_k=-1,
                             monitor="null", dirpath=str(tmp_path / "every20"), filename="{step}")
    full = run_in(tmp_path / "full", small_run(shakespeare_path, *common, *every_20))
    expected = {k: v.clone() for k, v in full.model.state_dict().items()}
    saved = tmp_path / "every20" / "step=20.ckpt"
    assert torch.load(saved, weights_only=True)["global_step"] == 20

    resumed = run_in(tmp_path / "resumed", small_run(shakespeare_path, *common, *every_20, "--ckpt_path", str(saved)))
    assert resumed.trainer.global_step == 60
    got = resumed.model.state_dict()
    for name in expected:
        assert torch.equal(got[name], expected[name]), name

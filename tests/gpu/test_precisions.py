"""Every precision charlm trains in ends where 32-true does, runs its recurrence in the dtype it should, and
under 16-mixed clipping sees unscaled gradients (tests/train/test_precision.py: the CPU bf16-mixed version,
300 steps; tests/train/test_precision_choices.py: the choices' plumbing on the CPU).

Tolerances on the val bpc after 200 steps, relative to the reference's (the device's first choice): 1% for
32-true with TF32 and for the mixed precisions (fp32 weights; bf16-mixed: only the embedding and head in 16
bits; 16-mixed: the recurrence in fp16 too, under a GradScaler), 3% for bf16-true, whose weights and AdamW
updates themselves are bf16 (8-bit mantissa: an update below 1/256 of a weight is lost). Measured on the CPU:
32-true 3.6009, bf16-mixed 3.6008 (0.004% off), bf16-true 3.6263 (0.7% off); first-step gradient norms
0.2593 / 0.2591 / 0.2590.
"""

from __future__ import annotations

import json
import math

import pytest

from charlm.train.precision import fp32_math
from tests.cli_runs import with_callback
from tests.conftest import CPU_AND_CUDA
from tests.gpu.runs import device_run, fit_in

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# label -> extra flags; the precision is the label's first word
CHOICES = {"32-true": [], "32-true ieee": ["--model.tf32", "false"], "32-true tf32": ["--model.tf32", "true"],
           "16-mixed": [], "bf16-mixed": [], "bf16-true": []}
TOLERANCE = {"32-true": 0.0, "32-true ieee": 0.0, "32-true tf32": 0.01, "bf16-mixed": 0.01, "16-mixed": 0.01,
             "bf16-true": 0.03}
# Lightning turns 16-mixed into bf16-mixed on the CPU (fp16 AMP is CUDA's), and TF32 is CUDA's: the CPU runs
# three; the first of each list is the reference
PRECISIONS = {"cpu": ["32-true", "bf16-mixed", "bf16-true"],
              "cuda": ["32-true ieee", "32-true tf32", "16-mixed", "bf16-mixed", "bf16-true"]}
# (device, label) -> the dtype of the fused RNN's output, and of the state carried between batches
DTYPES = {("cuda", "16-mixed"): ("torch.float16", ["torch.float32"])}
BF16_WEIGHTS = ("torch.bfloat16", ["torch.bfloat16"])
FP32 = ("torch.float32", ["torch.float32"])
FP32_MATH = {"32-true ieee": {"rnn": "ieee", "matmul": "ieee"}, "32-true tf32": {"rnn": "tf32", "matmul": "tf32"}}


@pytest.mark.parametrize("device", CPU_AND_CUDA)
def test_each_precision_ends_near_32_true_and_clips_unscaled_gradients(tmp_path, shakespeare_path, device):
    bpc, clip, seen = {}, {}, {}
    before = fp32_math()
    for label in PRECISIONS[device]:
        norms, record = tmp_path / f"{label}.json", tmp_path / f"{label}-dtypes.json"
        cli = fit_in(tmp_path / label, device_run(
            shakespeare_path, device, "--trainer.precision", label.split()[0], *CHOICES[label],
            "--trainer.max_steps", "200", "--trainer.val_check_interval", "200", "--trainer.limit_val_batches", "20",
            "--model.lr", "0.005", "--trainer.log_every_n_steps", "50",
            *with_callback("tests.gpu.runs.RecordClipNorms", path=norms),
            *with_callback("tests.gpu.runs.RecordPrecision", path=record)))
        bpc[label] = float(cli.trainer.callback_metrics["val/bpc"])
        clip[label] = json.loads(norms.read_text())
        seen[label] = json.loads(record.read_text())
        assert fp32_math() == before, label  # --model.tf32 holds for its run only
    reference = PRECISIONS[device][0]
    for label, value in bpc.items():
        assert value == pytest.approx(bpc[reference], rel=TOLERANCE[label]), bpc
    assert bpc[reference] < 4.0, bpc  # it learned: the comparison is between trained models

    for label, record in seen.items():
        default = BF16_WEIGHTS if label == "bf16-true" else FP32
        assert (record["rnn"], record["carried"]) == DTYPES.get((device, label), default), (label, record)
        if device == "cuda" and label in FP32_MATH:
            assert record["fp32_math"] == FP32_MATH[label], (label, record)

    # the same seed, batches and initial weights: the first step's gradient is the same up to 16-bit rounding;
    # a clipping hook given scaled gradients would see them 2**16 times larger
    first = clip[reference]["norms"][0]
    for label, record in clip.items():
        if label == "16-mixed":
            continue
        assert record["norms"][0] == pytest.approx(first, rel=0.05), (label, record, first)
    if device == "cuda":
        # 16-mixed: fp16 weight gradients may overflow at the scaler's first scale (2**16); the scaler then
        # skips the step (the weights stay) and halves the scale. The first finite norm is that of the same
        # weights, maybe on the next batch: near the reference's, and nowhere near 2**16 times it
        record = clip["16-mixed"]
        finite = [n for n in record["norms"] if math.isfinite(n)]
        assert finite and finite[0] == pytest.approx(first, rel=0.5 if finite[0] != record["norms"][0] else 0.05), \
            (record, first)
        assert record["scale"] > 1, record  # the scaler was in use, so unscaling mattered

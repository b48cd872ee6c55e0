"""scripts/gpu_check.py on this CPU-only machine: every GPU part "not run" (never passed), the table and
its JSON well-formed, the parsing of each part's output proven on tiny sizes (``--smoke``); and training
on a local file with W&B off needs none of the packages the GPU machine lacks (wandb, datasets, pooch)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest
import torch

from tests.conftest import REPO

CHOICES = ["32-true ieee", "32-true", "32-true tf32", "16-mixed", "bf16-mixed", "bf16-true"]
PRECISION_ROWS = [*(f"precision {label}" for label in CHOICES), "precision 16-mixed foreach (raw loop only)",
                  "precision: fastest sound choice"]
PARTS = ["jsonargparse (LightningCLI)", "pytest -m gpu", *PRECISION_ROWS,
         *(f"bench {cell} {p}" for p in ("32-true", "bf16-mixed", "bf16-true") for cell in ("lstm", "gru", "rnn")),
         "sampling lstm 3x512 batch 1", "sampling lstm 3x512 batch 128",
         "preset gpu_60s: val bpc", "preset gpu_60s: last 10% bpc"]


def gpu_check(tmp_path, *args: str, timeout: float = 300) -> tuple[dict, list[str]]:
    """Run the script; its JSON report and the table rows it printed."""
    out = subprocess.run([sys.executable, "scripts/gpu_check.py", "--out", str(tmp_path / "report.json"), *args],
                         cwd=REPO, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    rows = [line for line in lines if line.startswith("| ") and not line.startswith(("| part", "| ---"))]
    return json.loads((tmp_path / "report.json").read_text()), rows


def check_well_formed(report: dict, printed: list[str]) -> dict[str, dict]:
    """Every part once, in order, in both the JSON and the table; the JSON rows by part."""
    assert [r["part"] for r in report["rows"]] == PARTS
    assert [line.split("|")[1].strip() for line in printed] == PARTS
    assert all(r["status"] in ("pass", "fail", "measured", "smoke", "not run") for r in report["rows"])
    assert all(r["note"] for r in report["rows"] if r["status"] == "not run")  # always a reason
    return {r["part"]: r for r in report["rows"]}


def load_gpu_check(monkeypatch):
    """scripts/gpu_check.py as a module (registered: its dataclasses look their module up)."""
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "scripts" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "gpu_check", module)
    spec.loader.exec_module(module)
    return module


def test_dry_run_runs_nothing_and_says_so(tmp_path):
    report, printed = gpu_check(tmp_path, "--dry-run")
    rows = check_well_formed(report, printed)
    bench = {part for part in PARTS if part.startswith("bench ")}  # not a default part
    assert {(r["status"], r["note"]) for p, r in rows.items() if p not in bench} == {("not run", "dry run")}
    assert {rows[p]["note"] for p in bench} == {"not selected (--parts)"}
    assert report["mode"] == "dry run" and report["budgets_s"]["total"] == 480
    # the default parts' budgets fit the 8 minutes, with time to start the processes
    budgets = report["budgets_s"]
    assert sum(budgets[part] for part in ("wheels", "pytest", "precisions", "sampling", "preset")) <= 480


def test_the_precision_choices_are_the_benchs(monkeypatch):
    module = load_gpu_check(monkeypatch)
    spec = importlib.util.spec_from_file_location("bench_for_test", REPO / "scripts" / "bench.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert list(module.CHOICES) == list(bench.CHOICES) == CHOICES and module.CHOICES[0] == bench.REFERENCE
    assert list(module.RAW_ONLY) == list(bench.RAW_ONLY)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the parts would run")
def test_without_cuda_every_gpu_part_is_not_run(tmp_path):
    report, printed = gpu_check(tmp_path, "--parts", "pytest,precisions,bench,sampling,preset")
    rows = check_well_formed(report, printed)
    assert report["machine"]["cuda"] is False
    for part in PARTS[1:]:
        assert rows[part]["status"] == "not run" and "no CUDA device" in rows[part]["note"], rows[part]


def test_smoke_parses_every_part_it_runs(tmp_path, shakespeare_path):
    """Tiny sizes on the CPU: the numbers each part reports are read back (no verdict on them)."""
    report, printed = gpu_check(tmp_path, "--smoke", "--parts", "bench:32-true,precisions,sampling,preset",
                                "--data.path", str(shakespeare_path))
    rows = check_well_formed(report, printed)
    reference = rows["precision 32-true ieee"]
    assert reference["status"] == "measured" and 0 < reference["data"]["val_bpc"] < 9, reference
    for label in CHOICES[1:]:
        row = rows[f"precision {label}"]
        assert row["status"] == "smoke" and row["data"]["charlm"] > 0 and row["data"]["raw"] > 0, row
        assert 0 < row["data"]["val_bpc"] < 9 and row["data"]["precision"] in label, row
    assert rows["precision 16-mixed foreach (raw loop only)"]["data"]["raw"] > 0
    fastest = rows["precision: fastest sound choice"]
    assert fastest["status"] == "smoke" and fastest["data"]["best"] in CHOICES and fastest["data"]["ratio"] > 0
    for cell in ("lstm", "gru", "rnn"):
        row = rows[f"bench {cell} 32-true"]
        assert row["status"] == "smoke" and row["data"]["ratio"] > 0 and len(row["data"]["raws"]) == 2, row
        assert rows[f"bench {cell} bf16-true"]["note"] == "not selected (--parts)"
    for batch in (1, 128):
        row = rows[f"sampling lstm 3x512 batch {batch}"]
        assert row["status"] == "smoke" and set(row["data"]["rows"]) == {"fused", "cells"}, row
    val, last10 = rows["preset gpu_60s: val bpc"], rows["preset gpu_60s: last 10% bpc"]
    assert val["status"] == "measured" and 0 < val["data"]["val_bpc"] < 9, val
    assert last10["status"] == "smoke" and 0 < last10["data"]["bpc"] < 9, last10
    assert rows["pytest -m gpu"]["note"] == "not selected (--parts)"


def test_pytest_summary_lines_are_counted():
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "scripts" / "gpu_check.py")
    module = sys.modules["gpu_check"] = importlib.util.module_from_spec(spec)  # registered: its dataclasses
    spec.loader.exec_module(module)
    assert module.pytest_counts("3 passed, 1 failed, 17 skipped, 359 deselected in 41.2s") == {
        "passed": 3, "failed": 1, "skipped": 17, "deselected": 359}
    assert module.pytest_counts("= 2 errors, 1 xfailed in 3s =") == {"errors": 2, "xfailed": 1}


# what the GPU machine lacks: importing one of these fails there, as it does here in the child
BLOCK = """
import sys, importlib.abc, traceback
tried = []
class Missing(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("wandb", "datasets", "pooch"):
            tried.append((name, "".join(traceback.format_stack())))
            raise ModuleNotFoundError(f"No module named {name!r}")
sys.meta_path.insert(0, Missing())
sys.argv = ["charlm", *sys.argv[1:]]
try:
    import runpy; runpy.run_module("charlm", run_name="__main__")
finally:
    # jsonargparse tries `wandb` once while reading Lightning's WandbLogger signature (its TYPE_CHECKING
    # imports), before charlm drops the disabled logger; nothing else may
    late = [name for name, stack in tried if "jsonargparse" not in stack]
    print("IMPORTS TRIED:", late, file=sys.stderr)
"""


def test_local_fit_with_wandb_off_needs_no_wandb_datasets_or_pooch(tmp_path, shakespeare_path):
    corpus = tmp_path / "small.txt"
    corpus.write_bytes(shakespeare_path.read_bytes()[:100_000])
    out = subprocess.run([sys.executable, "-c", BLOCK, "fit", "--data", "datamodules.TextDataModule",
                          "--data.path", str(corpus), "--model.num_layers", "1", "--model.hidden_size", "16",
                          "--data.batch_size", "8", "--data.seq_len", "16", "--trainer.max_steps", "2",
                          "--trainer.val_check_interval", "1", "--trainer.limit_val_batches", "1",
                          "--trainer.enable_progress_bar", "false", "--trainer.accelerator", "cpu"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env={**__import__("os").environ, "PYTHONPATH": str(REPO), "WANDB_MODE": "disabled"})
    assert out.returncode == 0, out.stderr[-3000:]
    assert "IMPORTS TRIED: []" in out.stderr, out.stderr[-3000:]
    assert list((tmp_path / "runs").rglob("last.ckpt")) and list((tmp_path / "runs").rglob("samples.jsonl"))


def test_skipped_gpu_tests_are_named_with_their_reasons(monkeypatch):
    """A skip is a test that did not run: the pytest row's note says how many and why (pytest -rs)."""
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "scripts" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "gpu_check", module)  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    text = ("s..s\n=== short test summary info ===\n"
            "SKIPPED [3] tests/gpu/test_device_ddp.py:37: needs 2 CUDA devices, this machine has 1\n"
            "SKIPPED [1] tests/conftest.py:52: the real Tiny Shakespeare is not at /x (set CHARLM_SHAKESPEARE)\n"
            "2 passed, 4 skipped in 3.1s\n")
    assert module.skip_reasons(text) == ("skipped: 3 x needs 2 CUDA devices, this machine has 1; "
                                         "1 x the real Tiny Shakespeare is not at /x (set CHARLM_SHAKESPEARE)")
    assert module.skip_reasons("2 passed in 1.0s\n") == ""


def test_each_preset_variant_trains_with_its_own_flags(tmp_path, shakespeare_path):
    """--variant trains the preset once per flag set, each in its own folder, its rows named by its flags."""
    report, _ = gpu_check(tmp_path, "--smoke", "--parts", "preset", "--data.path", str(shakespeare_path),
                          "--variant", "--trainer.max_steps 3", "--variant", "--trainer.max_steps 4")
    rows = {r["part"]: r for r in report["rows"]}
    for steps in (3, 4):
        val = rows[f"preset gpu_60s [--trainer.max_steps {steps}]: val bpc"]
        assert val["status"] == "measured" and val["data"]["val_curve"][-1][0] == steps - 1, val
        assert rows[f"preset gpu_60s [--trainer.max_steps {steps}]: last 10% bpc"]["status"] == "smoke"


def test_a_variant_that_does_not_split_is_refused_before_anything_runs(tmp_path):
    out = subprocess.run([sys.executable, "scripts/gpu_check.py", "--out", str(tmp_path / "r.json"), "--parts",
                          "preset", "--variant", "'--model.weight_drop 0.3"], cwd=REPO, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert "--variant" in out.stderr and "does not split into flags" in out.stderr, out.stderr
    assert not (tmp_path / "r.json").exists()


def bench_result(bpc: dict[str, float], charlm: dict[str, float], raw: dict[str, float], other: float) -> dict:
    rows = [{"label": label, "precision": label.split()[0], "tf32": None, "raw": raw[label], "charlm": charlm[label],
             "ratio": charlm[label] / raw[label], "val_bpc": bpc[label], "fp32_math": {"rnn": "tf32", "matmul": "ieee"}}
            for label in bpc]
    return {"device": "NVIDIA H100 80GB HBM3", "rows": rows, "reference": CHOICES[0],
            "raw_only": [{"label": "16-mixed foreach", "raw": other}]}


def test_precision_verdicts_from_the_benchs_numbers(monkeypatch, tmp_path):
    """Each choice passes when its val bpc is within 1% of strict 32-true's; the fastest of those (not the
    fastest overall) is held against the fastest raw loop, the raw-only ones included."""
    module = load_gpu_check(monkeypatch)
    plan = module.Plan(None, True, False, False, tmp_path, 0.0, {}, set())
    bpc = {"32-true ieee": 2.000, "32-true": 2.001, "32-true tf32": 2.010, "16-mixed": 2.004, "bf16-mixed": 2.000,
           "bf16-true": 2.050}
    charlm = {"32-true ieee": 0.78e6, "32-true": 0.84e6, "32-true tf32": 1.25e6, "16-mixed": 1.33e6,
              "bf16-mixed": 0.9e6, "bf16-true": 1.6e6}
    raw = {label: speed * 1.02 for label, speed in charlm.items()}
    rows = {r.part: r for r in module.precision_rows(plan, bench_result(bpc, charlm, raw, 1.38e6), 90.0)}
    assert list(rows) == PRECISION_ROWS
    assert rows["precision 32-true ieee"].status == "measured"
    assert {label: rows[f"precision {label}"].status for label in CHOICES[1:]} == {
        "32-true": "pass", "32-true tf32": "pass", "16-mixed": "pass", "bf16-mixed": "pass", "bf16-true": "fail"}
    assert "(+2.50%)" in rows["precision bf16-true"].value and "cuDNN RNN tf32" in rows["precision 16-mixed"].note
    fastest = rows["precision: fastest sound choice"]  # bf16-true is faster, but 2.5% off: not sound
    assert fastest.data["best"] == "16-mixed" and fastest.data["fastest_raw"] == "bf16-true"
    assert fastest.status == "fail" and fastest.data["ratio"] == pytest.approx(1.33 / (1.6 * 1.02))
    assert "target reached" in fastest.note
    raw["bf16-true"], charlm["bf16-true"] = 1.2e6, 1.15e6
    rows = {r.part: r for r in module.precision_rows(plan, bench_result(bpc, charlm, raw, 1.38e6), 90.0)}
    fastest = rows["precision: fastest sound choice"]  # 1.33 / 1.38: the raw-only loop is the fastest
    assert fastest.status == "pass" and fastest.data["fastest_raw"] == "16-mixed foreach"
    assert fastest.value == "16-mixed: 1,330,000 tok/s = 0.964 x 16-mixed foreach raw (1,380,000)"


def test_precision_rows_of_a_part_cut_short_say_why(monkeypatch, tmp_path):
    """The bench writes its JSON after each choice: out of time, the choices it finished are still rows."""
    module = load_gpu_check(monkeypatch)
    plan = module.Plan(None, True, False, False, tmp_path, 0.0, {}, set())
    result = bench_result({"32-true ieee": 2.0, "32-true": 2.0}, {"32-true ieee": 8e5, "32-true": 9e5},
                          {"32-true ieee": 8e5, "32-true": 9e5}, 1.3e6)
    rows = {r.part: r for r in module.precision_rows(plan, result, 150.0, "ran out of its time budget")}
    assert rows["precision 32-true"].status == "pass"
    cut = rows["precision 16-mixed"]
    assert cut.status == "not run" and cut.note == "ran out of its time budget"
    assert rows["precision: fastest sound choice"].status == "fail"  # 0.9 / 1.3
    assert "ran out of its time budget" in rows["precision: fastest sound choice"].note


def test_a_preset_candidate_runs_only_with_a_whole_budget_left(monkeypatch, tmp_path):
    import time

    module = load_gpu_check(monkeypatch)
    plan = module.Plan(tmp_path / "corpus.txt", True, False, False, tmp_path, time.monotonic() + 60, {}, {"preset"})
    val, last10 = module.check_preset(plan, "--trainer.max_steps 900")
    assert val.status == last10.status == "not run"
    assert "s of the check left, a preset run takes up to 110 s" in val.note, val


def test_candidates_are_tried_after_the_variants(tmp_path):
    report, _ = gpu_check(tmp_path, "--dry-run", "--variant", "--model.dropout 0.4", "--candidates")
    presets = [r["part"] for r in report["rows"] if r["part"].startswith("preset ") and r["part"].endswith("val bpc")]
    assert presets[0] == "preset gpu_60s [--model.dropout 0.4]: val bpc" and len(presets) == 6, presets
    first = "--trainer.precision 16-mixed --trainer.max_steps 1000 --model.weight_drop 0.2"
    assert presets[1] == f"preset gpu_60s [{first}]: val bpc"

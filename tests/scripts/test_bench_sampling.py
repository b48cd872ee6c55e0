"""The sampling benchmark runs (tiny setting, so it cannot rot); no timing is asserted."""

import subprocess
import sys

from tests.conftest import REPO


def test_bench_sampling_prints_a_row_per_configuration(tmp_path):
    out = subprocess.run([sys.executable, "scripts/bench_sampling.py", "--num_layers", "1", "--hidden_size", "16",
                          "--batch", "4", "--length", "40", "--devices", "[cpu]", "--repeats", "3"],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    rows = [line for line in out.stdout.splitlines() if line.startswith("| lstm 1x16 | cpu")]
    assert [r.split("|")[3:5] for r in rows] == [[" 1 ", " fused "], [" 1 ", " cells "], [" 4 ", " fused "],
                                                 [" 4 ", " cells "]]
    assert "median of 3 rounds" in out.stdout
    for r in rows:  # the median lies within its spread (slowest-fastest of the 3 rounds)
        speed = float(r.split("|")[5].replace(",", ""))
        low, high = (float(x.replace(",", "")) for x in r.split("|")[6].split("-"))
        assert 0 < low <= speed <= high, r


def test_auto_step_mode_follows_the_measured_crossover():
    """auto: fused on a CPU for the batch sizes where the bench measured it faster (CPU_FUSED_BATCHES), cells
    otherwise, graph on CUDA; and make_step hands back the eager path named."""
    import torch

    from charlm.infer.generate import CPU_FUSED_BATCHES, auto_step_mode, make_step
    from charlm.model import CharRNN, CharRNNConfig

    cpu = torch.device("cpu")
    low, high = CPU_FUSED_BATCHES.start, CPU_FUSED_BATCHES.stop
    assert [auto_step_mode(cpu, b) for b in (1, low - 1, low, high - 1, high, 4096)] == [
        "cells", "cells", "fused", "fused", "cells", "cells"]
    assert auto_step_mode(torch.device("cuda"), 1) == auto_step_mode(torch.device("cuda"), 512) == "graph"
    assert auto_step_mode(torch.device("mps"), 64) == "cells"
    model = CharRNN(CharRNNConfig(vocab_size=5, num_layers=1, hidden_size=8)).eval()
    assert make_step(model, "cells") == model.step  # the cells: the model's own step
    assert make_step(model, "fused").__name__ == "fused"

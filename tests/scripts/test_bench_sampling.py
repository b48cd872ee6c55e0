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

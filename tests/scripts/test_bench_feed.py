"""The feed benchmark runs in a tiny setting (so it cannot rot); no timing is asserted."""

import subprocess
import sys

from tests.conftest import REPO


def test_bench_feed_measures_both_paths_with_their_spread():
    out = subprocess.run([sys.executable, "scripts/bench_feed.py", "--size_mb", "1", "--batches", "20", "--steps", "8",
                          "--warmup", "2", "--repeats", "2", "--num_layers", "1", "--hidden_size", "16"],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "median (min-max) of 2 alternating repeats" in out.stdout
    rows = [line.split("|")[1:-1] for line in out.stdout.splitlines() if line.startswith(("| resident", "| fed"))]
    assert [r[0].strip() for r in rows] == ["resident", "fed"]
    for row in rows:
        for cell in row[1:]:  # "median (min-max)": the median lies within its spread
            median, spread = cell.strip().split(" (")
            low, high = (float(x.replace(",", "")) for x in spread.rstrip(")").split("-"))
            assert 0 < low <= float(median.replace(",", "")) <= high, row

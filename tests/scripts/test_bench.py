"""The training benchmark runs in a tiny setting (so it cannot rot); no timing is asserted."""

import subprocess
import sys

from tests.conftest import REPO


def test_bench_compares_charlm_with_the_raw_loop_for_every_cell():
    out = subprocess.run([sys.executable, "scripts/bench.py", "--num_layers", "1", "--hidden_size", "16",
                          "--batch_size", "4", "--seq_len", "8", "--steps", "6", "--warmup", "2", "--repeats", "3"],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [line for line in out.stdout.splitlines() if line.startswith(("| rnn", "| gru", "| lstm"))]
    assert [r.split("|")[1].strip() for r in rows] == ["rnn", "gru", "lstm"]
    assert "median of 3 interleaved repeats" in out.stdout
    for r in rows:  # the median ratio lies within its spread (min-max of the 3 pairs' ratios)
        ratio, spread = float(r.split("|")[4].strip().rstrip("x")), r.split("|")[5].strip()
        low, high = (float(x) for x in spread.split("-"))
        assert 0 < low <= ratio <= high, r

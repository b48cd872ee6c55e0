"""The preparation benchmark runs end to end in a tiny setting (no timing asserted)."""

import subprocess
import sys

from tests.conftest import REPO


def test_bench_prepare_prints_a_row_per_corpus(tmp_path):
    out = subprocess.run([sys.executable, "scripts/bench_prepare.py", "--size", "300000", "--train_batches", "3",
                          "--linux", str(tmp_path / "none.tar.xz")],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    row = next(line for line in out.stdout.splitlines() if line.startswith("| enwik8 (stand-in)"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "270,000" and int(cells[2]) > 10 and float(cells[4]) > 0  # 90% of 300,000 bytes train

"""scripts/bench_serve.py end to end on the fixture checkpoint, tiny sizes: its lines come out with
numbers, in the page too (headless Chromium; skipped where there is none). Not a speed test."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO

CHECKPOINT = REPO / "tests" / "fixtures" / "lstm_1x16_v0.ckpt"


@pytest.mark.skipif(shutil.which("chromium") is None and shutil.which("chromium-browser") is None,
                    reason="no Chromium here (apt-get install chromium)")
def test_bench_serve_measures_over_http_and_in_the_page():
    pytest.importorskip("playwright", reason="the serve extra's browser driver: pip install playwright")
    out = subprocess.run([sys.executable, "scripts/bench_serve.py", "--ckpt_path", str(CHECKPOINT), "--repeats", "2",
                          "--length", "60", "--browser"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert re.search(r"Write: first byte after \d+ ms .*, then [\d,]+ bytes/s", out.stdout), out.stdout
    assert re.search(r"Look inside, 1,000 bytes: new text \d+ ms .*another unit \d+ ms", out.stdout), out.stdout
    assert re.search(r"In the page: first byte on screen \d+ ms after Generate .*, [\d,]+ bytes/s shown .*"
                     r"recoloured \d+ ms", out.stdout), out.stdout

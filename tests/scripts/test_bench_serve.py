"""scripts/bench_serve.py end to end, tiny sizes: its lines come out with numbers over HTTP always, and in
the page too where there is a headless Chromium (Playwright's driver, the system's chromium). Not a speed test."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO

CHECKPOINT = REPO / "tests" / "fixtures" / "lstm_1x16_v0.ckpt"


def bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "scripts/bench_serve.py", "--repeats", "2", "--length", "60", *args],
                          cwd=REPO, capture_output=True, text=True, timeout=300)


def assert_http_lines(stdout: str) -> None:
    assert re.search(r"Write: first byte after \d+ ms .*, then [\d,]+ bytes/s", stdout), stdout
    assert re.search(r"Look inside, 1,000 bytes: new text \d+ ms .*another unit \d+ ms .*typed at the end \d+ ms "
                     r".*saliency near the end \d+ ms", stdout), stdout


def test_bench_serve_measures_over_http_an_untrained_model_of_its_shape():
    out = bench("--shape", "1x16")  # no --ckpt_path: it writes the untrained LSTM itself
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.startswith("checkpoint: untrained 1x16 LSTM; 2 repeats"), out.stdout
    assert_http_lines(out.stdout)
    assert "In the page" not in out.stdout


def test_a_bad_shape_is_a_usage_error():
    out = bench("--shape", "2by512")
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.splitlines()[-1].startswith("bench_serve.py: error: argument --shape: give layers x hidden "
                                                  "units as two positive integers, e.g. 2x512"), out.stderr


@pytest.mark.skipif(shutil.which("chromium") is None and shutil.which("chromium-browser") is None,
                    reason="no Chromium here (apt-get install chromium)")
def test_bench_serve_measures_over_http_and_in_the_page():
    pytest.importorskip("playwright", reason="the serve extra's browser driver: pip install playwright")
    out = bench("--ckpt_path", str(CHECKPOINT), "--browser")
    assert out.returncode == 0, out.stderr[-3000:]
    assert_http_lines(out.stdout)
    assert re.search(r"In the page: first byte on screen \d+ ms after Generate .*, [\d,]+ bytes/s shown .*"
                     r"recoloured \d+ ms", out.stdout), out.stdout

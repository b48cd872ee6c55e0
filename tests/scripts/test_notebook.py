"""The walkthrough notebook runs top to bottom in a real Jupyter kernel (fewer training steps)."""

from __future__ import annotations

import re

import nbformat
import pytest
from nbclient import NotebookClient

from tests.conftest import REPO

NOTEBOOK = REPO / "scripts" / "walkthrough.ipynb"
MAX_LINES = 40  # of printed text per code cell: more is a wall a student scrolls past, not a lesson

# What a student cannot act on: terminal progress bars (carriage returns, cursor-up escapes),
# warnings raised inside libraries, and Lightning's banners and adverts.
NOISE = {
    "carriage-return progress bar": re.compile(r"\r"),
    "terminal escape sequence": re.compile(r"\x1b\["),
    "a library warning": re.compile(r"\w*Warning:|\bwarn\("),
    "ipywidgets' IProgress": re.compile(r"IProgress"),
    "Lightning's litlogger tip": re.compile(r"litlogger|💡"),
    "Lightning's device banner": re.compile(r"(GPU|TPU|HPU) available"),
    "Lightning's model summary": re.compile(r"Trainable params|Non-trainable params"),
}


def outputs_of(cell) -> tuple[str, set[str]]:
    """All text a code cell printed, and the MIME types of what it displayed."""
    text, kinds = [], set()
    for out in cell.get("outputs", []):
        if out["output_type"] == "stream":
            text.append(out["text"])
        elif out["output_type"] in ("display_data", "execute_result"):
            kinds.update(out["data"])
            text.append(out["data"].get("text/html", "") + out["data"].get("text/plain", ""))
    return "".join(text), kinds


def printed_text(cell) -> str:
    """What a code cell printed or returned as text (stdout, stderr, text/plain), but not HTML or images."""
    parts = []
    for out in cell.get("outputs", []):
        if out["output_type"] == "stream":
            parts.append(out["text"])
        elif out["output_type"] in ("display_data", "execute_result") and "text/html" not in out["data"]:
            parts.append(out["data"].get("text/plain", "") + "\n" if "image/png" not in out["data"] else "")
    return "".join(parts)


def reading_problems(nb) -> list[str]:
    """Why the executed notebook does not read like a lesson: one line per fault, empty when it does."""
    problems = []
    for number, cell in enumerate(c for c in nb.cells if c.cell_type == "code"):
        text = printed_text(cell)
        lines = len(text.splitlines())
        if lines > MAX_LINES:
            problems.append(f"code cell {number}: {lines} lines of output (at most {MAX_LINES})")
        for what, pattern in NOISE.items():
            if found := pattern.search(text):
                context = text[max(0, found.start() - 40): found.end() + 40]
                problems.append(f"code cell {number}: {what}: {context!r}")
    return problems


def stream(name: str, text: str):
    """A stream output as Jupyter saves it."""
    return nbformat.v4.new_output("stream", name=name, text=text)


def test_reading_checks_catch_progress_bars_and_library_noise():
    """The reading checks flag what the notebook printed before it was made quiet (outputs as Jupyter saved them)."""
    bar = [stream("stdout", f"\rEpoch 0:  {i}%|##   | {i}/100 [00:0{i % 10}<00:00]") for i in range(100)]
    cases = {
        "carriage-return progress bar": [stream("stdout", "\rSanity Checking: |   | 0/? [00:00<?, ?it/s]")],
        "terminal escape sequence": [stream("stdout", "\x1b[A")],
        "a library warning": [stream("stderr", ".../tqdm/auto.py:21: TqdmWarning: IProgress not found. Please update"
                                               " jupyter and ipywidgets.\n  from .autonotebook import tqdm\n")],
        "Lightning's litlogger tip": [stream("stderr", "💡 Tip: For seamless cloud logging and experiment tracking,"
                                                       " try installing [litlogger](https://pypi.org/project/litlogger/)")],
        "Lightning's device banner": [stream("stderr", "GPU available: False, used: False\n")],
        "lines of output": [stream("stdout", "".join(f"step {i}\n" for i in range(MAX_LINES + 1)))],
    }
    for what, outputs in cases.items():
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("fit()", outputs=outputs)])
        assert any(what in p for p in reading_problems(nb)), what
    long = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("fit()", outputs=bar)])
    assert len(reading_problems(long)) == 2  # the bar's carriage returns, and 100 lines of it
    lesson = [stream("stdout", "step  200/200  train bpc 2.87  val bpc 2.94  0:52\n"),
              stream("stdout", "He warns the king of Warwick's warning.\n")]  # the corpus' own "warn" is fine
    assert reading_problems(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("fit()", outputs=lesson)])) == []


def test_committed_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)


@pytest.mark.slow
def test_notebook_runs_top_to_bottom(tmp_path, shakespeare_path, monkeypatch):
    monkeypatch.setenv("CHARLM_SHAKESPEARE", str(shakespeare_path))
    monkeypatch.setenv("CHARLM_NOTEBOOK_STEPS", "200")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    # a failing cell raises CellExecutionError with its traceback; the kernel runs in tmp_path
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    cells = [outputs_of(c) for c in nb.cells if c.cell_type == "code"]
    text = "\n".join(t for t, _ in cells)

    assert "the analytic gradients are right" in text
    assert re.search(r"iter 3000, loss [\d.]+ \(([\d.]+) bits per byte\)", text)
    best = float(re.search(r"best val bpc ([\d.]+)", text).group(1))
    assert 2.0 < best < 4.0  # 200 steps: well below a uniform guess (6.02), far from converged
    assert any("image/png" in kinds for _, kinds in cells)  # the loss plot and the heatmap
    assert (tmp_path / "runs/notebook/version_0/bpc.png").is_file()
    for t in (0.2, 0.5, 0.8, 1.0, 1.5):
        assert f"===== temperature {t}: " in text
    assert any("text/html" in kinds and '<a class="v' in t for t, kinds in cells)  # the neuron page, inline
    assert (tmp_path / "visualize.html").read_text().startswith("<!doctype html>")
    shakespeare, code = (float(v) for v in re.findall(r": ([\d.]+) bits per byte over", text))
    assert shakespeare < code  # held-out Shakespeare compresses better than Python under a Shakespeare model

    assert re.search(r"[\d,]+ parameters", text)  # what Lightning's model summary taught, in one line
    assert re.search(r"step +200/200 .*val bpc [\d.]+", text)  # one summary line per validation
    assert reading_problems(nb) == []  # no progress-bar spam, library warnings or banners

"""The walkthrough notebook runs top to bottom in a real Jupyter kernel (fewer training steps)."""

from __future__ import annotations

import re

import nbformat
import pytest
from nbclient import NotebookClient

from tests.conftest import REPO

NOTEBOOK = REPO / "scripts" / "walkthrough.ipynb"


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
    assert any("text/html" in kinds and 'class="ch"' in t for t, kinds in cells)  # the neuron page, inline
    assert (tmp_path / "visualize.html").read_text().startswith("<!doctype html>")
    shakespeare, code = (float(v) for v in re.findall(r": ([\d.]+) bits per byte over", text))
    assert shakespeare < code  # held-out Shakespeare compresses better than Python under a Shakespeare model

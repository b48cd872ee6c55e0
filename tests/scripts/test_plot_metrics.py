"""Loss plots from a run's metrics.csv, without W&B."""

import importlib.util
import subprocess
import sys

import pytest

from tests.conftest import REPO

spec = importlib.util.spec_from_file_location("plot_metrics", REPO / "scripts" / "plot_metrics.py")
plot_metrics = sys.modules["plot_metrics"] = importlib.util.module_from_spec(spec)  # dataclasses look it up
spec.loader.exec_module(plot_metrics)

HEADER = "epoch,lr-AdamW/pg1,step,train/bpc,train/loss,val/bpc\n"


def write_run(folder, val):
    folder.mkdir(parents=True)
    rows = [f"0,,{s},{5 - s / 100:.3f},1.0,\n" for s in range(19, 400, 20)]  # train keeps falling
    rows += [f"0,,{s},,,{v}\n" for s, v in val]
    (folder / "metrics.csv").write_text(HEADER + "".join(rows))
    return folder


def test_marks_the_best_point_and_where_overfitting_begins(tmp_path):
    run = write_run(tmp_path / "runs" / "text" / "version_0", [(99, 3.0), (199, 2.5), (299, 2.6), (399, 2.8)])
    best, overfit = plot_metrics.best_and_overfitting(plot_metrics.read_curves(run / "metrics.csv"))
    assert best == (199, 2.5) and overfit == 199
    out = subprocess.run([sys.executable, str(REPO / "scripts" / "plot_metrics.py"), str(run)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    png = (run / "bpc.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_no_overfitting_while_validation_still_improves(tmp_path):
    run = write_run(tmp_path / "r", [(99, 3.0), (199, 2.5), (299, 2.4), (399, 2.4005)])
    best, overfit = plot_metrics.best_and_overfitting(plot_metrics.read_curves(run / "metrics.csv"))
    assert best == (299, 2.4) and overfit is None  # a 0.0005 wobble is not overfitting


def test_bad_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"give a run folder holding metrics\.csv"):
        plot_metrics.plot(str(tmp_path / "nope"))
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="no train/bpc or val/bpc"):
        plot_metrics.read_curves(tmp_path / "other.csv")

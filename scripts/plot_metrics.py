"""Plot train and validation bpc of a run from its local metrics.csv (no W&B needed).

    python scripts/plot_metrics.py runs/shakespeare/version_0            # writes .../bpc.png
    python scripts/plot_metrics.py runs/shakespeare/version_0/metrics.csv --out curves.png

Marks the best validation point (what the best checkpoint holds) and, when validation bpc rises
again afterwards while training bpc keeps falling, shades where overfitting begins.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from jsonargparse import CLI

from charlm.cli.output_path import check_output_path, write_output


@dataclass
class Curves:
    """The bits per character of a run's metrics.csv."""

    train: list[tuple[int, float]]  # (step, bpc)
    val: list[tuple[int, float]]


def read_curves(metrics_csv: Path) -> Curves:
    """Train and validation bpc by step from Lightning's CSV log."""
    train, val = [], []
    with open(metrics_csv, newline="") as f:
        for row in csv.DictReader(f):
            step = int(float(row["step"])) if row.get("step") else None
            if step is None:
                continue
            if row.get("train/bpc"):
                train.append((step, float(row["train/bpc"])))
            if row.get("val/bpc"):
                val.append((step, float(row["val/bpc"])))
    if not val and not train:
        raise ValueError(f"{metrics_csv} has no train/bpc or val/bpc values: is it a charlm run's metrics.csv?")
    return Curves(train, val)


def best_and_overfitting(curves: Curves, tolerance: float = 0.002) -> tuple[tuple[int, float] | None, int | None]:
    """The best validation point, and the step after which validation got worse for good: every
    later point is worse and the last by more than ``tolerance`` bpc (None: no overfitting seen)."""
    if not curves.val:
        return None, None
    best = min(curves.val, key=lambda p: p[1])
    later = [v for s, v in curves.val if s > best[0]]
    overfitting = bool(later) and all(v > best[1] for v in later) and later[-1] - best[1] > tolerance
    return best, best[0] if overfitting else None


def plot(run: str, out: str | None = None, smooth: int = 5, overwrite: bool = False) -> Path:
    """Render train/val bpc curves to a PNG.

    Args:
        run: a run folder (runs/shakespeare/version_0) or its metrics.csv.
        out: the PNG to write (default: bpc.png beside metrics.csv).
        smooth: moving-average window over the logged train points (1 = raw).
        overwrite: replace --out if it exists (bpc.png, the default, is always redrawn; metrics.csv never).
    """
    from matplotlib.figure import Figure  # not pyplot: no global backend to set or disturb (notebooks)

    path = Path(run)
    metrics = path / "metrics.csv" if path.is_dir() else path
    if not metrics.is_file():
        raise FileNotFoundError(f"{metrics} does not exist: give a run folder holding metrics.csv, or the file itself.")
    # the default, bpc.png beside metrics.csv, is this script's own file: redrawn each time
    target = check_output_path(out or str(metrics.with_name("bpc.png")), "--out", "the plot", "bpc.png",
                               inputs={"run": str(metrics)}, overwrite=overwrite or out is None)
    curves = read_curves(metrics)
    best, overfit = best_and_overfitting(curves)

    fig = Figure(figsize=(9, 5), dpi=120)
    ax = fig.subplots()
    if curves.train:
        steps, values = zip(*curves.train, strict=True)
        k = max(1, smooth)
        windows = [values[max(0, i - k + 1) : i + 1] for i in range(len(values))]  # the last k values at each step
        smoothed = [sum(window) / len(window) for window in windows]
        ax.plot(steps, values, color="tab:blue", alpha=0.25, linewidth=1)
        ax.plot(steps, smoothed, color="tab:blue", label=f"train bpc (moving average of {k})")
    if curves.val:
        steps, values = zip(*curves.val, strict=True)
        ax.plot(steps, values, "o-", color="tab:orange", label="validation bpc")
    if best is not None:
        ax.plot([best[0]], [best[1]], "*", color="tab:red", markersize=16,
                label=f"best: {best[1]:.4f} at step {best[0]}")
    if overfit is not None:
        ax.axvspan(overfit, max(s for s, _ in curves.val), color="tab:red", alpha=0.08, label="overfitting")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("bits per byte")
    ax.set_title(f"{metrics.parent.parent.name}/{metrics.parent.name}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png")
    target = write_output(target, png.getvalue(), "--out")  # whole or not at all
    print(f"wrote {target}")
    return target


if __name__ == "__main__":
    CLI(plot, as_positional=True)

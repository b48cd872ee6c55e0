"""Small fits of the real CLI for the device-parametrized tests: on the CPU here, on a GPU where there is one.

W&B stays off (the device machine may lack wandb): the run logs to CSV only, so these need the CLI's
own packages (jsonargparse) and none of the optional ones.
"""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import pytest
import torch

from tests.cli_runs import run_in, small_run

CSV_ONLY = json.dumps([{"class_path": "charlm.train.csv_logger.ResumableCSVLogger", "init_args": {"save_dir": ""}}])


def accelerator(device: str) -> list[str]:
    return ["--trainer.accelerator", "gpu" if device == "cuda" else "cpu"]


def device_run(corpus: Path, device: str, *extra: str, cmd: str = "fit") -> list[str]:
    """:func:`tests.cli_runs.small_run` on ``device`` ("cpu" or "cuda"), logging to CSV only."""
    return small_run(corpus, *accelerator(device), "--trainer.devices", "1", f"--trainer.logger={CSV_ONLY}",
                     *extra, cmd=cmd)


def fit_in(folder: Path, args: list[str]):
    """Run the CLI in-process in ``folder``; returns the LightningCLI (tests.cli_runs.run_in, without wandb)."""
    pytest.importorskip("jsonargparse", reason="the charlm CLI needs jsonargparse: carry its wheel (README)")
    return run_in(folder, args)


class HostToDeviceBytes(L.Callback):
    """Write to ``path`` (JSON) the host-to-device copies CUDA made while training steps ``start`` to
    ``stop`` ran: {"copies": n, "bytes": total}, from the profiler's trace (none on the CPU)."""

    def __init__(self, path: str, start: int = 5, stop: int = 10) -> None:
        self.path, self.start, self.stop = Path(path), start, stop
        self._profiler: torch.profiler.profile | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.start and self._profiler is None:
            activities = [torch.profiler.ProfilerActivity.CPU]
            if torch.cuda.is_available():
                activities.append(torch.profiler.ProfilerActivity.CUDA)
            self._profiler = torch.profiler.profile(activities=activities)
            self._profiler.__enter__()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.stop and self._profiler is not None:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self._profiler.__exit__(None, None, None)
            trace = self.path.with_suffix(".trace.json")
            self._profiler.export_chrome_trace(str(trace))
            events = json.loads(trace.read_text()).get("traceEvents", [])
            # kineto names them "Memcpy HtoD (Pageable -> Device)" / "(Pinned -> Device)", bytes in args
            copies = [e for e in events if "HtoD" in str(e.get("name", "")) and e.get("ph") == "X"]
            total = sum(int(e.get("args", {}).get("bytes", 0)) for e in copies)
            self.path.write_text(json.dumps({"copies": len(copies), "bytes": total}))


class RecordStrategy(L.Callback):
    """Write to ``path`` (JSON) the strategy, the model's wrapper and the world size as training starts."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def on_train_start(self, trainer, pl_module) -> None:
        import torch.distributed as dist

        self.path.write_text(json.dumps({
            "strategy": type(trainer.strategy).__name__, "wrapper": type(trainer.strategy.model).__name__,
            "world_size": trainer.world_size, "backend": dist.get_backend() if dist.is_initialized() else None,
        }))


class RecordClipNorms(L.Callback):
    """Write to ``path`` (JSON) the gradient norm of the first ``count`` optimizer steps as clipping leaves it
    (right after CharLM.configure_gradient_clipping: under 16-mixed unscaled by Lightning, or with a fused AdamW
    by CharLM itself; clipped, which the default clip of 1.0 leaves alone at these norms), and the loss scale.
    A hook before it (on_before_optimizer_step) would see a fused AdamW's gradients still scaled."""

    def __init__(self, path: str, count: int = 3) -> None:
        self.path, self.count, self.norms = Path(path), count, []

    def on_train_start(self, trainer, pl_module) -> None:
        clip = pl_module.configure_gradient_clipping

        def recording(optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
            clip(optimizer, gradient_clip_val, gradient_clip_algorithm)
            if len(self.norms) < self.count:
                grads = [p.grad for p in pl_module.parameters() if p.grad is not None]
                self.norms.append(float(torch.linalg.vector_norm(torch.stack([g.float().norm() for g in grads]))))
                if len(self.norms) == self.count:
                    scaler = getattr(trainer.precision_plugin, "scaler", None)
                    scale = float(scaler.get_scale()) if scaler is not None else None
                    self.path.write_text(json.dumps({"norms": self.norms, "scale": scale}))

        pl_module.configure_gradient_clipping = recording  # Lightning looks the hook up on the instance


class RecordPrecision(L.Callback):
    """Write to ``path`` (JSON) what the first training batch ran in: the dtype of the fused RNN's output
    ("rnn"), the dtypes of the hidden state carried to the next batch ("carried"), and the float32 math of
    the run ("fp32_math", charlm.train.precision.fp32_math)."""

    def __init__(self, path: str) -> None:
        self.path, self.seen = Path(path), {}
        self._hook = None

    def on_train_start(self, trainer, pl_module) -> None:
        def record(module, args, out) -> None:  # returns None: the output goes on unchanged
            self.seen.setdefault("rnn", str(out[0].dtype))

        self._hook = pl_module.model.rnn.register_forward_hook(record)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        from charlm.model import hidden_tensors
        from charlm.train.precision import fp32_math

        if "carried" not in self.seen:
            self._hook.remove()
            self.seen["carried"] = sorted({str(h.dtype) for h in hidden_tensors(pl_module._train_hidden)})
            self.seen["fp32_math"] = fp32_math()
            self.path.write_text(json.dumps(self.seen))

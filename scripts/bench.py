"""Training throughput: charlm's real ``fit`` path against a minimal raw PyTorch loop, side by side.

    python scripts/bench.py                                   # rnn, gru, lstm on this machine's device
    python scripts/bench.py --cells [lstm] --batch_size 128 --seq_len 256 --precision bf16-mixed
    python -c "import scripts.bench as b; b.precisions()"     # every precision choice, tokens/s and val bpc

``precisions`` (scripts/gpu_check.py's precision part) runs each choice a user has on a GPU (32-true with
and without TF32, 16-mixed, bf16-mixed, bf16-true) both ways for the same steps, then validates charlm's
model, so that one table gives the speed and the val bpc of each, against the fastest raw loop.

Both train the same CharRNN on the same batches (B contiguous streams x T steps of the real
Tiny Shakespeare, or random bytes without it) with AdamW and gradient clipping, carrying the
hidden state. The raw loop keeps the corpus on the device, slices batches there and never
synchronises with the host inside the loop; charlm runs ``Trainer.fit`` with CharLM and a
data module. Tokens per second are timed over the same steps after a warm-up. The two run in
turn, ``repeats`` times; the table gives the median tokens/s of each, the median of the ratios
charlm / raw of each back-to-back pair (1.0 = no overhead), and the spread (min-max) of those
ratios: a neighbour that slows one run moves one ratio, not the median.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F

from charlm.callbacks.fit_guard import FitGuard
from charlm.model import CharRNN, CharRNNConfig, detach_hidden
from charlm.train.lightning_module import CharLM
from charlm.train.precision import fp32_math, use_tf32
from datamodules import TextDataModule

REPO = Path(__file__).resolve().parents[1]
SHAKESPEARE = Path(os.environ.get("CHARLM_SHAKESPEARE",  # as the tests read it, else beside the repository
                                  REPO.parent / "shared" / "corpora" / "tinyshakespeare" / "input.txt"))


def prepared(corpus: str | None, tmp: str, batch_size: int, seq_len: int) -> TextDataModule:
    """The data module a benchmark trains on, set up: ``corpus``, else Tiny Shakespeare, else 2 MB of random
    printable bytes (a machine without either); its cache in ``tmp``."""
    path = Path(corpus) if corpus else SHAKESPEARE
    if not path.is_file():
        path = Path(tmp) / "random.txt"
        path.write_bytes(bytes(torch.randint(32, 127, (2_000_000,), dtype=torch.uint8).tolist()))
    data = TextDataModule(path=str(path), batch_size=batch_size, seq_len=seq_len, cache_dir=f"{tmp}/cache")
    data.setup("fit")
    return data


def sync_device(device: torch.device) -> None:
    """Wait for ``device``'s queued work (CUDA runs asynchronously): timings then end where the work does."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _autocast(device: torch.device, precision: str):
    dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(precision)  # bf16-true: no autocast
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def raw_loop(model: CharRNN, tokens: torch.Tensor, batch: int, seq_len: int, steps: int, warmup: int,
             device: torch.device, precision: str, lr: float, clip: float, tf32: bool | None = None,
             fused: bool | None = None) -> float:
    """Tokens/s of a hand-written loop: data on the device, no host sync inside the loop.

    ``tf32``: as CharLM's (CUDA only; None leaves torch's settings). ``fused``: fused AdamW; None chooses as
    CharLM does (fused on CUDA; under 16-mixed's scaler the loop unscales before clipping, as CharLM does)."""
    if device.type == "cpu" and precision == "16-mixed":
        precision = "bf16-mixed"  # as Lightning does: the CPU has no fp16 autocast for these
    restore = use_tf32(tf32) if tf32 is not None and device.type == "cuda" else None
    try:
        return _raw_loop(model, tokens, batch, seq_len, steps, warmup, device, precision, lr, clip, fused)
    finally:
        if restore is not None:
            restore()


def _raw_loop(model: CharRNN, tokens: torch.Tensor, batch: int, seq_len: int, steps: int, warmup: int,
              device: torch.device, precision: str, lr: float, clip: float, fused: bool | None) -> float:
    # bf16-true: bf16 weights throughout, as Lightning's precision plugin converts them
    model = model.to(device, dtype=torch.bfloat16 if precision == "bf16-true" else None).train()
    if fused is None:
        fused = device.type == "cuda"
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, fused=fused or None, foreach=None if fused else True)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "16-mixed")
    length = len(tokens) // batch
    streams = tokens[: batch * length].view(batch, length).to(device)  # (B, L) resident
    hidden, start = None, 0.0
    for step in range(steps):
        if step == warmup:
            sync_device(device)
            start = time.perf_counter()
        k = step % ((length - 1) // seq_len)
        window = streams[:, k * seq_len : k * seq_len + seq_len + 1].long()
        with _autocast(device, precision):
            logits, hidden = model(window[:, :-1], None if k == 0 else hidden)
            loss = F.cross_entropy(logits.flatten(0, 1).float(), window[:, 1:].flatten())
        hidden = detach_hidden(hidden)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        scaler.step(optimizer)
        scaler.update()
    sync_device(device)
    return batch * seq_len * (steps - warmup) / (time.perf_counter() - start)


class FitTimer(L.Callback):
    """The wall time of a fit from optimizer step ``warmup`` to the end (``end - start``, seconds), and the
    float32 math it ran with."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.start, self.end = warmup, 0.0, 0.0
        self.fp32_math: dict[str, str] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.warmup:
            sync_device(pl_module.device)
            self.start = time.perf_counter()
            self.fp32_math = fp32_math()

    def on_train_end(self, trainer, pl_module) -> None:
        sync_device(pl_module.device)
        self.end = time.perf_counter()


def charlm_fit(cell: str, layers: int, hidden: int, corpus: Path, batch: int, seq_len: int, steps: int,
               warmup: int, accelerator: str, precision: str, lr: float, clip: float, cache: Path,
               tf32: bool | None = None, validate: bool = False) -> tuple[float, float | None, dict[str, str]]:
    """Tokens/s of ``Trainer.fit`` on CharLM, as the CLI runs it (its FitGuard too; no logger, no checkpoints); with
    ``validate``, the val bpc of the model it trained, in the same precision (else None); and the float32
    math it ran with (charlm.train.precision.fp32_math)."""
    data = TextDataModule(path=str(corpus), batch_size=batch, seq_len=seq_len, cache_dir=str(cache))
    model = CharLM(data.vocab_symbols, cell=cell, num_layers=layers, hidden_size=hidden, lr=lr, grad_clip=clip,
                   warmup_steps=0, tf32=tf32)
    timer = FitTimer(warmup)
    quiet = {"logger": False, "enable_progress_bar": False, "enable_model_summary": False}
    trainer = L.Trainer(accelerator=accelerator, devices=1, precision=precision, max_steps=steps,
                        enable_checkpointing=False, limit_val_batches=0, callbacks=[timer, FitGuard()], **quiet)
    trainer.fit(model, datamodule=data)
    bpc = None
    if validate:  # the whole validation split, with the same precision
        evaluator = L.Trainer(accelerator=accelerator, devices=1, precision=precision, **quiet)
        bpc = float(evaluator.validate(model, datamodule=data, verbose=False)[0]["val/bpc"])
    return batch * seq_len * (steps - warmup) / (timer.end - timer.start), bpc, timer.fp32_math


def main(
    cells: list[str] | None = None,
    num_layers: int = 2,
    hidden_size: int = 256,
    batch_size: int = 32,
    seq_len: int = 64,
    steps: int = 60,
    warmup: int = 10,
    precision: str = "32-true",
    accelerator: str = "auto",
    corpus: str | None = None,
    repeats: int = 5,
    json_out: str | None = None,
) -> list[dict]:
    """Measure training tokens/s of charlm's fit path and of a raw loop, and print the ratio.

    Args:
        cells: which cells to measure (default: rnn, gru, lstm).
        num_layers: stacked layers.
        hidden_size: units per layer.
        batch_size: parallel streams (B).
        seq_len: steps per batch (T).
        steps: optimizer steps per measurement, warm-up included.
        warmup: steps excluded from the timing.
        precision: 32-true, bf16-mixed, 16-mixed or bf16-true (Lightning's names), for both.
        accelerator: cpu, gpu or auto.
        corpus: a text file to train on (default: Tiny Shakespeare if present, else random bytes).
        repeats: measurements of each, in turn (raw, charlm, raw, ...); medians are compared.
        json_out: also write the rows (each with every repeat's numbers) to this JSON file.
    """
    import tempfile

    cells = cells or ["rnn", "gru", "lstm"]
    device = torch.device("cuda" if accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available() else "cpu")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = prepared(corpus, tmp, batch_size, seq_len)
        tokens = data.splits["train"]
        for cell in cells:
            raws, ours = [], []
            for _ in range(repeats):  # interleaved: a slow spell of the machine hits both, or one pair
                torch.manual_seed(0)
                model = CharRNN(CharRNNConfig(vocab_size=len(data.vocab), cell=cell, num_layers=num_layers,
                                             hidden_size=hidden_size))
                raws.append(raw_loop(model, tokens, batch_size, seq_len, steps, warmup, device, precision, 2e-3, 1.0))
                torch.manual_seed(0)
                ours.append(charlm_fit(cell, num_layers, hidden_size, Path(data.path), batch_size, seq_len, steps,
                                       warmup, device.type, precision, 2e-3, 1.0, Path(tmp) / "cache")[0])
            ratios = [ours_i / raw_i for ours_i, raw_i in zip(ours, raws, strict=True)]
            rows.append({"cell": cell, "raw": statistics.median(raws), "charlm": statistics.median(ours),
                         "ratio": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios),
                         "raws": raws, "charlms": ours})
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"{name}, {num_layers}x{hidden_size}, B={batch_size}, T={seq_len}, {precision}, "
          f"{steps - warmup} timed steps, median of {repeats} interleaved repeats")
    print("| cell | raw loop tok/s | charlm fit tok/s | charlm / raw | spread |\n| --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['cell']} | {r['raw']:,.0f} | {r['charlm']:,.0f} | {r['ratio']:.2f}x "
              f"| {r['ratio_min']:.2f}-{r['ratio_max']:.2f} |")
    assert all(math.isfinite(r["ratio"]) for r in rows)
    if json_out:
        import json

        head = {"device": name, "num_layers": num_layers, "hidden_size": hidden_size, "batch_size": batch_size,
                "seq_len": seq_len, "precision": precision, "timed_steps": steps - warmup, "repeats": repeats}
        Path(json_out).write_text(json.dumps({**head, "rows": rows}, indent=1))
    return rows


# A user's precision choices on a GPU: label -> (--trainer.precision, --model.tf32). The reference for the
# val bpc is strict float32; "32-true" alone is torch's own settings (torch 2.13: TF32 in cuDNN's RNNs only).
CHOICES = {
    "32-true ieee": ("32-true", False),
    "32-true": ("32-true", None),
    "32-true tf32": ("32-true", True),
    "16-mixed": ("16-mixed", None),
    "bf16-mixed": ("bf16-mixed", None),
    "bf16-true": ("bf16-true", None),
}
REFERENCE = "32-true ieee"
# raw loops charlm does not run, beside the choices' own: 16-mixed with a plain (foreach) AdamW, whose
# scaler.step reads found_inf on the host every step (what charlm did before it fused AdamW under 16-mixed)
RAW_ONLY = {"16-mixed foreach": ("16-mixed", None, False)}


def precisions(
    cell: str = "lstm",
    num_layers: int = 3,
    hidden_size: int = 512,
    batch_size: int = 128,
    seq_len: int = 256,
    steps: int = 120,
    warmup: int = 20,
    choices: list[str] | None = None,
    accelerator: str = "auto",
    corpus: str | None = None,
    repeats: int = 1,
    json_out: str | None = None,
) -> dict:
    """Each precision choice trained the same steps from the same weights and batches, charlm's fit and a raw
    loop in turn: tokens/s of both, and the val bpc of charlm's model after those steps.

    Args:
        cell: the recurrent cell.
        num_layers: stacked layers.
        hidden_size: units per layer.
        batch_size: parallel streams (B).
        seq_len: steps per batch (T).
        steps: optimizer steps of each run, warm-up included; the val bpc is taken after them.
        warmup: steps excluded from the timing.
        choices: labels of CHOICES to run (default: all); RAW_ONLY loops run with every selection.
        accelerator: cpu, gpu or auto.
        corpus: a text file (default: Tiny Shakespeare if present, else random bytes).
        repeats: timed runs of each (raw, charlm, raw, ...); the val bpc is the first charlm run's.
        json_out: also write the result as JSON to this file.
    """
    import tempfile

    labels = choices or list(CHOICES)
    unknown = sorted(set(labels) - set(CHOICES))
    if unknown:
        raise ValueError(f"choices: unknown {unknown}; choose from {list(CHOICES)}")
    device = torch.device("cuda" if accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    rows, raw_only = [], []
    result = {"device": name, "torch": torch.__version__, "cell": cell, "num_layers": num_layers,
              "hidden_size": hidden_size, "batch_size": batch_size, "seq_len": seq_len, "steps": steps,
              "timed_steps": steps - warmup, "repeats": repeats, "reference": REFERENCE, "rows": rows,
              "raw_only": raw_only}

    def write(complete: bool) -> None:
        if json_out:
            import json

            Path(json_out).write_text(json.dumps({**result, "complete": complete}, indent=1))

    with tempfile.TemporaryDirectory() as tmp:
        data = prepared(corpus, tmp, batch_size, seq_len)
        tokens = data.splits["train"]

        def fresh() -> CharRNN:  # the same initial weights for every run (CharLM draws them the same way)
            torch.manual_seed(0)
            return CharRNN(CharRNNConfig(vocab_size=len(data.vocab), cell=cell, num_layers=num_layers,
                                         hidden_size=hidden_size))

        def raw(precision: str, tf32: bool | None, fused: bool | None = None) -> float:
            return raw_loop(fresh(), tokens, batch_size, seq_len, steps, warmup, device, precision, 2e-3, 1.0,
                            tf32=tf32, fused=fused)

        raw_loop(fresh(), tokens, batch_size, seq_len, warmup + 2, warmup, device, "32-true", 2e-3, 1.0)  # warm-up
        for label, (precision, tf32, fused) in RAW_ONLY.items():
            raws = [raw(precision, tf32, fused) for _ in range(repeats)]
            raw_only.append({"label": label, "precision": precision, "tf32": tf32, "fused": fused,
                             "raw": statistics.median(raws), "raws": raws})
        for label in labels:
            precision, tf32 = CHOICES[label]
            raws, ours, bpc, math = [], [], None, {}
            for repeat in range(repeats):
                raws.append(raw(precision, tf32))
                torch.manual_seed(0)
                speed, seen_bpc, seen_math = charlm_fit(cell, num_layers, hidden_size, Path(data.path), batch_size,
                                                        seq_len, steps, warmup, device.type, precision, 2e-3, 1.0,
                                                        Path(tmp) / "cache", tf32=tf32, validate=repeat == 0)
                ours.append(speed)
                bpc, math = (seen_bpc, seen_math) if repeat == 0 else (bpc, math)
            rows.append({"label": label, "precision": precision, "tf32": tf32, "raw": statistics.median(raws),
                         "charlm": statistics.median(ours), "ratio": statistics.median(ours) / statistics.median(raws),
                         "val_bpc": bpc, "fp32_math": math, "raws": raws, "charlms": ours})
            write(complete=False)  # what a caller that runs out of time still finds
    print(f"{name}, torch {torch.__version__}, {cell} {num_layers}x{hidden_size}, B={batch_size}, T={seq_len}, "
          f"{steps} steps ({steps - warmup} timed), val bpc after them")
    print("| choice | raw loop tok/s | charlm fit tok/s | charlm / raw | val bpc | float32 math (rnn, matmul) |\n"
          "| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        math = f"{r['fp32_math'].get('rnn', '?')}, {r['fp32_math'].get('matmul', '?')}"
        print(f"| {r['label']} | {r['raw']:,.0f} | {r['charlm']:,.0f} | {r['ratio']:.2f}x | {r['val_bpc']:.4f} "
              f"| {math} |")
    for r in raw_only:
        print(f"| {r['label']} (raw only) | {r['raw']:,.0f} | | | | |")
    write(complete=True)
    return result


if __name__ == "__main__":
    from jsonargparse import CLI  # here: importing this file (scripts/gpu_check.py does) needs no jsonargparse

    CLI(main, as_positional=False)

"""Training throughput: charlm's real ``fit`` path against a minimal raw PyTorch loop, side by side.

    python scripts/bench.py                                   # rnn, gru, lstm on this machine's device
    python scripts/bench.py --cells [lstm] --batch_size 128 --seq_len 256 --precision bf16-mixed

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
import statistics
import time
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F

from charlm.model import CharRNN, CharRNNConfig, detach_hidden
from charlm.train.lightning_module import CharLM
from datamodules import TextDataModule

REPO = Path(__file__).resolve().parents[1]
SHAKESPEARE = REPO.parent / "shared" / "corpora" / "tinyshakespeare" / "input.txt"


def sync_device(device: torch.device) -> None:
    """Wait for ``device``'s queued work (CUDA runs asynchronously): timings then end where the work does."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _autocast(device: torch.device, precision: str):
    dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(precision)  # bf16-true: no autocast
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def raw_loop(model: CharRNN, tokens: torch.Tensor, batch: int, seq_len: int, steps: int, warmup: int,
             device: torch.device, precision: str, lr: float, clip: float) -> float:
    """Tokens/s of a hand-written loop: data on the device, no host sync inside the loop."""
    # bf16-true: bf16 weights throughout, as Lightning's precision plugin converts them
    model = model.to(device, dtype=torch.bfloat16 if precision == "bf16-true" else None).train()
    fused = device.type == "cuda" and precision != "16-mixed"
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
    """The wall time of a fit from optimizer step ``warmup`` to the end (``end - start``, seconds)."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.start, self.end = warmup, 0.0, 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.warmup:
            sync_device(pl_module.device)
            self.start = time.perf_counter()

    def on_train_end(self, trainer, pl_module) -> None:
        sync_device(pl_module.device)
        self.end = time.perf_counter()


def charlm_fit(cell: str, layers: int, hidden: int, corpus: Path, batch: int, seq_len: int, steps: int,
               warmup: int, accelerator: str, precision: str, lr: float, clip: float, cache: Path) -> float:
    """Tokens/s of ``Trainer.fit`` on CharLM, as the CLI runs it (no logger, no checkpoints)."""
    data = TextDataModule(path=str(corpus), batch_size=batch, seq_len=seq_len, cache_dir=str(cache))
    model = CharLM(data.vocab_symbols, cell=cell, num_layers=layers, hidden_size=hidden, lr=lr, grad_clip=clip,
                   warmup_steps=0)
    timer = FitTimer(warmup)
    trainer = L.Trainer(accelerator=accelerator, devices=1, precision=precision, max_steps=steps, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0, callbacks=[timer])
    trainer.fit(model, datamodule=data)
    return batch * seq_len * (steps - warmup) / (timer.end - timer.start)


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
        path = Path(corpus) if corpus else SHAKESPEARE
        if not path.is_file():
            path = Path(tmp) / "random.txt"
            path.write_bytes(bytes(torch.randint(32, 127, (2_000_000,), dtype=torch.uint8).tolist()))
        data = TextDataModule(path=str(path), batch_size=batch_size, seq_len=seq_len, cache_dir=f"{tmp}/cache")
        data.setup("fit")
        tokens = data.splits["train"]
        for cell in cells:
            raws, ours = [], []
            for _ in range(repeats):  # interleaved: a slow spell of the machine hits both, or one pair
                torch.manual_seed(0)
                model = CharRNN(CharRNNConfig(vocab_size=len(data.vocab), cell=cell, num_layers=num_layers,
                                             hidden_size=hidden_size))
                raws.append(raw_loop(model, tokens, batch_size, seq_len, steps, warmup, device, precision, 2e-3, 1.0))
                torch.manual_seed(0)
                ours.append(charlm_fit(cell, num_layers, hidden_size, path, batch_size, seq_len, steps, warmup,
                                       device.type, precision, 2e-3, 1.0, Path(tmp) / "cache"))
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


if __name__ == "__main__":
    from jsonargparse import CLI  # here: importing this file (scripts/gpu_check.py does) needs no jsonargparse

    CLI(main, as_positional=False)

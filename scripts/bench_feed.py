"""Training batches kept on the device against batches fed from the memory-mapped file (DeviceFeed).

    python scripts/bench_feed.py                       # the CPU here, or the GPU where there is one
    python scripts/bench_feed.py --device cuda --batch_size 128 --seq_len 256 --size_mb 1024

Two measurements on the same memory-mapped token file (random bytes of ``--size_mb``, or
``--corpus``), each taken ``--repeats`` times, the two paths alternating; the table gives the median
and the spread (min-max) of each:

- loader: batches/s of the loader alone, an epoch's first ``--batches`` batches (on a GPU, until
  the last batch is on the device). This is the feed's whole cost per batch, thread included.
- fit: tokens/s of ``Trainer.fit`` on CharLM (2 x 256 LSTM unless told), with
  ``--data.device_resident_fraction`` 0.25 (resident) and 0 (fed). Equal numbers mean the feed
  keeps up with the step: the model never waits for a batch.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import lightning as L
import torch

from bench import FitTimer, sync_device  # scripts/ is on the path of a script run from it
from charlm.train.lightning_module import CharLM
from datamodules import TextDataModule
from datamodules.batches.device_feed import DeviceFeed
from datamodules.batches.streams import TrainStreams


def loader_rate(loader, batches: int, device: torch.device) -> float:
    """Batches/s over the first ``batches`` batches of an epoch of ``loader``."""
    sync_device(device)
    start = time.perf_counter()
    for k, _batch in enumerate(loader):
        if k + 1 == batches:
            break
    sync_device(device)
    return batches / (time.perf_counter() - start)


def fit_rate(corpus: Path, cache: Path, fraction: float, args: argparse.Namespace) -> float:
    """Tokens/s of ``Trainer.fit`` with the given ``device_resident_fraction``."""
    data = TextDataModule(path=str(corpus), batch_size=args.batch_size, seq_len=args.seq_len, cache_dir=str(cache),
                          device_resident_fraction=fraction)
    model = CharLM(data.vocab_symbols, cell="lstm", num_layers=args.num_layers, hidden_size=args.hidden_size,
                   warmup_steps=0)
    timer = FitTimer(args.warmup)
    trainer = L.Trainer(accelerator="gpu" if args.device == "cuda" else "cpu", devices=1, max_steps=args.steps,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, callbacks=[timer])
    trainer.fit(model, datamodule=data)
    kind = type(trainer.train_dataloader).__name__
    assert kind == ("DeviceFeed" if fraction == 0 else "TrainStreams"), kind
    return args.batch_size * args.seq_len * (args.steps - args.warmup) / (timer.end - timer.start)


def summary(values: list[float]) -> str:
    """Median (min-max)."""
    return f"{statistics.median(values):,.0f} ({min(values):,.0f}-{max(values):,.0f})"


def main() -> None:
    """Measure both paths, alternating, and print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--corpus", type=Path, help="a text file (default: random bytes of --size_mb)")
    parser.add_argument("--size_mb", type=int, default=64)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--seq_len", type=int, default=64)
    parser.add_argument("--batches", type=int, default=500, help="batches per loader measurement")
    parser.add_argument("--num_layers", type=int, default=2)
    parser.add_argument("--hidden_size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=60, help="optimizer steps per fit, warm-up included")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip_fit", action="store_true", help="measure the loaders only")
    args = parser.parse_args()
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        corpus = args.corpus
        if corpus is None:
            corpus = Path(tmp) / "random.txt"
            generator = torch.Generator().manual_seed(0)
            corpus.write_bytes(torch.randint(32, 127, (args.size_mb * 2**20,), dtype=torch.uint8,
                                             generator=generator).numpy().tobytes())
        cache = Path(tmp) / "cache"
        data = TextDataModule(path=str(corpus), batch_size=args.batch_size, seq_len=args.seq_len, cache_dir=str(cache))
        data.setup("fit")
        streams = TrainStreams(data.splits["train"], args.batch_size, args.seq_len)  # memory-mapped
        resident = streams.to(device)
        feed = DeviceFeed(streams, device)
        batches = min(args.batches, len(streams))
        loaders: dict[str, list[float]] = {"resident": [], "fed": []}
        fits: dict[str, list[float]] = {"resident": [], "fed": []}
        for _ in range(args.repeats):
            loaders["resident"].append(loader_rate(resident, batches, device))
            loaders["fed"].append(loader_rate(feed, batches, device))
            if not args.skip_fit:
                fits["resident"].append(fit_rate(corpus, cache, 0.25, args))
                fits["fed"].append(fit_rate(corpus, cache, 0.0, args))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"{name}, {corpus.stat().st_size if args.corpus else args.size_mb * 2**20:,}-byte corpus, "
          f"B={args.batch_size}, T={args.seq_len}; median (min-max) of {args.repeats} alternating repeats")
    print("| path | loader batches/s | fit tok/s |\n| --- | --- | --- |")
    for path in ("resident", "fed"):
        fit = summary(fits[path]) if fits[path] else "not run"
        print(f"| {path} | {summary(loaders[path])} | {fit} |")


if __name__ == "__main__":
    main()

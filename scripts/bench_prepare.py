"""Corpus preparation speed and memory, each measured in a fresh child process.

    python scripts/bench_prepare.py                  # 100 MB enwik8 stand-in (+ Linux if present)
    python scripts/bench_prepare.py --size 1000000   # a tiny run, as the tests do

1. enwik8: a stand-in zip of the real format (member ``enwik8``, ``--size`` bytes of text built
   from Tiny Shakespeare lines plus XML-ish markup and UTF-8), or the real ``enwik8.zip`` with
   ``--enwik8``, prepared by Enwik8DataModule: wall time and peak RSS.
2. Linux: Debian's linux-source-6.1 tarball (``--linux``) to a prepared corpus, if it exists.
3. Training memory: peak RSS of setup plus 200 training batches on a small corpus and on the big
   one: memory-mapped tokens keep the two close.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
from jsonargparse import CLI

REPO = Path(__file__).resolve().parents[1]
# the real Tiny Shakespeare: $CHARLM_SHAKESPEARE, as the tests read it, else beside the repository
SHAKESPEARE = Path(os.environ.get("CHARLM_SHAKESPEARE", REPO.parent / "shared/corpora/tinyshakespeare/input.txt"))

_CHILD = r"""
import json, resource, sys, time
from pathlib import Path
sys.path.insert(0, {repo!r})
import datamodules
kind, path, cache, batches = sys.argv[1:5]
module_class = getattr(datamodules, kind)  # imports Lightning (~2 s): not preparation time
start = time.perf_counter()
dm = module_class(path=path, cache_dir=cache, **json.loads(sys.argv[5]))
dm.prepare_data()
prepared = time.perf_counter() - start
if int(batches):
    dm.setup("fit")
    for i, (x, y) in enumerate(dm.train_dataloader()):
        if i + 1 == int(batches):
            break
print(json.dumps({{"seconds": prepared, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                   "tokens": len(dm.splits["train"]) if dm.splits else None, "vocab": len(dm.vocab)}}))
"""


def measure(kind: str, path: Path, cache: Path, batches: int = 0, **kwargs) -> dict:
    """Prepare (and optionally iterate) in a child process; its peak RSS is its own alone."""
    code = _CHILD.format(repo=str(REPO))
    out = subprocess.run([sys.executable, "-c", code, kind, str(path), str(cache), str(batches), json.dumps(kwargs)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def make_enwik8_standin(folder: Path, size: int, seed: int = 0) -> Path:
    """A zip with member ``enwik8`` of exactly ``size`` bytes of markup-laden text."""
    lines = SHAKESPEARE.read_bytes().splitlines(keepends=True)
    if not lines:
        lines = [b"To be, or not to be: that is the question.\n"]
    rng = np.random.default_rng(seed)
    markup = [b"<page>\n", b"  <title>", b"</title>\n", b"[[Category:", b"]]\n", b"&quot;", b"caf\xc3\xa9 ",
              b"\xe2\x80\x94"]
    parts, total = [], 0
    while total < size:
        for i in rng.integers(0, len(lines), 10_000):
            piece = lines[i] if rng.random() > 0.1 else markup[rng.integers(len(markup))] + lines[i]
            parts.append(piece)
            total += len(piece)
    data = b"".join(parts)[:size]
    archive = folder / "enwik8.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("enwik8", data)
    return archive


def main(size: int = 100_000_000, enwik8: str | None = None,
         linux: str = "/usr/src/linux-source-6.1.tar.xz", train_batches: int = 200) -> dict:
    """Prepare corpora and print a table of time and peak memory.

    Args:
        size: bytes of the enwik8 stand-in (the real one has 100,000,000).
        enwik8: the real enwik8.zip, measured instead of a stand-in.
        linux: a kernel tarball to measure; skipped when it does not exist.
        train_batches: training batches read after setup, for the memory comparison.
    """
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        archive = Path(enwik8) if enwik8 else make_enwik8_standin(tmp, size)
        results["enwik8 (stand-in)" if not enwik8 else "enwik8"] = measure(
            "Enwik8DataModule", archive, tmp / "cache", train_batches, sha256=None)
        shakespeare = SHAKESPEARE
        if shakespeare.is_file():
            results["tinyshakespeare"] = measure("ShakespeareDataModule", shakespeare, tmp / "cache", train_batches)
        if Path(linux).is_file():
            results[Path(linux).name] = measure("LinuxDataModule", Path(linux), tmp / "cache")
    print("| corpus | prepared bytes (train split) | vocab | prepare (s) | peak RSS (MB) |\n"
          "| --- | --- | --- | --- | --- |")
    for name, r in results.items():
        tokens = f"{r['tokens']:,}" if r["tokens"] else "-"
        print(f"| {name} | {tokens} | {r['vocab']} | {r['seconds']:.1f} | {r['peak_rss_mb']:.0f} |")
    return results


if __name__ == "__main__":
    CLI(main, as_positional=False)

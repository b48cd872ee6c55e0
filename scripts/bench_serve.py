"""How fast ``charlm serve`` answers on this machine: time to the first streamed byte and bytes/s of
/api/write, the time to recolour a 1,000-byte passage (/api/look: a trace on a new text, another
unit of a text already traced, and one more character typed at its end, which steps only that
character from the cached trace), and a saliency near its end (/api/saliency: from the cached state
where its window starts). A real server on 127.0.0.1, a real HTTP client; medians of repeats.

    python scripts/bench_serve.py --ckpt_path model.ckpt [--repeats 5] [--length 2000] [--browser]

``--browser`` measures the same in the page too, in headless Chromium (Playwright's driver, the
system's chromium): from the click on Generate to the first byte on screen and the bytes/s the page
shows, and from a new unit number typed to the colours changed on screen (1,000 bytes).

Without --ckpt_path it builds an untrained LSTM of --shape (2x512) over printable ASCII (the speed depends on
the shape, not on the training). Not a test: numbers for the README.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
PASSAGE = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
           "First Citizen:\nYou are all resolved rather to die than to famish?\n\n") * 8


def untrained(path: Path, layers: int, hidden: int) -> Path:
    """A checkpoint of an untrained LSTM of this shape over printable ASCII."""
    sys.path.insert(0, str(REPO))
    from charlm.checkpoint import save_model_checkpoint
    from charlm.model import CharRNN, CharRNNConfig
    from datamodules.io.vocab import Vocabulary

    vocab = Vocabulary.from_bytes(bytes(range(32, 127)) + b"\n\t")
    return save_model_checkpoint(path, CharRNN(CharRNNConfig(vocab_size=len(vocab), num_layers=layers,
                                                             hidden_size=hidden)), vocab)


def stream(url: str, length: int, seed: int) -> tuple[float, float]:
    """(seconds to the first text event, bytes/s after it) for one sample."""
    start = time.perf_counter()
    first, count = None, 0
    with httpx.stream("POST", url + "api/write", json={"prompt": "ROMEO:\n", "length": length, "seed": seed},
                      timeout=600) as r:
        for line in r.iter_lines():
            if line.startswith("data: ") and '"text"' in line:
                first = first or time.perf_counter()
                count += len(json.loads(line[6:])["text"].encode())
    end = time.perf_counter()
    return first - start, (count - 1) / max(end - first, 1e-9)


def look(url: str, text: str, unit: int) -> float:
    """Seconds for one /api/look of ``text`` coloured by ``unit``."""
    start = time.perf_counter()
    r = httpx.post(url + "api/look", json={"text": text, "unit": unit, "layer": -1}, timeout=600)
    r.raise_for_status()
    return time.perf_counter() - start


def salient(url: str, text: str, position: int) -> float:
    """Seconds for one /api/saliency of the guess after byte ``position`` of ``text``."""
    start = time.perf_counter()
    r = httpx.post(url + "api/saliency", json={"text": text, "position": position}, timeout=600)
    r.raise_for_status()
    return time.perf_counter() - start


COLOURS = "Array.from(document.querySelectorAll('#look-out span.ch')).map(e => e.style.background).join('|')"


def until(page, check, timeout: float = 120) -> float:
    """Poll ``check(page)`` every 5 ms until true; the time it took (the page's CSP forbids eval, so
    Playwright's wait_for_function cannot run there)."""
    start = time.perf_counter()
    while not check(page):
        if time.perf_counter() - start > timeout:
            raise TimeoutError("the page did not change in time")
        time.sleep(0.005)
    return time.perf_counter() - start


def in_page(url: str, repeats: int, length: int, passage: str) -> tuple[list[float], list[float], list[float]]:
    """In headless Chromium: (seconds from the click on Generate to the first byte shown, bytes/s the
    page reports, seconds from another unit typed to the 1,000 bytes recoloured, the page's 100 ms
    wait for more typing included), one of each per repeat."""
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    firsts, rates, recolours = [], [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        page.goto(url)
        page.fill("#prompt", "ROMEO:\n")
        page.fill("#length", str(length))
        for seed in range(repeats):
            page.fill("#seed", str(seed))
            start = time.perf_counter()
            page.click("#generate")
            until(page, lambda pg: "ROMEO:" in pg.inner_text("#samples") and
                  len(pg.inner_text("#samples").split("ROMEO:", 1)[1].strip()) > 0)
            firsts.append(time.perf_counter() - start)
            until(page, lambda pg: "· done" in pg.inner_text("#samples"))
            rates.append(float(re.search(r"([\d,]+) bytes/s", page.inner_text("#samples")).group(1).replace(",", "")))
        page.click("nav button[data-view='look']")
        page.fill("#look-text", passage)
        until(page, lambda pg: pg.locator("#look-out span.ch").count() >= len(passage.encode()) - 50)
        for unit in range(1, repeats + 1):
            before = page.evaluate(COLOURS)
            page.fill("#look-unit", str(unit))
            recolours.append(until(page, lambda pg, old=before: pg.evaluate(COLOURS) != old))
        browser.close()
    return firsts, rates, recolours


def shape(text: str) -> tuple[int, int]:
    """--shape "LAYERSxHIDDEN" (e.g. 2x512) as (layers, hidden); anything else is a usage error."""
    layers, x, hidden = text.partition("x")
    if not (x and layers.isdigit() and hidden.isdigit() and int(layers) > 0 and int(hidden) > 0):
        raise argparse.ArgumentTypeError(f"give layers x hidden units as two positive integers, e.g. 2x512; "
                                         f"got {text!r}")
    return int(layers), int(hidden)


def main() -> None:
    """Start a server, measure, print."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt_path", help="a charlm checkpoint (default: an untrained LSTM of --shape)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--length", type=int, default=2000, help="bytes per sample")
    parser.add_argument("--shape", type=shape, default="2x512",
                        help="layers x hidden units of the untrained LSTM (default: 2x512)")
    parser.add_argument("--browser", action="store_true", help="also measure in the page (headless Chromium)")
    args = parser.parse_args()
    layers, hidden = args.shape
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = args.ckpt_path or str(untrained(Path(tmp) / f"lstm_{layers}x{hidden}.ckpt", layers, hidden))
        proc = subprocess.Popen([sys.executable, "-m", "charlm", "serve", "--ckpt_path", ckpt, "--port", "0"],
                                cwd=REPO, stdout=subprocess.PIPE, text=True)
        try:
            url = next(line.split("open ", 1)[1].split()[0] for line in proc.stdout if "open http://" in line)
            firsts, rates = zip(*(stream(url, args.length, seed) for seed in range(args.repeats)), strict=True)
            passage = PASSAGE.encode()[:1000].decode()
            new, other, typed, why = [], [], [], []
            for i in range(args.repeats):
                text = "!?.;:"[i % 5] + passage[1:]  # a new text (no start in common with the last): traced afresh
                new.append(look(url, text, 0))
                other.append(look(url, text, 1))  # another unit of the same text: from the server's cache
                typed.append(look(url, text + "x", 1))  # one more character: only it is stepped
                why.append(salient(url, text + "x", len(passage) - 2))  # the window's start state: cached
            page = in_page(url, args.repeats, args.length, passage) if args.browser else None
        finally:
            proc.terminate()
            proc.wait(30)
    med = statistics.median
    print(f"checkpoint: {ckpt if args.ckpt_path else f'untrained {layers}x{hidden} LSTM'}; {args.repeats} repeats, "
          f"medians (min-max)")
    print(f"Write: first byte after {1000 * med(firsts):.0f} ms ({1000 * min(firsts):.0f}-{1000 * max(firsts):.0f}), "
          f"then {med(rates):,.0f} bytes/s ({min(rates):,.0f}-{max(rates):,.0f}), {args.length} bytes a sample")
    print(f"Look inside, 1,000 bytes: new text {1000 * med(new):.0f} ms ({1000 * min(new):.0f}-{1000 * max(new):.0f}), "
          f"another unit {1000 * med(other):.0f} ms ({1000 * min(other):.0f}-{1000 * max(other):.0f}), "
          f"a character typed at the end {1000 * med(typed):.0f} ms ({1000 * min(typed):.0f}-{1000 * max(typed):.0f}), "
          f"saliency near the end {1000 * med(why):.0f} ms ({1000 * min(why):.0f}-{1000 * max(why):.0f})")
    if page:
        firsts, rates, recolours = page
        print(f"In the page: first byte on screen {1000 * med(firsts):.0f} ms after Generate "
              f"({1000 * min(firsts):.0f}-{1000 * max(firsts):.0f}), {med(rates):,.0f} bytes/s shown "
              f"({min(rates):,.0f}-{max(rates):,.0f}); 1,000 bytes recoloured {1000 * med(recolours):.0f} ms after "
              f"another unit was typed ({1000 * min(recolours):.0f}-{1000 * max(recolours):.0f}; the page waits 100 ms "
              f"for more typing first)")


if __name__ == "__main__":
    main()

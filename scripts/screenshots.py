"""Screenshots of ``charlm serve``'s page and of the ``charlm visualize`` page, for the docs.

    python scripts/screenshots.py --ckpt_path runs/shakespeare/version_0/checkpoints/best-*.ckpt

Starts ``python -m charlm serve`` on a free loopback port, opens the page in headless Chromium (Debian's
/usr/bin/chromium, driven by Playwright's driver: no browser download), generates one sample so the shot
shows a result, and writes into --out_dir (docs/assets):

    serve-desktop.png   1280 x 800, light    serve-phone.png   390 x 844, light
    serve-dark.png      1280 x 800, dark     neurons.png       the `visualize --find` page, 1280 x 800

The server is stopped whatever happens (an error, a timeout, Ctrl-C). Not a test: pictures for people.
"""

from __future__ import annotations

import argparse
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
# the opening of Tiny Shakespeare (Coriolanus), for the neuron page when no --text_file is given
PASSAGE = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
           "First Citizen:\nYou are all resolved rather to die than to famish?\n\nAll:\nResolved. resolved.\n\n"
           "First Citizen:\nFirst, you know Caius Marcius is chief enemy to the people.\n")


def charlm(*args: str) -> list[str]:
    """The command line of ``python -m charlm ARGS`` with this interpreter."""
    return [sys.executable, "-m", "charlm", *args]


def child_env() -> dict[str, str]:
    """The environment for charlm's processes: one thread each unless told otherwise, the repository importable."""
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    return env


@contextmanager
def serving(ckpt_paths: list[str], timeout_s: float, log: Path) -> Iterator[str]:
    """``charlm serve`` on 127.0.0.1 and a free port: its URL, the server stopped after the block."""
    with log.open("w") as err:
        proc = subprocess.Popen(charlm("serve", "--ckpt_path", *ckpt_paths, "--host", "127.0.0.1", "--port", "0"),
                                stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL, text=True,
                                env=child_env())
        failed = False
        try:
            lines: queue.Queue[str | None] = queue.Queue()

            def read() -> None:  # a thread: readline() has no timeout of its own
                for line in proc.stdout:  # type: ignore[union-attr]
                    lines.put(line)
                lines.put(None)

            threading.Thread(target=read, daemon=True).start()
            deadline = time.monotonic() + timeout_s
            while True:
                try:
                    line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
                except queue.Empty:
                    raise SystemExit(f"screenshots: charlm serve printed no URL within {timeout_s:g} s; "
                                     f"its log: {log}") from None
                if line is None:
                    proc.wait(timeout=5)
                    raise SystemExit(f"screenshots: charlm serve exited with status {proc.returncode}:\n"
                                     f"{log.read_text().strip()}")
                if "open http://" in line:  # "charlm serve: open http://127.0.0.1:PORT/ (Ctrl-C to stop)"
                    try:
                        yield line.split("open ", 1)[1].split()[0]
                    except Exception:
                        failed = True
                        raise
                    return
                if time.monotonic() > deadline:
                    raise SystemExit(f"screenshots: charlm serve printed no URL within {timeout_s:g} s; "
                                     f"its log: {log}")
        finally:
            proc.terminate()  # SIGTERM: uvicorn shuts down
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if failed and (said := log.read_text().strip()):
                print(f"screenshots: what charlm serve said:\n{said}", file=sys.stderr)


def wait_until(page, expression: str, timeout_s: float) -> None:
    """Poll a JavaScript expression until it is true. (wait_for_function evaluates with eval inside the page,
    which the page's Content-Security-Policy forbids; evaluate does not.)"""
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise TimeoutError(f"still false after {timeout_s:g} s: {expression}")
        page.wait_for_timeout(100)


def shoot_page(browser, url: str, path: Path, viewport: dict[str, int], scheme: str, args: argparse.Namespace) -> None:
    """One screenshot of the serve page: wait until it is ready, generate one sample (unless --no_generate)."""
    context = browser.new_context(viewport=viewport, color_scheme=scheme, device_scale_factor=args.scale,
                                  is_mobile=viewport["width"] < 600, has_touch=viewport["width"] < 600)
    try:
        page = context.new_page()
        page.set_default_timeout(args.timeout_s * 1000)
        page.goto(url)
        page.wait_for_selector("body[data-ready='1']")
        if args.generate:
            page.fill("#prompt", args.prompt)
            page.fill("#length", str(args.length))
            page.fill("#seed", str(args.seed))
            page.click("#generate")
            wait_until(page, "document.querySelector(\".sample[data-state='over']\") !== null", args.timeout_s)
            if error := page.text_content("#write-error").strip():
                raise RuntimeError(f"the page says: {error}")
        page.screenshot(path=str(path))
    finally:
        context.close()


def shoot_file(browser, html: Path, path: Path, args: argparse.Namespace) -> None:
    """One screenshot of a self-contained HTML file (the visualize page), at desktop size."""
    context = browser.new_context(viewport=DESKTOP, device_scale_factor=args.scale)
    try:
        page = context.new_page()
        page.set_default_timeout(args.timeout_s * 1000)
        page.goto(html.resolve().as_uri())
        page.wait_for_load_state("load")
        page.screenshot(path=str(path))
    finally:
        context.close()


def neuron_page(args: argparse.Namespace, tmp: Path) -> Path:
    """``charlm visualize --find`` of the first checkpoint over --text_file (or PASSAGE) into a temp file."""
    text_file = args.text_file
    if text_file is None:
        text_file = tmp / "passage.txt"
        text_file.write_text(PASSAGE)
    out = tmp / "neurons.html"
    cmd = charlm("visualize", "--ckpt_path", args.ckpt_path[0], "--text_file", str(text_file), "--find",
                 "--max_bytes", str(args.max_bytes), "--unknown", "skip", "--out", str(out), "--overwrite")
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, env=child_env(),
                              stdin=subprocess.DEVNULL, timeout=args.timeout_s * 3)
    except subprocess.TimeoutExpired:
        raise SystemExit(f"screenshots: charlm visualize took over {args.timeout_s * 3:g} s") from None
    if done.returncode != 0:
        raise SystemExit(f"screenshots: charlm visualize failed ({done.returncode}):\n{done.stderr.strip()}")
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--ckpt_path", nargs="+", required=True,
                        help="one or more checkpoints for charlm serve; the first is shown and visualised")
    parser.add_argument("--text_file", type=Path, default=None,
                        help="the passage of the neuron page (default: the opening of Tiny Shakespeare)")
    parser.add_argument("--out_dir", type=Path, default=REPO / "docs" / "assets", help="where the PNGs go")
    parser.add_argument("--prompt", default="ROMEO:\n", help="the prompt typed into the page")
    parser.add_argument("--length", type=int, default=400, help="bytes to generate for the shot")
    parser.add_argument("--seed", type=int, default=1, help="the seed typed into the page (same seed, same shot)")
    parser.add_argument("--max_bytes", type=int, default=1000, help="bytes of --text_file on the neuron page")
    parser.add_argument("--no_generate", dest="generate", action="store_false",
                        help="shoot the page as it opens, without generating")
    parser.add_argument("--scale", type=float, default=1, help="device pixels per CSS pixel (2: sharper, bigger)")
    parser.add_argument("--timeout_s", type=float, default=90, help="the limit of each wait")
    parser.add_argument("--chromium", default="/usr/bin/chromium", help="the Chromium executable")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Write the four screenshots (see the module docstring)."""
    args = parse_args(argv)
    for ckpt in args.ckpt_path:
        if not Path(ckpt).is_file():
            raise SystemExit(f"screenshots: --ckpt_path {ckpt} is not a file")
    if not Path(args.chromium).is_file():
        raise SystemExit(f"screenshots: no Chromium at {args.chromium} (apt-get install chromium, or --chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise SystemExit("screenshots: needs Playwright's Python package (pip install playwright; "
                         "its driver only: the browser is --chromium)") from None
    args.out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    with tempfile.TemporaryDirectory(prefix="charlm-shots-") as tmp_name:
        tmp = Path(tmp_name)
        html = neuron_page(args, tmp)
        with serving(args.ckpt_path, args.timeout_s, tmp / "serve.log") as url, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=args.chromium, headless=True, args=CHROMIUM_ARGS)
            try:
                for name, viewport, scheme in (("serve-desktop.png", DESKTOP, "light"),
                                               ("serve-phone.png", PHONE, "light"),
                                               ("serve-dark.png", DESKTOP, "dark")):
                    shoot_page(browser, url, args.out_dir / name, viewport, scheme, args)
                    written.append(args.out_dir / name)
                shoot_file(browser, html, args.out_dir / "neurons.png", args)
                written.append(args.out_dir / "neurons.png")
            finally:
                browser.close()
    for path in written:
        print(f"{path} ({path.stat().st_size / 1000:.0f} kB)")


if __name__ == "__main__":
    main()

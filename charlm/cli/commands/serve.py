"""``python -m charlm serve``: the function behind the command (its docstring is its ``--help``).

Light at import: the command table imports this module to build ``charlm --help``, so the web
libraries (the ``serve`` extra) and the app are imported only when the server starts.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
import threading
from types import FrameType

from charlm.cli.exits import INTERRUPT_EXIT_STATUS
from charlm.devices import KNOWN as KNOWN_DEVICES
from charlm.devices import resolve_device
from charlm.serve.limits import DEFAULT_GENERATIONS

MISSING_EXTRA = ("charlm serve needs the web libraries of the serve extra ({missing} is not installed): "
                 "pip install -e '.[serve]' in the repository (or pip install starlette uvicorn).")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: a free one), or a one-line error naming the flag."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as err:
        raise ValueError(f"--host {host}: not an address or a name this machine can resolve ({err.strerror})."
                         ) from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as err:
        sock.close()
        raise ValueError(f"--port {port}: cannot listen on {host}:{port} ({err.strerror}); choose another --port "
                         f"(0 picks a free one).") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    """The URL to open in a browser for a server listening on ``sock``."""
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{'127.0.0.1' if host == '0.0.0.0' else shown}:{port}/"


def serve(
    ckpt_path: list[str],
    host: str = "127.0.0.1",
    port: int = 8000,
    max_generations: int = DEFAULT_GENERATIONS,
    device: str = "cpu",
) -> None:
    """Play with models in a browser: write with them, look inside them, compare them.

    Prints a local URL and serves one page (no assets from the internet) with three views: Write
    (a sample streamed as it is generated, several temperatures side by side, Stop), Look inside
    (each character coloured by a unit or by its surprise, the top-5 guesses, saliency) and Who
    wrote this (every model's surprise, classify's verdict). Stop with Ctrl-C.

    Args:
        ckpt_path: one or more charlm checkpoints, one after another (--ckpt_path a.ckpt b.ckpt); the page
            chooses among these only.
        host: the interface to listen on. The default, 127.0.0.1, is this machine only; any other lets
            every machine that can reach this one use the models, with no password (a warning says so).
        port: the port to listen on (0: a free one, printed).
        max_generations: samples being written at once, all browser tabs together; more are refused
            with a message until one ends.
        device: {devices} (auto: a GPU if there is one). The default is cpu, unlike sample's and score's
            auto: the page's requests share the models from several threads, and that is tested on CPUs only.
    """
    if max_generations < 1:
        raise ValueError(f"--max_generations must be a positive integer, got {max_generations}")
    if not 0 <= port <= 65535:
        raise ValueError(f"--port must lie in [0, 65535], got {port}")
    try:
        import starlette  # noqa: F401  (the check only: app imports it)
        import uvicorn
    except ModuleNotFoundError as err:
        raise ValueError(MISSING_EXTRA.format(missing=err.name)) from None
    from charlm.serve.app import build_app, computing
    from charlm.serve.models import load_all

    models = load_all(ckpt_path, resolve_device(device))  # every file checked before anything listens
    sock = bind(host, port)
    if not _is_loopback(host):
        print(f"charlm serve: warning: listening on {host}: every machine that can reach this one can use these "
              f"models, with no password. Use the default --host 127.0.0.1 to keep them to this machine.",
              file=sys.stderr)
    stopping = threading.Event()  # set by Ctrl-C (or SIGTERM): the app ends its streams and analyses at once
    app = build_app(models, max_generations, host, stopping)
    for i, m in enumerate(models):
        print(f"  model {i}: {m.name} ({m.loaded.model.config.describe()})")
    print(f"charlm serve: open {url_of(sock)} (Ctrl-C to stop)", flush=True)

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            stopping.set()  # first: by uvicorn's next tick every response has ended, so none is cancelled
            super().handle_exit(sig, frame)

    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2, lifespan="off")
    try:
        Server(config).run(sockets=[sock])  # after a signal uvicorn raises it again: Ctrl-C ends with 130 (__main__)
    except KeyboardInterrupt:
        if computing():  # an analysis whose answer nobody awaits: the interpreter cannot end under a thread inside
            sys.stdout.flush()  # torch (C++ aborts: "terminate called without an active exception"), so the
            sys.stderr.flush()  # process ends here, as __main__ would end it
            os._exit(INTERRUPT_EXIT_STATUS)
        raise


serve.__doc__ = serve.__doc__.replace("{devices}", KNOWN_DEVICES)  # --help lists the devices charlm knows

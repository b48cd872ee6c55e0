"""Can this process log to W&B online? Credentials, and a bounded look at the server (through the
proxy the environment names, as W&B itself would go).

Nothing here waits longer than its timeout, DNS lookups included, and nothing prompts.
"""

from __future__ import annotations

import base64
import netrc
import os
import socket
import ssl
import threading
import time
import urllib.request
from urllib.parse import ParseResult, unquote, urlparse

from charlm.compat import wandb_upstream_url


def default_base_url() -> str:
    """W&B's own default server (wandb 0.31: CoreWeave's ``https://api.forge.coreweave.com``)."""
    import wandb

    return wandb.Settings().base_url  # the default: a Settings made here reads no environment variable


def base_url() -> ParseResult:
    """The W&B server, as ``WANDB_BASE_URL`` (or W&B's default) names it."""
    return urlparse(os.environ.get("WANDB_BASE_URL") or default_base_url())


def _netrc_machines(url: ParseResult) -> list[str]:
    """The ~/.netrc entries W&B reads a key from for ``url`` (``wandb login`` writes host[:port];
    a Forge host also reads the W&B API host behind it)."""
    machines = [url.netloc, url.hostname or ""]
    upstream = wandb_upstream_url(url.geturl())
    return machines if upstream is None else [*machines, urlparse(upstream).netloc]


def has_credentials() -> bool:
    """An API key in the environment or in ~/.netrc (where ``wandb login`` puts it)."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    try:
        entries = netrc.netrc(os.environ.get("NETRC"))
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False
    return any(machine and entries.authenticators(machine) for machine in _netrc_machines(base_url()))


def proxy_for(url: ParseResult) -> str | None:
    """The proxy W&B would use for ``url``: W&B's own setting (``WANDB_HTTPS_PROXY`` /
    ``WANDB_HTTP_PROXY``), else ``HTTPS_PROXY`` / ``HTTP_PROXY`` / ``ALL_PROXY``, unless ``NO_PROXY``
    exempts the host."""
    own = os.environ.get(f"WANDB_{url.scheme.upper()}_PROXY")
    if own:
        return own
    proxies = urllib.request.getproxies()  # lower-case names win, as in curl and requests
    proxy = proxies.get(url.scheme) or proxies.get("all")
    if not proxy or urllib.request.proxy_bypass(url.hostname or ""):
        return None
    return proxy


def _shown(proxy: ParseResult) -> str:
    """A proxy URL without its password, for messages."""
    return f"{proxy.scheme}://{proxy.hostname}" + (f":{proxy.port}" if proxy.port else "")


_RECENT: dict[tuple, tuple[float, str | None]] = {}  # (target, proxy, timeout) -> (monotonic time, answer)
RECENT_SECONDS = 60.0  # the CLI checks before building the logger, which asks again: one probe


def probe_server(timeout: float = 3.0) -> str | None:
    """``None`` when the W&B server can be reached within ``timeout`` seconds, else why not
    (an answer is reused for a minute).

    Direct: a TCP connection to the server's port. Through an HTTP(S) proxy: the proxy must accept
    ``CONNECT host:port`` (https) or answer a ``HEAD`` (http) with no gateway error; the proxy, not
    this process, resolves the server's name. A daemon thread bounds the whole attempt, DNS
    included (socket timeouts do not cover lookups), and never delays the interpreter's exit.
    """
    url = base_url()
    target_host, scheme = url.hostname or "", url.scheme or "https"
    port = url.port or (443 if scheme == "https" else 80)
    target = f"{target_host}:{port}"
    proxy_text = proxy_for(url)
    proxy = urlparse(proxy_text if "://" in proxy_text else f"http://{proxy_text}") if proxy_text else None
    key = (scheme, target, proxy_text, timeout)
    if key in _RECENT and time.monotonic() - _RECENT[key][0] < RECENT_SECONDS:
        return _RECENT[key][1]
    result: list[str | None] = []

    def attempt() -> None:
        try:
            if proxy is None:
                with socket.create_connection((target_host, port), timeout=timeout):
                    result.append(None)
                return
            result.append(_through_proxy(proxy, scheme, target, timeout))
        except OSError as err:  # refused, unresolvable, timed out, TLS failure
            where = f"the proxy {_shown(proxy)}" if proxy else f"the W&B server {target}"
            result.append(f"{where} cannot be reached ({err.__class__.__name__}: {err})")

    thread = threading.Thread(target=attempt, name="charlm-wandb-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    if not result:
        via = f" through the proxy {_shown(proxy)}" if proxy else ""
        result.append(f"no answer from the W&B server {target}{via} within {timeout:g} s")
    _RECENT[key] = (time.monotonic(), result[0])
    return result[0]


def _through_proxy(proxy: ParseResult, scheme: str, target: str, timeout: float) -> str | None:
    if proxy.scheme not in ("http", "https"):
        return None  # a SOCKS proxy: this probe cannot speak it, so let W&B try (its init is time-bounded)
    port = proxy.port or (443 if proxy.scheme == "https" else 80)
    sock = socket.create_connection((proxy.hostname, port), timeout=timeout)
    with sock:
        if proxy.scheme == "https":
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=proxy.hostname)
        auth = ""
        if proxy.username:
            pair = f"{unquote(proxy.username)}:{unquote(proxy.password or '')}".encode()
            auth = f"Proxy-Authorization: Basic {base64.b64encode(pair).decode()}\r\n"
        if scheme == "https":  # the tunnel W&B would open
            request = f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n{auth}\r\n"
        else:
            request = f"HEAD {scheme}://{target}/ HTTP/1.1\r\nHost: {target}\r\n{auth}Connection: close\r\n\r\n"
        sock.sendall(request.encode())
        status_line = _read_line(sock)
    parts = status_line.split()
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    ok = status == 200 if scheme == "https" else 0 < status < 500 and status != 407
    return None if ok else f"the proxy {_shown(proxy)} answered {status_line or 'nothing'!r} for {target}"


def _read_line(sock: socket.socket, limit: int = 4096) -> str:
    """The first line the peer sends (the HTTP status line)."""
    data = b""
    while b"\r\n" not in data and len(data) < limit:
        chunk = sock.recv(limit)
        if not chunk:
            break
        data += chunk
    return data.split(b"\r\n", 1)[0].decode("latin-1").strip()

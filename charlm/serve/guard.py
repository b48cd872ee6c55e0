"""Only this server's own page may use it: the Host, Origin and Content-Type checks, before any route.

- DNS rebinding: a page on evil.example can point that name at 127.0.0.1 and then read this server's
  answers as its own; the browser still sends ``Host: evil.example``. So only the names this server
  is reached by are accepted (421 otherwise): 127.0.0.1, localhost and [::1], and the ``--host`` it
  was given; on every interface (0.0.0.0, ::) also this machine's name and any address literal (no
  name, nothing to rebind).
- Cross-site requests: another site's page can POST a form or text/plain (a "simple" request, sent
  without asking) to 127.0.0.1. POSTs must say ``Content-Type: application/json`` (415), which no
  form can send, and an ``Origin`` other than this server's own is refused (403).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
EVERY_INTERFACE = ("0.0.0.0", "::")


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name.strip("[]"))
        return True
    except ValueError:
        return False


def split_host(value: str) -> tuple[str, int | None] | None:
    """A Host header (or an Origin's host part) as (lower-case name, port or None); None if malformed.
    IPv6 addresses keep their brackets: '[::1]:8000' -> ('[::1]', 8000)."""
    value = value.strip().lower()
    if value.startswith("["):
        name, _, rest = value.partition("]")
        name += "]"
        if rest and not rest.startswith(":"):
            return None
        port = rest[1:] if rest else None
    else:
        name, colon, port = value.partition(":")
        port = port if colon else None
    if not name or name == "[]" or (port is not None and not (port.isdigit() and int(port) < 65536)):
        return None
    return name, None if port is None else int(port)


class Guard:
    """ASGI middleware: refuses, with a JSON {"error": ...}, requests this server's page would never send."""

    def __init__(self, app: ASGIApp, hosts: Iterable[str]) -> None:
        self.app = app
        self.names = set(LOOPBACK_NAMES)
        self.any_address = False
        for host in hosts:
            host = host.lower()
            self.names.add(f"[{host}]" if ":" in host else host)
            if host in EVERY_INTERFACE:
                self.any_address = True
                self.names |= {socket.gethostname().lower(), socket.getfqdn().lower()}

    def _refusal(self, scope: Scope) -> tuple[int, str] | None:
        headers = Headers(scope=scope)
        host = split_host(headers.get("host", ""))
        if host is None or not (host[0] in self.names or (self.any_address and _is_address(host[0]))):
            shown = headers.get("host", "(none)")
            return 421, (f"This server answers to {', '.join(sorted(self.names))} only, not Host {shown!r}: open "
                         f"the address charlm serve printed (a page under another name could be a DNS rebinding "
                         f"attack).")
        origin = headers.get("origin")
        if origin is not None:
            scheme, sep, rest = origin.partition("://")
            theirs = split_host(rest) if sep and "/" not in rest else None
            default = 443 if scheme == "https" else 80
            if (theirs is None or scheme.lower() != scope.get("scheme", "http")
                    or (theirs[0], theirs[1] or default) != (host[0], host[1] or 80)):
                return 403, f"Requests from another site's page ({origin}) are refused: use this server's own page."
        if scope["method"] == "POST":
            kind = headers.get("content-type", "").split(";")[0].strip().lower()
            if kind != "application/json":
                return 415, (f"Send the request as JSON with Content-Type: application/json, not "
                             f"{kind or 'no Content-Type'}.")
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        refusal = self._refusal(scope) if scope["type"] == "http" else None
        if refusal is None:
            await self.app(scope, receive, send)
        else:
            status, message = refusal
            await JSONResponse({"error": message}, status_code=status)(scope, receive, send)

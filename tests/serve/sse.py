"""Reading ``/api/write``'s server-sent events with a real HTTP client (httpx)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx


def events(response: httpx.Response) -> Iterator[tuple[str, dict]]:
    """(event, data) as each event arrives."""
    event = None
    for line in response.iter_lines():
        if line.startswith("event: "):
            event = line[len("event: "):]
        elif line.startswith("data: "):
            yield event, json.loads(line[len("data: "):])


def written(url: str, **body) -> tuple[str, list[str], dict]:
    """The whole sample of one /api/write request: (text, the pieces as they came, the done event)."""
    pieces, done = [], None
    with httpx.stream("POST", url + "api/write", json=body, timeout=120) as response:
        assert response.status_code == 200, response.read()
        for event, data in events(response):
            if event == "text":
                pieces.append(data["text"])
            elif event == "done":
                done = data
            assert event != "error", data
    return "".join(pieces), pieces, done

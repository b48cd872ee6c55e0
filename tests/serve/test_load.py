"""Analyses under load: a burst of looks queues for ANALYSES_AT_ONCE places, and one whose page has gone
(aborted by a newer look, or a closed tab) is never computed."""

import json
import socket
import threading
import time
from urllib.parse import urlsplit

import httpx

from charlm.serve.limits import ANALYSES_AT_ONCE


def analyses(url: str) -> dict:
    return httpx.get(url + "api/status").json()["analyses"]


def wait_for(url: str, done, what: str) -> dict:
    deadline = time.monotonic() + 120
    while not done(now := analyses(url)):
        assert time.monotonic() < deadline, f"{what}: {now}"
        time.sleep(0.05)
    return now


def test_looks_beyond_the_places_wait_and_an_abandoned_one_is_skipped(server):
    before = analyses(server)
    # 5,000 bytes on the slow 2 x 512 LSTM: seconds each; texts that share no start (nothing to continue)
    texts = [chr(65 + i) + f"the quick brown fox {i} " * 250 for i in range(ANALYSES_AT_ONCE)]
    texts = [t[:5000] for t in texts]
    answers = [None] * len(texts)

    def look(i: int) -> None:
        answers[i] = httpx.post(server + "api/look", json={"model": 2, "text": texts[i]}, timeout=300).status_code

    threads = [threading.Thread(target=look, args=(i,)) for i in range(len(texts))]
    for t in threads:
        t.start()
    wait_for(server, lambda a: a["running"] == ANALYSES_AT_ONCE, "the first looks run")
    parts = urlsplit(server)
    body = json.dumps({"model": 2, "text": "Z" + texts[0][1:]}).encode()
    late = socket.create_connection((parts.hostname, parts.port))
    late.sendall(b"POST /api/look HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                 % (parts.netloc.encode(), len(body)) + body)
    waiting = wait_for(server, lambda a: a["waiting"] == 1, "the late look waits for a place")
    assert waiting["running"] == ANALYSES_AT_ONCE  # not one more than the places
    late.close()  # the page aborted it (a newer keystroke) while it waited
    for t in threads:
        t.join(300)
    after = wait_for(server, lambda a: a["waiting"] == a["running"] == 0 and a["skipped"] > before["skipped"],
                     "the late look is skipped")
    assert answers == [200] * len(texts)
    assert after["done"] == before["done"] + len(texts) and after["skipped"] == before["skipped"] + 1

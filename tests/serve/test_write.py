import time

import httpx
import pytest

from charlm.cli.commands.sample import sample
from tests.serve.conftest import SHAKESPEARE_CKPT
from tests.serve.sse import events, written


def status(url: str) -> dict:
    return httpx.get(url + "api/status").json()


def test_write_streams_the_bytes_of_charlm_sample(server):
    settings = {"prompt": "ROMEO:\n", "length": 300, "temperature": 0.9, "top_k": 20, "top_p": 0.95, "seed": 7}
    text, pieces, done = written(server, model=0, **settings)
    expected = sample(str(SHAKESPEARE_CKPT), echo_prompt=False, device="cpu", **settings)[0]
    assert text == expected
    assert len(pieces) >= 2 and pieces[0] == expected[:1]  # the first byte alone, then the rest as it comes
    assert done == {"bytes": len(expected.encode()), "seed": 7}


def test_a_seed_is_chosen_and_told_when_none_is_given(server):
    with httpx.stream("POST", server + "api/write", json={"prompt": "A", "length": 20}, timeout=60) as r:
        seed = next(data["seed"] for event, data in events(r) if event == "start")
    text, _, _ = written(server, prompt="A", length=20, seed=seed)
    assert text == sample(str(SHAKESPEARE_CKPT), prompt="A", length=20, seed=seed, echo_prompt=False)[0]


def test_two_streams_at_once_do_not_mix(server, slow_ckpt):
    """Two samples of the slow model (10,000 bytes: seconds each) read in turns, piece by piece, while both run."""
    asks = [{"model": 2, "prompt": "def f(x):\n", "length": 10_000, "temperature": 1.0, "seed": 1},
            {"model": 2, "prompt": "int main() {\n", "length": 10_000, "temperature": 1.0, "seed": 2}]
    streams = [httpx.stream("POST", server + "api/write", json=ask, timeout=120) for ask in asks]
    readers = [events(s.__enter__()) for s in streams]
    got, overlapped = ["", ""], False
    try:
        while min(len(g) for g in got) < 300:
            for i, reader in enumerate(readers):
                event, data = next(reader)
                assert event in ("start", "text"), (event, data)
                got[i] += data.get("text", "")
            overlapped = overlapped or (min(len(g) for g in got) > 0 and status(server)["running"] == 2)
    finally:
        for s in streams:
            s.__exit__(None, None, None)
    assert overlapped  # both were being written at once (the server's count), not one after the other
    for ask, text in zip(asks, got, strict=True):
        settings = {k: v for k, v in ask.items() if k not in ("model", "length")}
        assert text == sample(str(slow_ckpt), length=len(text), echo_prompt=False, **settings)[0]
    deadline = time.monotonic() + 60
    while status(server)["running"] and time.monotonic() < deadline:
        time.sleep(0.1)


def test_closing_the_stream_stops_its_generation(server):
    before = status(server)
    with httpx.stream("POST", server + "api/write", json={"model": 2, "length": 10_000, "seed": 0}, timeout=60) as r:
        for event, _ in events(r):
            if event == "text":
                break  # the tab is closed after the first piece
    deadline = time.monotonic() + 60
    while status(server)["running"] and time.monotonic() < deadline:
        time.sleep(0.1)
    after = status(server)
    assert after["running"] == 0 and after["started"] == before["started"] + 1
    time.sleep(1.0)
    assert status(server)["steps"] == after["steps"]  # no step since: the work stopped
    assert after["steps"] - before["steps"] < 10_000  # and it stopped early, not at the end of the sample


def test_concurrent_generations_beyond_the_limit_are_refused_with_a_message(server):
    streams = [httpx.stream("POST", server + "api/write", json={"model": 2, "length": 10_000}, timeout=60)
               for _ in range(2)]
    opened = [s.__enter__() for s in streams]
    try:
        for r in opened:
            assert r.status_code == 200
        refused = httpx.post(server + "api/write", json={"model": 0, "length": 10}, timeout=60)
        assert refused.status_code == 429
        assert "--max_generations 2" in refused.json()["error"] and "stop one" in refused.json()["error"]
    finally:
        for s in streams:
            s.__exit__(None, None, None)
    deadline = time.monotonic() + 60
    while status(server)["running"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert written(server, model=0, length=10, seed=1)[0]  # the closed tabs freed their places


@pytest.mark.parametrize(("body", "code", "words"), [
    ({"prompt": "x" * 10_001}, 413, ["10,001 bytes", "at most 10,000"]),
    ({"length": 10_001}, 400, ["length", "10,000"]),
    ({"length": -1}, 400, ["length"]),
    ({"temperature": -1}, 400, ["temperature must be >= 0"]),
    ({"top_p": 2}, 400, ["top_p must lie in (0, 1]"]),
    ({"top_k": 1.5}, 400, ["top_k must be an integer"]),
    ({"seed": 2**64}, 400, ["seed must lie in [0, 2^64)"]),
    ({"prompt": ""}, 400, ["prompt is empty"]),
    ({"prompt": "{}"}, 400, ["'{' (0x7b)", "never saw"]),
    ({"model": 7}, 400, ["model must be an index in [0, 2]"]),
    ({"model": "/etc/passwd"}, 400, ["model must be an index"]),
])
def test_a_bad_write_request_is_refused_with_a_message(server, body, code, words):
    response = httpx.post(server + "api/write", json={"model": 0, "length": 5, **body}, timeout=60)
    assert response.status_code == code, response.text
    for word in words:
        assert word in response.json()["error"], response.json()

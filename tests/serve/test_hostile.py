"""Hostile request bodies on every route of a real ``charlm serve``: each is a 4xx JSON error whose message names
the field (or the request, when no field can be read), and the server prints no traceback and keeps its memory."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from charlm.serve.limits import MAX_BODY, MAX_COMPARE, MAX_LOOK, MAX_PROMPT
from tests.serve.conftest import SHAKESPEARE_CKPT, serving

JSON = {"Content-Type": "application/json"}

# A body each route answers (200), and the text field it reads with that field's bound in bytes
VALID = {
    "api/write": {"model": 0, "prompt": "ab", "length": 3, "temperature": 0.8, "top_k": 5, "top_p": 0.9, "seed": 1},
    "api/look": {"model": 0, "text": "ab", "state": "hidden", "layer": 0, "unit": 0},
    "api/saliency": {"model": 0, "text": "abc", "position": 0},
    "api/compare": {"text": "abc"},
}
TEXT_FIELD = {"api/write": ("prompt", MAX_PROMPT), "api/look": ("text", MAX_LOOK),
              "api/saliency": ("text", MAX_LOOK), "api/compare": ("text", MAX_COMPARE)}

# JSON that no field takes (as written in the body: the escapes and the nesting are the point)
WRONG_FOR_EVERY_FIELD = {
    "lone high surrogate": r'"A\ud800B"',
    "lone low surrogate": r'"\udc00"',
    "array 500 deep": "[" * 500 + "]" * 500,
    "object": '{"a": 1}',
    "array": '["ab"]',
    "true": "true",
    "NaN": "NaN",
    "Infinity": "Infinity",
    "-Infinity": "-Infinity",
    "1e400": "1e400",
    "41 digits": "1" + "0" * 40,
    "5,000 digits": "9" * 5000,
    "string near MAX_BODY": '"' + "a" * (MAX_BODY - 1000) + '"',
}


def with_field(route: str, field: str, fragment: str) -> bytes:
    """The route's valid body with ``field`` written as the JSON ``fragment``."""
    parts = [f"{json.dumps(key)}: {fragment if key == field else json.dumps(value)}"
             for key, value in VALID[route].items()]
    return ("{" + ", ".join(parts) + "}").encode()


FIELD_CASES = [pytest.param(route, field, with_field(route, field, fragment), id=f"{route}-{field}-{name}")
               for route, body in VALID.items() for field in body for name, fragment in WRONG_FOR_EVERY_FIELD.items()]

# Bodies that no field can be read from: the message speaks of the request
BODY_CASES = {
    "array 1,000 deep": b"[" * 1000 + b"]" * 1000,
    "object 1,000 deep": b'{"a": ' * 1000 + b"1" + b"}" * 1000,
    "array 100,000 deep": b"[" * 100_000,
    "null": b"null", "string": b'"text"', "number": b"1", "array": b"[]", "true": b"true",
    "empty": b"",
    "truncated": b'{"text": "ab"',
    "trailing garbage": b'{"text": "ab"} x',
    "invalid UTF-8": b'{"text": "a\xffb", "prompt": "a\xffb"}',
    "UTF-8 of a surrogate": b'{"text": "a\xed\xa0\x80b", "prompt": "a\xed\xa0\x80b"}',
    "UTF-16": '{"text": "ab", "prompt": "ab"}'.encode("utf-16"),
    "surrogate in a name": b'{"text": "abc", "prompt": "ab", "position": 0, "\\ud800": 1}',
}


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[tuple[str, Path]]:
    """A real ``charlm serve`` of the Shakespeare fixture: (its URL, the file its stderr goes to)."""
    log = tmp_path_factory.mktemp("serve") / "stderr.txt"
    with serving("--ckpt_path", str(SHAKESPEARE_CKPT), log=log) as (url, _):
        yield url, log


def refusal(served: tuple[str, Path], route: str, body: bytes, headers: dict[str, str] = JSON) -> tuple[int, str]:
    """POST ``body`` to ``route``: (status, the error message), checking that the answer is a JSON error and
    that the server printed nothing meanwhile (a traceback is the sign of an unhandled body)."""
    url, log = served
    before = log.stat().st_size
    response = httpx.post(url + route, content=body, headers=headers, timeout=60)
    printed = log.read_text()[before:]
    assert printed == "", printed[-3000:]
    assert response.headers["content-type"] == "application/json", response.text[:300]
    message = response.json()["error"]
    assert len(message) < 600, message[:600]  # a bounded message: the body is never echoed whole
    return response.status_code, message


@pytest.mark.parametrize("route", VALID)
def test_the_valid_bodies_are_answered(served, route):
    response = httpx.post(served[0] + route, json=VALID[route], timeout=60)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(("route", "field", "body"), FIELD_CASES)
def test_a_field_no_route_takes_is_a_4xx_naming_it(served, route, field, body):
    status, message = refusal(served, route, body)
    assert 400 <= status < 500 and message.startswith(f"{field} "), (status, message)


@pytest.mark.parametrize("route", VALID)
@pytest.mark.parametrize("name", BODY_CASES)
def test_a_body_with_no_readable_field_is_a_4xx_about_the_request(served, route, name):
    status, message = refusal(served, route, BODY_CASES[name])
    assert status == 400 and message.startswith("The request "), (status, message)


@pytest.mark.parametrize("route", VALID)
def test_a_lone_surrogate_is_refused_where_it_is(served, route):
    field, _ = TEXT_FIELD[route]
    status, message = refusal(served, route, with_field(route, field, r'"A\ud800B"'))
    assert status == 400 and "lone surrogate" in message and "character 1" in message, message


@pytest.mark.parametrize("route", VALID)
def test_a_10_mb_body_is_refused_naming_the_text_field_and_its_bound(served, route):
    field, limit = TEXT_FIELD[route]
    body = json.dumps({**VALID[route], field: "a" * 10_000_000}).encode()
    status, message = refusal(served, route, body)
    assert status == 413 and f"at most {MAX_BODY:,}" in message, message
    assert f"{field} at most {limit:,} bytes" in message, message
    chunked = iter([body[i : i + 2**16] for i in range(0, len(body), 2**16)])  # no Content-Length: read as it comes
    status, message = refusal(served, route, chunked)
    assert status == 413 and f"{field} at most {limit:,} bytes" in message, message


@pytest.mark.parametrize("route", VALID)
def test_a_text_just_under_the_body_limit_is_refused_with_the_fields_bound(served, route):
    field, limit = TEXT_FIELD[route]
    status, message = refusal(served, route, with_field(route, field, '"' + "a" * (MAX_BODY - 200) + '"'))
    assert status == 413 and message.startswith(f"{field} is {MAX_BODY - 200:,} bytes") and f"{limit:,}" in message


@pytest.mark.parametrize(("route", "body", "field"), [
    ("api/look", {"model": 0}, "text"),
    ("api/saliency", {"position": 0}, "text"),
    ("api/saliency", {"text": "abc"}, "position"),
    ("api/saliency", {"text": "abc", "position": None}, "position"),
    ("api/compare", {}, "text"),
    ("api/write", {"prompt": None}, "prompt"),
    ("api/write", {"prompt": ""}, "prompt"),
    ("api/write", {"length": ""}, "length"),
    ("api/write", {"top_k": 1.5}, "top_k"),
    ("api/write", {"seed": 2**64}, "seed"),
    ("api/write", {"seed": 1e300}, "seed"),
    ("api/look", {"text": "ab", "state": None}, "state"),
    ("api/look", {"text": "ab", "layer": "0"}, "layer"),
    ("api/look", {"text": "ab", "unit": 16}, "unit"),
    ("api/look", {"text": "ab", "unit": -1}, "unit"),
    ("api/look", {"text": "ab", "layer": 1.5}, "layer"),
    ("api/look", {"text": "ab", "model": "x" * 100_000}, "model"),
    ("api/look", {"text": "ab", "model": None}, "model"),
    ("api/compare", {"text": ""}, "text"),
    ("api/compare", {"text": "a"}, "text"),
])
def test_a_missing_or_out_of_range_field_is_a_4xx_naming_it(served, route, body, field):
    status, message = refusal(served, route, json.dumps(body).encode())
    assert 400 <= status < 500 and message.startswith(f"{field} "), (status, message)


@pytest.mark.parametrize("text", ["", "a", "{}"])
def test_saliency_of_a_text_too_short_to_predict_says_so(served, text):
    status, message = refusal(served, "api/saliency", json.dumps({"text": text, "position": 0}).encode())
    assert status == 400 and message.startswith("text ") and "needs two bytes" in message and "[0, -" not in message


@pytest.mark.parametrize("route", VALID)
def test_another_content_type_or_a_wrong_method_or_path_is_a_json_4xx(served, route):
    status, message = refusal(served, route, json.dumps(VALID[route]).encode(), {"Content-Type": "text/plain"})
    assert status == 415 and "application/json" in message
    url, log = served
    for response in (httpx.get(url + route), httpx.post(url + route + "/x", json={}), httpx.put(url + route)):
        assert 400 <= response.status_code < 500 and response.json()["error"], response.text
    assert log.read_text() == ""


def peak_rss(pid: int) -> int:
    """The process's peak resident memory so far (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM in /proc/{pid}/status")


# what hostile bodies may add to the server's peak: MAX_BODY read, decoded and parsed (3.6 MB measured; 52 MB when
# MAX_BODY was 2 MB, by a body of "[{},{},...]")
MEMORY_BOUND = 16 * 2**20


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the server's peak memory from /proc")
def test_10_mb_prompts_and_texts_leave_the_servers_memory_bounded(tmp_path):
    # a fresh server: the peak must not include what other tests sent
    with serving("--ckpt_path", str(SHAKESPEARE_CKPT), log=tmp_path / "stderr.txt") as (url, proc):
        for route, body in VALID.items():  # warm: the routes' first use allocates (imports, the model's buffers)
            assert httpx.post(url + route, json=body, timeout=60).status_code == 200
        before = peak_rss(proc.pid)
        for route, (field, _) in TEXT_FIELD.items():
            huge = json.dumps({**VALID[route], field: "a" * 10_000_000}).encode()
            chunked = iter([huge[i : i + 2**16] for i in range(0, len(huge), 2**16)])
            escaped = with_field(route, field, '"' + r"\u00e9" * ((MAX_BODY - 200) // 6) + '"')  # 6 bytes a char
            many = with_field(route, field, "[" + ",".join(["{}"] * ((MAX_BODY - 200) // 3)) + "]")  # ~45 MB of dicts
            for body in (huge, chunked, escaped, many):
                assert httpx.post(url + route, content=body, headers=JSON, timeout=60).status_code in (400, 413)
        grown = peak_rss(proc.pid) - before
    print(f"peak RSS {before / 2**20:.0f} MB before, +{grown / 2**20:.1f} MB after 16 hostile bodies")
    assert grown < MEMORY_BOUND, f"the server's peak memory grew by {grown / 2**20:.0f} MB"

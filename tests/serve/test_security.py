import http.client
import sys
import threading
from urllib.parse import urlsplit

import httpx
import pytest

from tests.serve.conftest import SHAKESPEARE_CKPT, in_process

OPENED: list[str] = []
WATCHING = threading.Event()


def _audit(event: str, args: tuple) -> None:
    if WATCHING.is_set() and event in ("open", "os.listdir", "os.scandir"):
        OPENED.append(str(args[0]))


sys.addaudithook(_audit)  # Python's audit events: every file this process opens (a hook cannot be removed:
# it records only while WATCHING is set)

ATTEMPTS = ["/../../etc/passwd", "/..%2f..%2fetc%2fpasswd", "/%2e%2e/%2e%2e/etc/passwd", "/app.js/../../etc/passwd",
            "/static/../../../../etc/passwd", "//etc/passwd", "/etc/passwd", "/page/index.html", "/app.py",
            "/api/../../etc/passwd", "/index.html?file=/etc/passwd"]


def raw_get(url: str, path: str) -> int:
    """GET ``path`` byte for byte (http.client sends it as given: no client folds the dots)."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        connection.putrequest("GET", path, skip_accept_encoding=True)
        connection.endheaders()
        response = connection.getresponse()
        body = response.read()
        assert b"root:" not in body
        return response.status
    finally:
        connection.close()


def test_no_path_from_the_browser_is_ever_opened(tmp_path):
    with in_process(SHAKESPEARE_CKPT) as url:
        assert httpx.post(url + "api/look", json={"text": "ab"}).status_code == 200  # the libraries' lazy imports
        OPENED.clear()
        WATCHING.set()
        try:
            codes = {path: raw_get(url, path) for path in ATTEMPTS}
            looked = httpx.post(url + "api/look", json={"model": "/etc/passwd", "text": "ab"})
            wrote = httpx.post(url + "api/write", json={"model": "../../etc/passwd"})
            page = httpx.get(url)
        finally:
            WATCHING.clear()
    assert codes["/index.html?file=/etc/passwd"] == 404
    assert all(code == 404 for code in codes.values()), codes
    assert looked.status_code == wrote.status_code == 400 and "model must be an index" in looked.json()["error"]
    assert page.status_code == 200 and "charlm serve" in page.text
    # nothing opened but Python's own modules (imported on first use): the page's files were read when the app
    # was built, and no request names a file
    assert [p for p in OPENED if not p.startswith((sys.prefix, sys.base_prefix))] == [], OPENED


def test_the_page_loads_nothing_from_the_internet(server):
    for path in ("", "app.js"):
        body = httpx.get(server + path).text
        assert "http://" not in body and "https://" not in body and "//cdn" not in body


@pytest.mark.parametrize(("route", "body", "code", "words"), [
    ("api/look", b'{"text": "' + b"a" * 2_000_001 + b'"}', 413, ["at most 2,000,000"]),
    ("api/look", b"[1, 2]", 400, ["JSON object"]),
    ("api/look", b"{not json", 400, ["not JSON"]),
    ("api/compare", b'{"text": "' + b"a" * 20_001 + b'"}', 413, ["20,001 bytes", "at most 20,000"]),
    ("api/compare", b'{"text": 5}', 400, ["text must be a string"]),
    ("api/saliency", b'{"text": "abc", "position": "1"}', 400, ["position must be"]),
])
def test_a_request_over_a_limit_is_refused_with_a_message(server, route, body, code, words):
    response = httpx.post(server + route, content=body, headers={"Content-Type": "application/json"}, timeout=60)
    assert response.status_code == code, response.text
    for word in words:
        assert word in response.json()["error"]


def test_a_1_mb_paste_is_refused_by_the_server_not_crashed(server):
    paste = "To be, or not to be, that is the question:\n" * 24_000  # ~1 MB
    response = httpx.post(server + "api/look", json={"text": paste}, timeout=60)
    assert response.status_code == 413 and "at most 5,000" in response.json()["error"]
    assert httpx.post(server + "api/look", json={"text": paste[:5000]}, timeout=60).status_code == 200

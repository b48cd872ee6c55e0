import http.client
import sys
import threading
from urllib.parse import urlsplit

import httpx
import pytest

from charlm.serve.limits import MAX_BODY
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
    from charlm.serve.app import PAGE_FILES

    for path, (_, kind) in PAGE_FILES.items():
        got = httpx.get(server + path.lstrip("/"))
        assert got.status_code == 200 and got.headers["content-type"] == kind, path
        body = got.text.replace('xmlns="http://www.w3.org/2000/svg"', "")  # the SVG namespace: a name, not a load
        assert "http://" not in body and "https://" not in body and "//cdn" not in body, path
        assert "@import" not in body and "url(http" not in body, path


@pytest.mark.parametrize(("route", "body", "code", "words"), [
    ("api/look", b'{"text": "' + b"a" * (MAX_BODY + 1) + b'"}', 413, [f"at most {MAX_BODY:,}", "text at most 5,000"]),
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


def raw(url: str, method: str, path: str, headers: dict[str, str], body: bytes = b"") -> tuple[int, str]:
    """One request with exactly these headers (Host included): (status, body)."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for name, value in headers.items():
            connection.putheader(name, value)
        if body or method == "POST":
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def test_another_host_name_is_refused_so_dns_rebinding_reads_nothing(server):
    port = urlsplit(server).port
    for host in (f"evil.example:{port}", "evil.example", f"127.0.0.1.evil.example:{port}", f"localhost.:{port}", ""):
        for path in ("/", "/api/models", "/app.js"):
            code, body = raw(server, "GET", path, {"Host": host} if host else {})
            assert code in (400, 421), (host, path, code)
            assert "charlm" not in body or "DNS rebinding" in body
    code, body = raw(server, "GET", "/api/models", {"Host": f"evil.example:{port}"})
    assert "DNS rebinding" in body and "127.0.0.1" in body
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LOCALHOST:{port}", f"[::1]:{port}", "127.0.0.1"):
        assert raw(server, "GET", "/api/models", {"Host": host})[0] == 200, host


def test_the_host_given_with_host_is_accepted_and_any_address_on_every_interface():
    from charlm.serve.guard import Guard

    def refused(hosts: list[str], host: str) -> int | None:
        scope = {"type": "http", "method": "GET", "scheme": "http", "headers": [(b"host", host.encode())]}
        refusal = Guard(None, hosts)._refusal(scope)
        return refusal and refusal[0]

    assert refused(["127.0.0.2"], "127.0.0.2:8000") is None and refused(["127.0.0.2"], "evil.example:8000") == 421
    assert refused(["box.lan"], "box.lan:8000") is None and refused(["::1"], "[::1]:80") is None
    assert refused(["0.0.0.0"], "192.168.1.5:8000") is None and refused(["0.0.0.0"], "[fe80::1]:8000") is None
    assert refused(["0.0.0.0"], "evil.example:8000") == 421  # a name on every interface: this machine's only
    assert refused(["127.0.0.1"], "192.168.1.5:8000") == 421


def test_a_cross_site_post_is_refused_before_any_work(server):
    host = urlsplit(server).netloc
    before = httpx.get(server + "api/status").json()
    write = b'{"model": 0, "length": 50, "seed": 1}'
    for headers, code, word in [
        ({"Content-Type": "text/plain"}, 415, "application/json"),  # a form or text/plain: no CORS preflight
        ({"Content-Type": "application/x-www-form-urlencoded"}, 415, "application/json"),
        ({}, 415, "no Content-Type"),
        ({"Content-Type": "application/json", "Origin": "http://evil.example"}, 403, "another site"),
        ({"Content-Type": "application/json", "Origin": "null"}, 403, "another site"),
        ({"Content-Type": "application/json", "Origin": f"https://{host}"}, 403, "another site"),
        ({"Content-Type": "text/plain", "Origin": "http://evil.example"}, 403, "another site"),
    ]:
        for route in ("/api/write", "/api/look", "/api/compare", "/api/saliency"):
            got, body = raw(server, "POST", route, {"Host": host, **headers}, write)
            assert got == code and word in body, (route, headers, got, body)
    after = httpx.get(server + "api/status").json()
    assert after["started"] == before["started"] and after["analyses"]["done"] == before["analyses"]["done"]
    ok = {"Host": host, "Origin": f"http://{host}", "Content-Type": "application/json; charset=utf-8"}
    assert raw(server, "POST", "/api/look", ok, b'{"text": "ab"}')[0] == 200  # the page's own requests


@pytest.mark.parametrize("body", [b'{"length": NaN}', b'{"length": Infinity}', b'{"length": 1e400}',
                                  b'{"top_k": Infinity}', b'{"seed": NaN}', b'{"temperature": -Infinity}',
                                  b'{"top_p": 1e999}'])
def test_a_number_that_is_not_finite_is_refused_with_a_message(server, body):
    response = httpx.post(server + "api/write", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400, response.text
    assert "finite" in response.json()["error"]


def test_the_page_forbids_other_sources_and_sniffing(server):
    for path in ("", "app.js"):
        headers = httpx.get(server + path).headers
        assert headers["x-content-type-options"] == "nosniff"
        policy = headers["content-security-policy"]
        assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy and "script-src" not in policy

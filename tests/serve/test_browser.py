"""The page in a real browser: Debian's chromium, driven headless by Playwright (its driver only: no browser
download). Screenshots go to the test's folder, or to $CHARLM_SCREENSHOTS when set."""

import contextlib
import os
import shutil
import time
from pathlib import Path

import pytest

from charlm.cli.commands.sample import sample
from tests.serve.conftest import SHAKESPEARE_CKPT, serving

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium here (apt-get install chromium)")


@pytest.fixture
def page(code_ckpt, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (pip install playwright)")
    with serving("--ckpt_path", str(SHAKESPEARE_CKPT), str(code_ckpt)) as (url, _), sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            tab = browser.new_page(viewport={"width": 1280, "height": 900})
            errors = []
            tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            tab.on("pageerror", lambda e: errors.append(str(e)))
            tab.goto(url)
            tab.wait_for_selector("body[data-ready='1']")
            yield tab
            # the page's Content-Security-Policy blocks nothing it needs (a blocked style or script is logged)
            assert not [e for e in errors if "Content Security Policy" in e or "Refused" in e], errors
        finally:
            browser.close()


def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("CHARLM_SCREENSHOTS", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def wait_until(tab, expression: str, timeout_s: float = 60) -> None:
    """Poll a JavaScript expression until it is true. (Playwright's wait_for_function evaluates its predicate
    with eval inside the page, which the page's Content-Security-Policy forbids; evaluate does not.)"""
    deadline = time.monotonic() + timeout_s
    while not tab.evaluate(expression):
        assert time.monotonic() < deadline, f"still false after {timeout_s} s: {expression}"
        tab.wait_for_timeout(50)


def text_of(tab, selector: str) -> str:
    return tab.eval_on_selector(selector, "e => e.textContent")


def test_write_streams_into_the_page_and_stop_ends_it(page, tmp_path):
    page.fill("#prompt", "ROMEO:\n")
    page.fill("#length", "10000")
    page.fill("#seed", "5")
    page.click("#generate")
    out = ".sample pre span:not(.p)"
    wait_until(page, f"(document.querySelector('{out}')?.textContent.length ?? 0) > 20")
    early = text_of(page, out)
    wait_until(page, f"document.querySelector('{out}').textContent.length > {len(early) + 200}")
    later = text_of(page, out)
    assert later.startswith(early) and len(later) > len(early)  # text arrives piece by piece
    page.screenshot(path=str(shots(tmp_path) / "write_streaming.png"))
    page.click("#stop")
    page.wait_for_selector(".sample[data-state='over']")
    assert "stopped" in text_of(page, ".sample h3")
    stopped = text_of(page, out)
    assert len(stopped) < 10_000
    assert sample(str(SHAKESPEARE_CKPT), prompt="ROMEO:\n", length=len(stopped), temperature=0.8, seed=5,
                  echo_prompt=False)[0] == stopped  # what the page shows is charlm sample's text

    page.fill("#temperatures", "0.3, 1.0, 1.5")
    page.fill("#length", "300")
    page.fill("#seed", "")  # the page draws one seed for the three
    page.click("#generate")
    wait_until(page, "document.querySelectorAll('.sample[data-state=\"over\"]').length === 3")
    heads = page.eval_on_selector_all(".sample h3", "es => es.map(e => e.textContent)")
    assert [h.split(" \u00b7 ")[0] for h in heads] == ["temperature 0.3", "temperature 1", "temperature 1.5"]
    assert all("done" in h for h in heads)
    seeds = {h.split(" \u00b7 ")[1] for h in heads}
    assert len(seeds) == 1 and seeds.pop().split()[1].isdigit(), heads  # side by side: one seed
    page.screenshot(path=str(shots(tmp_path) / "write_side_by_side.png"), full_page=True)


def test_look_inside_colours_by_the_chosen_unit_and_explains_a_character(page, tmp_path):
    page.click("nav button[data-view='look']")
    page.wait_for_selector("#look-out span.ch")
    colours = "Array.from(document.querySelectorAll('#look-out span.ch')).map(e => e.style.background).join('|')"
    before = page.evaluate(colours)
    page.select_option("#look-state", "cell")
    page.fill("#look-unit", "7")
    wait_until(page, f"{colours} !== {before!r}")
    page.screenshot(path=str(shots(tmp_path) / "look_unit.png"))
    assert page.locator("#ranking tr.pick").count() > 0  # the units visualize --find ranks

    page.hover("#look-out span.ch >> nth=10")
    assert page.is_visible("#tip") and "next:" in text_of(page, "#tip")
    page.screenshot(path=str(shots(tmp_path) / "look_hover.png"))
    page.click("#look-out span.ch >> nth=40")
    wait_until(page, "document.querySelector('#look-note').textContent.includes('Saliency')")
    page.screenshot(path=str(shots(tmp_path) / "look_saliency.png"))

    page.select_option("#colour-by", "surprise")
    assert page.evaluate(colours) != before
    page.fill("#look-text", "Speak, speak.")  # typing recolours
    wait_until(page, "document.querySelectorAll('#look-out span.ch').length === 13")

    held = []  # looks held back, to see what the page shows while one is being computed
    page.route("**/api/look", lambda route: held.append(route))
    page.fill("#look-text", "Speak, speak. " * 500)  # 7,000 bytes: over Look inside's 5,000
    wait_until(page, "document.querySelector('#look-busy').textContent.includes('reading 5,000 bytes')")
    assert "only its start is shown" in text_of(page, "#look-note")  # at once, not when the answer comes
    assert "busy" in page.get_attribute("#look-out", "class")
    page.fill("#look-text", "Speak, speak, speak.")  # typed on: the held look is aborted, a new one sent
    wait_until(page, "document.querySelector('#look-busy').textContent.includes('reading 20 bytes')")
    page.unroute("**/api/look")
    for route in held:
        with contextlib.suppress(Exception):  # an aborted request cannot be continued: that is the point
            route.continue_()
    wait_until(page, "document.querySelectorAll('#look-out span.ch').length === 20")
    wait_until(page, "document.querySelector('#look-busy').textContent === ''")
    assert text_of(page, "#look-note") == "" and "busy" not in page.get_attribute("#look-out", "class")


def test_a_newer_click_or_a_new_text_aborts_the_saliency_under_way(page):
    page.click("nav button[data-view='look']")
    page.wait_for_selector("#look-out span.ch")
    held = []  # saliencies held back, so that each is still under way when the next action comes
    page.route("**/api/saliency", lambda route: held.append(route))

    def aborted(position: int):
        return page.expect_event("requestfailed", predicate=lambda r: r.url.endswith("/api/saliency")
                                 and r.post_data_json["position"] == position)

    page.click("#look-out span.ch >> nth=40")
    with aborted(40):
        page.click("#look-out span.ch >> nth=30")  # another character: the first saliency is no longer wanted
    with aborted(30):
        page.fill("#look-text", "Speak, speak.")  # another text: neither is
    page.unroute("**/api/saliency")
    for route in held:
        with contextlib.suppress(Exception):  # an aborted request cannot be continued
            route.continue_()
    wait_until(page, "document.querySelectorAll('#look-out span.ch').length === 13")
    page.click("#look-out span.ch >> nth=5")  # the view still answers the next click
    wait_until(page, "document.querySelector('#look-note').textContent.includes('Saliency')")


def test_who_wrote_this_gives_the_verdict(page, tmp_path):
    page.click("nav button[data-view='who']")
    page.fill("#who-text", "First Citizen:\nBefore we proceed any further, hear me speak.\n")
    page.click("#who-run")
    wait_until(page, "document.querySelector('#verdict').textContent.includes('Most likely')")
    assert page.locator("#who-out .row").count() == 2
    page.screenshot(path=str(shots(tmp_path) / "who.png"), full_page=True)


def test_the_page_says_so_when_the_models_cannot_be_had(page, tmp_path):
    page.route("**/api/models", lambda route: route.abort())  # the server gone: a network error
    page.reload()
    page.wait_for_selector("body[data-ready='failed']")
    assert "could not reach charlm serve" in text_of(page, "#start-error")
    assert "Start it again, then reload this page" in text_of(page, "#start-error")
    assert page.is_disabled("#generate") and page.is_disabled("#who-run")
    page.screenshot(path=str(shots(tmp_path) / "no_models.png"))
    page.unroute("**/api/models")
    page.route("**/api/models", lambda route: route.fulfill(status=421, content_type="application/json",
                                                             body='{"error": "Host evil.example is not this server"}'))
    page.reload()  # refused (a non-2xx answer): the server's own message
    page.wait_for_selector("body[data-ready='failed']")
    assert "refused the list of models (Host evil.example is not this server)" in text_of(page, "#start-error")
    page.unroute("**/api/models")
    page.reload()
    page.wait_for_selector("body[data-ready='1']")
    assert text_of(page, "#start-error") == "" and not page.is_disabled("#generate")

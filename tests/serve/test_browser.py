"""The page in a real browser: Debian's chromium, driven headless by Playwright (its driver only: no browser
download), at desktop (1280 x 800) and phone (390 x 844, touch) sizes, light and dark, by mouse, by keyboard alone
and by touch, and with the server stopped mid-stream. Screenshots go to the test's folder, or to
$CHARLM_SCREENSHOTS when set."""

import contextlib
import os
import shutil
import signal
import time
from pathlib import Path

import pytest

from charlm.cli.commands.sample import sample
from tests.serve.conftest import SHAKESPEARE_CKPT, serving

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium here (apt-get install chromium)")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
DESKTOP, PHONE = {"width": 1280, "height": 800}, {"width": 390, "height": 844}
STOPPED = "charlm serve stopped \u2014 restart it and reload this page."


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (pip install playwright)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def url(code_ckpt):
    """One server for the module's pages: model 0 the Shakespeare fixture, 1 the code model."""
    with serving("--ckpt_path", str(SHAKESPEARE_CKPT), str(code_ckpt)) as (url, _):
        yield url


@contextlib.contextmanager
def opened(browser, url: str, viewport: dict = DESKTOP, scheme: str = "light"):
    """The page in a fresh tab of ``viewport`` and colour scheme (a phone: touch), ready; afterwards, no console
    error (the page's Content-Security-Policy blocked nothing, no file was missing: the favicon included)."""
    phone = viewport["width"] < 600
    context = browser.new_context(viewport=viewport, color_scheme=scheme, is_mobile=phone, has_touch=phone)
    try:
        tab = context.new_page()
        errors, missing = [], []
        tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        tab.on("pageerror", lambda e: errors.append(str(e)))
        tab.on("response", lambda r: missing.append(f"{r.status} {r.url}") if r.status >= 400 else None)
        tab.goto(url)
        tab.wait_for_selector("body[data-ready='1']")
        yield tab
        assert not [e for e in errors if "Content Security Policy" in e or "Refused" in e or "404" in e], errors
        assert not [m for m in missing if not m.endswith("/api/models")], missing  # routed to fail on purpose
    finally:
        context.close()


@pytest.fixture
def page(browser, url):
    with opened(browser, url) as tab:
        yield tab


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


def luminance(css: str) -> float:
    """The relative luminance (WCAG) of a computed CSS colour, 'rgb(r, g, b)' or 'rgba(...)'."""
    channels = [float(v) / 255 for v in css[css.index("(") + 1 : css.index(")")].split(",")[:3]]
    r, g, b = (c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: str, b: str) -> float:
    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def style(tab, selector: str, prop: str) -> str:
    return tab.eval_on_selector(selector, f"e => getComputedStyle(e).{prop}")


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("size", ["desktop", "phone"])
def test_the_page_at_desktop_and_phone_sizes_in_light_and_dark(browser, url, size, scheme, tmp_path):
    with opened(browser, url, DESKTOP if size == "desktop" else PHONE, scheme) as tab:
        background = style(tab, "body", "backgroundColor")
        assert (luminance(background) < 0.05) == (scheme == "dark"), background  # prefers-color-scheme is followed
        for selector in ("body", "#description", ".card", "#prompt"):
            assert contrast(style(tab, selector, "color"), style(tab, ".card", "backgroundColor")) >= 7, selector
        assert contrast(style(tab, "#generate", "color"), style(tab, "#generate", "backgroundColor")) >= 4.5
        assert "bpc" in text_of(tab, "#description") and "bits per character" in text_of(tab, "#description")
        # the limits live in the footer, not the header: the top bar is one row, at a phone's width too
        assert tab.eval_on_selector("header.top", "e => e.getBoundingClientRect().height") <= 64
        assert "limit" not in text_of(tab, "header.top").lower()
        assert tab.evaluate("document.documentElement.scrollWidth <= innerWidth")  # nothing wider than the screen
        chips = tab.eval_on_selector_all("#write-examples .chip", "es => es.map(e => e.textContent)")
        assert "ROMEO:" in chips and not any(c in chip for chip in chips for c in "{#_(")  # a play's examples
        assert tab.evaluate("fetch('/favicon.svg').then(r => r.ok && r.headers.get('content-type'))") == "image/svg+xml"
        tab.click("#write-examples .chip >> text=ROMEO:")  # an example writes at once
        tab.wait_for_selector(".sample[data-state='over']")
        assert text_of(tab, ".sample pre .p") == "ROMEO:\n" and "\u00b7 done" in tab.inner_text(".sample h3")
        assert "bytes/s" not in text_of(tab, ".sample h3") and "bytes/s" in text_of(tab, ".sample .stats")
        tab.screenshot(path=str(shots(tmp_path) / f"serve-{size}-{scheme}.png"))


def test_the_temperature_box_is_disabled_and_explained_while_side_by_side_has_values(page):
    assert page.is_enabled("#temperature") and not page.is_visible("#temperature-rule")
    page.fill("#temperatures", "0.5, 1.2")
    assert page.is_disabled("#temperature") and "0.5, 1.2" in text_of(page, "#temperature-rule")
    assert page.is_visible("#temperature-rule") and "not used" in text_of(page, "#temperature-rule")
    page.fill("#temperatures", "")
    assert page.is_enabled("#temperature") and not page.is_visible("#temperature-rule")


def test_the_saliency_note_goes_when_saliency_is_switched_off(page):
    page.click("nav button[data-view='look']")
    page.wait_for_selector("#look-out span.ch")
    note = "document.querySelector('#look-note').textContent"
    page.click("#look-out span.ch >> nth=20")
    wait_until(page, f"{note}.includes('Saliency')")
    page.click("#look-out span.ch >> nth=20")  # again: off, and its note with it
    assert "Saliency" not in page.evaluate(note) and page.locator("#look-out .sel").count() == 0
    page.click("#look-out span.ch >> nth=20")
    wait_until(page, f"{note}.includes('Saliency')")
    page.select_option("#colour-by", "surprise")  # another colouring: saliency off
    assert "Saliency" not in page.evaluate(note) and page.locator("#look-out .sel").count() == 0
    assert "bits of surprise" in text_of(page, "#look-legend")


def press_until(tab, key: str, expression: str, most: int = 40) -> None:
    """Press ``key`` until the JavaScript ``expression`` (about document.activeElement) is true."""
    for _ in range(most):
        if tab.evaluate(f"(a => {expression})(document.activeElement)"):
            return
        tab.keyboard.press(key)
    raise AssertionError(f"{most} x {key} and still not: {expression}")


def test_every_view_works_by_keyboard_alone(page, tmp_path):
    press_until(page, "Tab", "a.id === 'prompt'")
    page.keyboard.press("Control+A")
    page.keyboard.type("ROMEO:\n")
    press_until(page, "Tab", "a.id === 'length'")
    page.keyboard.press("Control+A")
    page.keyboard.type("60")
    page.keyboard.press("Control+Enter")  # generates, from any field of the view
    page.wait_for_selector(".sample[data-state='over']")
    assert "done" in text_of(page, ".sample h3") and len(text_of(page, ".sample pre span:not(.p)")) == 60

    press_until(page, "Shift+Tab", "a.dataset.view === 'write'")
    page.keyboard.press("Tab")  # the next tab
    page.keyboard.press("Enter")
    page.wait_for_selector("#look-out span.ch")
    press_until(page, "Tab", "a.classList.contains('ch')")  # one tab stop in the text, at its first character
    assert page.evaluate("document.activeElement.dataset.t") == "0"
    assert page.is_visible("#tip") and "next:" in text_of(page, "#tip") and "Enter" in text_of(page, "#tip")
    for _ in range(6):
        page.keyboard.press("ArrowRight")
    t = page.evaluate("document.activeElement.dataset.t")
    assert t == "6" and text_of(page, "#tip").startswith('"C"')  # 'First C': the tooltip follows the focus
    page.keyboard.press("Enter")  # saliency of the focused character
    wait_until(page, "document.querySelector('#look-note').textContent.includes('Saliency')")
    assert page.evaluate("document.activeElement.classList.contains('sel')")  # focus kept across the redraw
    page.screenshot(path=str(shots(tmp_path) / "look_keyboard.png"))
    page.keyboard.press("Enter")  # and off
    assert "Saliency" not in text_of(page, "#look-note")
    page.keyboard.press("Tab")  # out of the text: the units' table, a row a stop
    assert page.evaluate("document.activeElement.matches('#ranking tr.pick')")
    row = page.evaluate("Array.from(document.activeElement.cells).map(c => c.textContent)")
    page.keyboard.press("Enter")
    wait_until(page, f"document.querySelector('#look-legend').textContent.includes('unit {row[3]}')")
    assert page.input_value("#look-unit") == row[3] and page.input_value("#look-state") == row[1]
    assert page.evaluate("document.activeElement.matches('#ranking tr.pick')")  # still there for the next one

    press_until(page, "Shift+Tab", "a.dataset.view === 'look'")
    page.keyboard.press("ArrowRight")  # tabs: arrows move between them
    assert page.is_visible("#who-text")
    press_until(page, "Tab", "a.id === 'who-text'")
    page.keyboard.type("First Citizen:\nBefore we proceed any further, hear me speak.\n")
    page.keyboard.press("Control+Enter")
    wait_until(page, "document.querySelector('#verdict').textContent.includes('Most likely')")


def test_a_tap_on_a_phone_shows_the_guesses_only_and_saliency_has_its_own_button(browser, url, tmp_path):
    with opened(browser, url, PHONE) as tab:
        asked = []
        tab.on("request", lambda r: asked.append(r) if r.url.endswith("/api/saliency") else None)
        tab.tap("nav button[data-view='look']")
        tab.wait_for_selector("#look-out span.ch")
        tab.tap("#look-out span.ch >> nth=60")
        assert tab.is_visible("#tip") and "next:" in text_of(tab, "#tip")
        tab.wait_for_timeout(300)
        assert asked == [] and tab.locator("#look-out .sel").count() == 0  # a tap is not a saliency
        tip = tab.eval_on_selector("#tip", "e => e.getBoundingClientRect().toJSON()")
        char = tab.eval_on_selector("#look-out span.ch >> nth=60", "e => e.getBoundingClientRect().toJSON()")
        assert char["bottom"] <= tip["top"] or char["top"] >= tip["bottom"], (char, tip)  # it covers no character
        assert tip["top"] >= 0 and tip["bottom"] <= PHONE["height"]
        tab.screenshot(path=str(shots(tmp_path) / "look_phone_tap.png"))
        tab.tap("#tip button[data-act='saliency']")
        wait_until(tab, "document.querySelector('#look-note').textContent.includes('Saliency')")
        assert len(asked) == 1 and asked[0].post_data_json["position"] == 60
        assert "Hide saliency" in text_of(tab, "#tip")
        tab.tap("#tip button[data-act='close']")
        assert not tab.is_visible("#tip")


def test_who_wrote_this_marks_the_bytes_left_out_in_the_text_as_pasted_and_shows_both_heatmaps(page, tmp_path):
    page.click("nav button[data-view='who']")
    passage = "First Citizen:\nBefore we proceed any further, hear me speak.\nos.add_dll_directory(path)\n\nAll:\n" * 3
    page.fill("#who-text", passage)
    page.click("#who-run")
    wait_until(page, "document.querySelector('#verdict').textContent.includes('Most likely')")
    shown = page.eval_on_selector_all("#who-out .text", "es => es.map(e => e.textContent)")
    assert shown == [passage.replace("\n", "\u23ce\n")] * 2  # as pasted: nothing deleted
    skipped = page.eval_on_selector_all("#who-out .text", "es => es.map(e => "
                                        "Array.from(e.querySelectorAll('.skip')).map(s => s.textContent).join(''))")
    assert skipped == ["__()" * 3] * 2  # what the Shakespeare model never saw, marked in place for both
    assert "Struck through" in text_of(page, "#who-note") and "bpc" in text_of(page, "#verdict")
    boxes = page.eval_on_selector_all("#who-out .text", "es => es.map(e => e.getBoundingClientRect().toJSON())")
    assert all(b["top"] >= 0 and b["bottom"] <= DESKTOP["height"] for b in boxes), boxes  # both, without scrolling
    page.screenshot(path=str(shots(tmp_path) / "who_skipped.png"))


@pytest.mark.parametrize("how", ["ctrl-c", "kill"])
def test_the_page_says_in_words_when_the_server_stops_mid_stream(browser, slow_ckpt, how, tmp_path):
    log = tmp_path / "stderr.txt"
    with serving("--ckpt_path", str(slow_ckpt), log=log) as (url, proc), opened(browser, url) as tab:
        tab.fill("#prompt", "a")
        tab.fill("#length", "10000")
        tab.click("#generate")
        wait_until(tab, "(document.querySelector('.sample pre span:not(.p)')?.textContent.length ?? 0) > 20")
        start = time.monotonic()
        proc.send_signal(signal.SIGINT if how == "ctrl-c" else signal.SIGKILL)
        tab.wait_for_selector(".sample[data-state='over']")
        assert tab.get_attribute(".sample", "data-end") == "interrupted"
        assert "interrupted" in text_of(tab, ".sample h3") and STOPPED in text_of(tab, ".sample .why")
        assert tab.is_visible("#server-gone") and STOPPED in text_of(tab, "#server-gone")
        assert tab.is_disabled("#generate") and tab.is_disabled("#stop")
        tab.click("nav button[data-view='look']")  # every view says so, in the same words
        wait_until(tab, "document.querySelector('#look-error').textContent !== ''")
        assert text_of(tab, "#look-error") == STOPPED
        body = tab.evaluate("document.body.innerText")
        assert "Failed to fetch" not in body and "network error" not in body.lower()
        assert tab.evaluate("getComputedStyle(document.querySelector('#samples')).opacity") != "1"  # stale: dimmed
        tab.screenshot(path=str(shots(tmp_path) / f"server_stopped_{how}.png"))
        proc.wait(timeout=30)
        took = time.monotonic() - start
    if how == "ctrl-c":
        assert proc.returncode == 130 and took < 5, (proc.returncode, took)  # 5: the page's checks come first
        assert log.read_text() == ""  # no traceback

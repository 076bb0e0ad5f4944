"""Consent, the back button and a refused origin, in real Chromium against a real `kairos serve` (issue 14).

Each test checks what a store operator or a visitor would notice: the page
views and exits the server counted, the offer on the screen, where the back
button goes, and what the store's console shows.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest
import yaml
from playwright.sync_api import expect

from conftest import STEADY_DEMO_RULES, connected, exit_through_the_top, free_port

PRODUCT = "/demo/products/linen-shirt"
OVERLAY = "#kairos-host .k-overlay"


class StorePage:
    """One page of a store on a port of its own, with the snippet's script tag and nothing else."""

    def __init__(self, kairos_base: str) -> None:
        body = (f'<!doctype html><html><head><title>Shop</title>'
                f'<script src="{kairos_base}/k.js" data-site="shop" async></script></head>'
                '<body><h1>A shop Kairos does not serve</h1></body></html>').encode()

        class Page(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.base = f"http://127.0.0.1:{free_port()}"
        self.httpd = ThreadingHTTPServer(("127.0.0.1", int(self.base.rsplit(":", 1)[1])), Page)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    """The demo's rules (no experiment: conftest._steady) with the default 3 s arming of exit intent, and the back-button exit on."""
    doc = yaml.safe_load(STEADY_DEMO_RULES.read_text())
    doc["track"] = {"exit_back": True}
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    return path


@pytest.fixture
def store_pages() -> Iterator[list[StorePage]]:
    made: list[StorePage] = []
    yield made
    for s in made:
        s.close()


@pytest.mark.browser
def test_a_refused_origin_stops_after_one_handshake_shows_nothing_and_says_so_once(serve, page, store_pages):
    server = serve("memory", extra=["--allowed-origin", "https://shop.example"])
    store_pages.append(store := StorePage(server.base))
    handshakes: list[str] = []
    console: list[str] = []
    page.on("websocket", lambda ws: handshakes.append(ws.url))
    page.on("console", lambda m: console.append(m.text))
    page.goto(store.base + "/")
    page.wait_for_function("() => window.kairos && window.kairos.state === 'closed'", timeout=10_000)
    # a snippet that kept retrying would try again within 1 s, then 1.5 s, 2.5 s (its backoff's
    # first steps): 4 s is room for three more tries
    page.wait_for_timeout(4000)
    assert len(handshakes) <= 2 and handshakes, handshakes
    assert page.evaluate("window.kairos.state") == "closed"
    assert page.evaluate("window.kairos.sid") is None
    ours = [line for line in console if "kairos" in line.lower() or "websocket" in line.lower()]
    assert ours == ["[kairos] 4003: origin not allowed"], console
    assert page.locator("#kairos-host").count() == 0, "nothing shown"
    assert server.api("/api/sessions").json() == {"sessions": []}


@pytest.mark.browser
def test_consent_after_a_move_in_the_app_is_one_page_view_and_arms_exit_intent_from_consent(serve, page, rules):
    server = serve("redis", rules)
    page.goto(server.base + PRODUCT + "?consent=required")
    page.wait_for_function("() => window.kairos && window.kairos.state === 'idle'")
    page.evaluate("history.pushState({}, '', '/demo/products/oxford-shirt')")  # the store's router
    page.evaluate("window.__consentAt = Date.now(); kairos.consent(true)")
    sid = connected(page)
    # the router keeps its scroll position; the snippet adds its back-button entry (same URL) within 1 s
    page.evaluate("history.replaceState({scroll: 120}, '', location.href)")
    page.wait_for_function("() => Date.now() - window.__consentAt >= 3300", timeout=10_000)
    exit_through_the_top(page)
    expect(page.locator(OVERLAY)).to_be_visible(timeout=5000)
    state = server.session_when(sid, lambda s: s["exit_intents"] >= 1)
    assert (state["pages"], state["path"], state["exit_intents"]) == (1, "/demo/products/oxford-shirt", 1)
    views = [e for e in state["log"] if e.get("e") == "page_view"]
    assert len(views) <= 1, views


def landed_with_our_entry(page, server) -> str:
    """Land on a product page from nowhere (a first page of a visit) and wait for the snippet's history entry."""
    page.goto(server.base + PRODUCT)
    sid = connected(page)
    page.wait_for_function("() => history.state && history.state.kairos_back === 1", timeout=5000)
    return sid


def exits(server, sid: str) -> list[str]:
    return [e.get("how") for e in server.session(sid)["log"] if e.get("e") == "exit_intent"]


# Playwright's go_back() moves one entry back, as history.back() does. Chromium's
# back button skips an entry a page added without a user activation (its history
# manipulation intervention) until the visitor has clicked, tapped or typed on the
# page; a visit to another page starts with such a click, as it does here.
@pytest.mark.browser
def test_back_after_a_visit_to_another_page_then_back_again_is_the_exit_and_the_next_back_leaves(serve, page, rules):
    server = serve("memory", rules)
    sid = landed_with_our_entry(page, server)
    related = page.locator("#related-products a").first
    other = related.get_attribute("href")
    related.click()  # a real page load of another product
    page.wait_for_url(server.base + other)
    connected(page)
    page.wait_for_timeout(1500)  # a page reached from the store adds no entry of its own (its tick is 1 s)
    page.go_back()
    assert page.url == server.base + PRODUCT, "the first back returns to the product"
    connected(page)
    page.wait_for_timeout(3200)  # the default 3 s on the page before an exit counts
    assert exits(server, sid) == [], "returning is no exit"
    page.go_back()
    assert page.url == server.base + PRODUCT, "the second back keeps the visitor on the product"
    expect(page.locator(OVERLAY)).to_be_visible(timeout=5000)
    assert exits(server, sid) == ["back"]
    page.go_back()
    assert page.url == "about:blank", "the next back leaves"


@pytest.mark.browser
def test_back_after_a_route_change_in_a_single_page_app_then_back_again_is_the_exit_and_the_next_back_leaves(
        serve, page, rules):
    server = serve("memory", rules)
    sid = landed_with_our_entry(page, server)
    # the store's router: a related product opens without a page load
    page.evaluate("""() => document.querySelectorAll('#related-products a').forEach(a => a.addEventListener('click', e => {
        e.preventDefault(); history.pushState({route: a.pathname}, '', a.pathname) }))""")
    related = page.locator("#related-products a").first
    other = related.get_attribute("href")
    related.click()
    server.session_when(sid, lambda s: s["path"] == other)
    page.go_back()
    assert page.url == server.base + PRODUCT
    state = server.session_when(sid, lambda s: s["pages"] == 3)
    assert state["path"] == PRODUCT
    page.wait_for_timeout(3200)  # the default 3 s on the page before an exit counts
    assert exits(server, sid) == []
    page.go_back()
    assert page.url == server.base + PRODUCT, "the second back keeps the visitor on the product"
    expect(page.locator(OVERLAY)).to_be_visible(timeout=5000)
    assert exits(server, sid) == ["back"]
    assert server.session(sid)["pages"] == 3, "and is no page view"
    page.go_back()
    assert page.url == "about:blank", "the next back leaves"

"""Overlays that leave when the moment passes, in real Chromium (issue 14, acceptance 1).

The store is the test's own: a single-page app on another port (history.pushState
between /shop/basket, /shop/checkout and /shop/p/1) with a strict
Content-Security-Policy, script-src and connect-src naming only 'self' and the
Kairos origin, style-src 'self', no 'unsafe-inline'. It embeds k.js from a real
`kairos serve` that takes that origin only.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest
from playwright.sync_api import expect

from conftest import connected, free_port, login

OVERLAY = "#kairos-host .k-overlay"

RULES = """\
version: 1
track: {batch_ms: 200}
page_types:
  cart: /shop/basket
  checkout: /shop/checkout
  product: /shop/p/*
rules:
  - id: basket-saved
    when: cart
    if: {page_type: cart}
    then: {show: offer, template: offer.html, place: corner, params: {body: Your basket is saved.}}
  - id: free-shipping
    when: add_to_cart
    then: {show: bar, template: bar.html, place: bottom, scope: session, until: [checkout],
           params: {message: Free shipping over 100 EUR.}}
  - id: size-help
    when: page_view
    if: {page_type: product}
    then: {show: chat, template: chat.html, params: {message: Questions about the fit}}
"""

APP_JS = """\
window.__csp = []
addEventListener('securitypolicyviolation', e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI))
window.__cls = 0
new PerformanceObserver(l => l.getEntries().forEach(e => { window.__cls += e.value }))
  .observe({ type: 'layout-shift', buffered: true })
const views = {
  '/shop/basket': '<h1>Your basket</h1><p class="line">Linen shirt, 40 EUR</p>',
  '/shop/checkout': '<h1>Checkout</h1><form><label>Email <input id="email" name="email"></label></form>'
}
function render () {
  const p = location.pathname
  document.getElementById('main').innerHTML = views[p] || '<h1>Product ' + p.split('/').pop() + '</h1>'
}
window.go = p => { history.pushState(null, '', p); render() }
addEventListener('popstate', render)
render()
"""

APP_CSS = "body{margin:0;font:16px sans-serif} header,footer{height:60px;background:#eee} main{min-height:900px;padding:16px}"


class SpaStore:
    """A single-page store on a port of its own, with a strict CSP that names Kairos's origin."""

    def __init__(self, port: int, kairos_base: str) -> None:
        kairos_ws = kairos_base.replace("http://", "ws://")
        csp = (f"default-src 'none'; script-src 'self' {kairos_base}; connect-src 'self' {kairos_base} {kairos_ws}; "
               "style-src 'self'; img-src 'self'")
        html = (f'<!doctype html><html><head><title>Shop</title><link rel="stylesheet" href="/app.css">'
                f'<script src="{kairos_base}/k.js" data-site="shop" async></script>'
                '<script src="/app.js" defer></script></head>'
                '<body><header id="top">Shop</header><main id="main"></main><footer id="foot">Footer</footer>'
                '</body></html>').encode()
        files = {"/app.js": (APP_JS.encode(), "text/javascript"), "/app.css": (APP_CSS.encode(), "text/css")}

        class Page(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
                body, kind = files.get(self.path, (html, "text/html; charset=utf-8"))
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Content-Security-Policy", csp)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.base = f"http://127.0.0.1:{port}"
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Page)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def shop(serve, tmp_path: Path) -> Iterator[tuple[object, SpaStore]]:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    port = free_port()
    server = serve("redis", rules=rules, extra=["--allowed-origin", f"http://127.0.0.1:{port}"])
    store = SpaStore(port, server.base)
    yield server, store
    store.close()


# Where every element of the store's page is, and how much it has shifted (the Layout Instability API).
LAYOUT = """() => ({
  boxes: [...document.body.querySelectorAll('*')].filter(e => e.id !== 'kairos-host')
    .map(e => { const r = e.getBoundingClientRect(); return [e.tagName, r.x, r.y, r.width, r.height] }),
  height: document.scrollingElement.scrollHeight, shift: window.__cls })"""

# Move the app to `path` and time, in the page, how long the overlay stays after pushState (null: it stayed 3 s).
GONE_AFTER_MS = """path => new Promise(done => {
  const root = document.getElementById('kairos-host').shadowRoot
  const t0 = performance.now()
  const mo = new MutationObserver(() => {
    if (!root.querySelector('.k-overlay')) { mo.disconnect(); done(performance.now() - t0) }
  })
  mo.observe(root, { childList: true, subtree: true })
  setTimeout(() => { mo.disconnect(); done(null) }, 3000)
  window.go(path)
})"""


def hidden_lines(server, sid: str) -> list[tuple[str, str]]:
    return [(e["rule"] if "rule" in e else e["oid"].split(".")[0], e.get("why", ""))
            for e in server.session(sid)["log"] if e.get("kind") == "feedback" and e.get("act") == "hidden"]


@pytest.mark.browser
def test_a_page_scoped_card_leaves_at_once_when_the_app_moves_to_checkout(shop, page):
    server, store = shop
    page.goto(store.base + "/shop/basket")
    sid = connected(page)
    page.evaluate("kairos.track('cart', { value: 40, items: 1 })")
    card = page.locator(OVERLAY)
    expect(card).to_be_visible(timeout=10_000)
    expect(card).to_contain_text("Your basket is saved.")
    header = page.evaluate("() => JSON.stringify(document.getElementById('top').getBoundingClientRect())")
    gone_ms = page.evaluate(GONE_AFTER_MS, "/shop/checkout")
    assert gone_ms is not None, "the card stayed over the checkout form"
    assert gone_ms < 100, f"the card left {gone_ms:.1f} ms after pushState"
    expect(card).to_have_count(0)
    assert page.evaluate("() => JSON.stringify(document.getElementById('top').getBoundingClientRect())") == header
    # the snippet said why, and the server counted it once (its page view then finds nothing to take down)
    state = server.session_when(sid, lambda s: s["pages"] == 2 and s["page_type"] == "checkout")
    assert state["onscreen"] is None
    assert hidden_lines(server, sid) == [("basket-saved", "page")]
    assert server.metric("kairos_feedback_total", act="hidden") == 1
    assert page.evaluate("window.__csp") == []


@pytest.mark.browser
def test_an_until_checkout_bar_leaves_when_checkout_starts_and_nothing_moves(shop, page):
    server, store = shop
    page.goto(store.base + "/shop/basket")
    sid = connected(page)
    page.evaluate("kairos.track('add_to_cart', { sku: 'linen', price: 40, qty: 1 })")
    bar = page.locator(OVERLAY)
    expect(bar).to_be_visible(timeout=10_000)
    expect(bar).to_contain_text("Free shipping")
    before = page.evaluate(LAYOUT)
    page.evaluate("kairos.track('checkout', { step: 'email' })")
    expect(bar).to_have_count(0, timeout=10_000)
    after = page.evaluate(LAYOUT)
    assert after == before, "taking the bar down moved the store's page"
    assert after["shift"] == 0
    assert hidden_lines(server, sid) == [("free-shipping", "until")]
    assert page.evaluate("window.__csp") == []


@pytest.mark.browser
def test_a_session_scoped_chat_bubble_stays_while_the_visitor_moves_around(shop, page):
    server, store = shop
    page.goto(store.base + "/shop/p/1")
    sid = connected(page)
    bubble = page.locator(OVERLAY)
    expect(bubble).to_be_visible(timeout=10_000)
    expect(bubble).to_contain_text("Questions about the fit")
    page.evaluate("window.go('/shop/basket')")
    page.evaluate("window.go('/shop/checkout')")
    server.session_when(sid, lambda s: s["pages"] == 3)
    expect(bubble).to_be_visible()
    assert server.session(sid)["onscreen"] is not None
    assert hidden_lines(server, sid) == []
    assert page.evaluate("window.__csp") == []


@pytest.mark.browser
def test_staff_take_the_bubble_down_from_the_session_page(shop, page, browser):
    server, store = shop
    page.goto(store.base + "/shop/p/1")
    sid = connected(page)
    bubble = page.locator(OVERLAY)
    expect(bubble).to_be_visible(timeout=10_000)
    staff_context = browser.new_context()
    try:
        staff = staff_context.new_page()
        login(staff, server)
        staff.goto(f"{server.base}/dashboard/sessions/{sid}")
        expect(staff.locator("#onscreen")).to_be_visible(timeout=10_000)
        staff.click("#take-down")  # a POST with the login's CSRF token
        expect(staff.locator("#take-down-result")).to_have_text("Taken down.")
        expect(bubble).to_have_count(0, timeout=10_000)
        expect(staff.locator("#onscreen")).to_be_hidden()
        expect(staff.locator("#detail-log .kind-feedback .what").first).to_have_text("hidden: taken down by staff")
    finally:
        staff_context.close()
    assert hidden_lines(server, sid) == [("size-help", "staff")]

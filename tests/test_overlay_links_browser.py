"""A `javascript:` link in an overlay runs no script, in real Chromium, on a store page without a CSP.

The store page is the test's own (another port, no Content-Security-Policy,
nothing but the script tag of a real `kairos serve`), so a `javascript:` link
that reached it would run: the last test clicks one outside the overlay to
show that it does. Each layer is tried on its own: `kairos check` refuses the
rule; the server drops a link that got past the check (a template edited after
the rules were checked); the snippet drops one the server sends anyway (the
`show` frame changed on its way, as from a server without these checks).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import msgpack
import pytest
from playwright.sync_api import expect

from conftest import free_port

ROOT = Path(__file__).resolve().parents[1]
PAYLOAD = "javascript:window.__pwned=1"
CTA = "#kairos-host .k-overlay a.k-cta"

RULES = """\
version: 1
rules:
  - id: summer-sale
    when: page_view
    then:
      show: offer
      template: {template}
      params:
        headline: Summer sale
        body: Everything 20% off.
        cta: See the sale
        {param}: "{value}"
"""


class Store:
    """A store's page on a port of its own: the snippet's script tag and a heading, no CSP."""

    def __init__(self, port: int, kairos_base: str) -> None:
        page = (f'<!doctype html><html><head><title>Shop</title>'
                f'<script src="{kairos_base}/k.js" data-site="shop" async></script></head>'
                '<body><h1>A shop without a Content-Security-Policy</h1></body></html>').encode()

        class Page(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

            def log_message(self, *args: object) -> None:
                pass

        self.port = port
        self.base = f"http://127.0.0.1:{self.port}"
        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Page)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def stores() -> Iterator[list[Store]]:
    """Store pages made by a test, closed after it."""
    made: list[Store] = []
    yield made
    for s in made:
        s.close()


def open_store(serve, rules: Path, stores: list[Store]) -> tuple[object, Store]:
    """A kairos serve with these rules that takes the store page's origin only, and that page."""
    port = free_port()
    server = serve("memory", rules=rules, extra=["--allowed-origin", f"http://127.0.0.1:{port}"])
    stores.append(store := Store(port, server.base))
    return server, store


def click_the_overlay_link(page) -> None:
    """Click the overlay's call to action and let whatever a click starts happen."""
    link = page.locator(CTA)
    expect(link).to_be_visible(timeout=10_000)
    expect(link).to_have_text("See the sale")
    link.click()
    page.wait_for_timeout(300)


def assert_no_script_ran(page, store: Store) -> None:
    assert page.evaluate("window.__pwned") is None, "the overlay's link ran script on the store's page"
    assert page.url == store.base + "/", "and the page did not go anywhere"


def assert_a_javascript_link_runs_here(page) -> None:
    """The control: on this page, a javascript: link outside the overlay does run."""
    page.keyboard.press("Escape")  # the offer is a modal dialog: the page behind it takes no clicks
    expect(page.locator(CTA)).to_have_count(0)
    page.evaluate("""() => {
      const a = document.createElement('a'); a.id = 'control'; a.textContent = 'control'; a.href = 'javascript:window.__pwned=1'
      document.body.prepend(a) }""")
    page.locator("#control").click()
    page.wait_for_function("window.__pwned === 1", timeout=5_000)


def test_kairos_check_refuses_a_javascript_link_with_its_line_and_the_fix(tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES.format(template="offer.html", param="href", value=PAYLOAD))
    done = subprocess.run([sys.executable, "-m", "kairos", "check", str(rules)], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr == (f"{rules}:12: rules[0].then.params.href: '{PAYLOAD}' is a javascript: link, which runs code "
                           "on the store's page when it is clicked: write an https:// address or a path on the store, "
                           "such as `/cart` or `https://shop.example/sale`\n")


@pytest.mark.browser
def test_a_link_that_got_past_the_check_is_dropped_by_the_server_and_runs_nothing(serve, page, tmp_path, monkeypatch,
                                                                                stores):
    # The store's templates, with one that shows `note` as text: the rule passes the check.
    templates = tmp_path / "templates"
    shutil.copytree(ROOT / "templates", templates)
    promo = templates / "overlays" / "promo.html"
    promo.write_text('<div class="k-offer"><h2 id="k-title">{{ headline }}</h2><p>{{ body }}</p>'
                     '<p>{{ note }}</p><a class="k-cta" href="/sale" data-k-click>{{ cta }}</a></div>\n')
    shutil.copy(templates / "overlays" / "offer.css", templates / "overlays" / "promo.css")
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES.format(template="promo.html", param="note", value=PAYLOAD))
    monkeypatch.setenv("KAIROS_TEMPLATES_DIR", str(templates))
    server, store = open_store(serve, rules, stores)

    # Then the template changes under the rules in force: `note` goes into the link.
    promo.write_text('<div class="k-offer"><h2 id="k-title">{{ headline }}</h2><p>{{ body }}</p>'
                     '<a class="k-cta" href="{{ note }}" data-k-click>{{ cta }}</a></div>\n')

    page.goto(store.base + "/")
    click_the_overlay_link(page)
    assert_no_script_ran(page, store)
    assert page.locator(CTA).get_attribute("href") is None, "the link is shown without its address"
    assert f"overlay promo.html: dropped href='{PAYLOAD}'" in server.output()
    assert_a_javascript_link_runs_here(page)


@pytest.mark.browser
def test_a_javascript_link_in_the_show_frame_is_dropped_by_the_snippet_and_runs_nothing(serve, page, tmp_path, stores):
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES.format(template="offer.html", param="href", value="/sale"))
    server, store = open_store(serve, rules, stores)
    changed: list[str] = []

    def between(ws) -> None:
        # The server's frames on their way to the page: the show's link becomes javascript:.
        kairos = ws.connect_to_server()

        def to_page(message) -> None:
            frame = msgpack.unpackb(message) if isinstance(message, bytes) else None
            if isinstance(frame, dict) and frame.get("t") == "show":
                frame["html"] = frame["html"].replace('href="/sale"', f'href="{PAYLOAD}"')
                changed.append(frame["html"])
                message = msgpack.packb(frame)
            ws.send(message)

        kairos.on_message(to_page)

    page.route_web_socket("**/ws", between)
    page.goto(store.base + "/")
    click_the_overlay_link(page)
    assert changed and PAYLOAD in changed[0], "the page was sent the javascript: link"
    assert_no_script_ran(page, store)
    assert page.locator(CTA).get_attribute("href") is None
    assert_a_javascript_link_runs_here(page)

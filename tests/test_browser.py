"""What a visitor sees, in real headless Chromium on the demo store, against a real server."""

from __future__ import annotations

import json

import msgpack
import pytest
from playwright.sync_api import Page, expect

from conftest import CHROMIUM, CHROMIUM_ARGS, connected, exit_through_the_top, login

PRODUCT = "/demo/products/linen-shirt"
OVERLAY = "#kairos-host .k-overlay"  # Playwright's CSS engine pierces open shadow roots




def show_exit_offer(server, page: Page) -> tuple[str, str]:
    page.goto(server.base + PRODUCT)
    sid = connected(page)
    exit_through_the_top(page)
    # Issue 2's promise: the offer is on screen within a second of the exit intent.
    expect(page.locator(OVERLAY)).to_be_visible(timeout=1000)
    return sid, page.locator(OVERLAY).get_attribute("data-oid")


@pytest.mark.browser
@pytest.mark.parametrize("engine", ["memory", "redis"])
def test_exit_intent_shows_the_offer_and_the_close_button_dismisses_it(serve, page, engine):
    server = serve(engine)
    sid, oid = show_exit_offer(server, page)
    overlay = page.locator(OVERLAY)
    product = page.locator('meta[property="og:title"]').get_attribute("content")
    expect(overlay).to_contain_text(f"Still thinking about {product}?")
    expect(overlay).to_contain_text("SAVE10")
    in_shadow = page.evaluate("""() => {
        const host = document.getElementById('kairos-host');
        return !!host.shadowRoot.querySelector('.k-overlay') && !document.querySelector('.k-overlay');
    }""")
    assert in_shadow, "the overlay lives in the shadow root, not in the store's DOM"
    assert server.session_when(sid, lambda s: s["overlays"].get(oid, {}).get("status") == "shown")["overlays"][oid]["status"] == "shown"

    page.locator("#kairos-host .k-close").click()
    expect(overlay).to_have_count(0)
    state = server.session_when(sid, lambda s: s["overlays"][oid]["status"] == "dismissed")
    assert state["overlays"][oid] == {"rule": "exit-offer", "status": "dismissed"}
    assert "exit-offer" in state["dismissed"]


@pytest.mark.browser
def test_escape_closes_the_offer_and_it_stays_closed_for_the_session(serve, page):
    server = serve("memory")
    sid, oid = show_exit_offer(server, page)
    page.keyboard.press("Escape")
    expect(page.locator(OVERLAY)).to_have_count(0)
    assert server.session_when(sid, lambda s: s["overlays"][oid]["status"] == "dismissed")["overlays"][oid]["status"] == "dismissed"
    # Another product page of the same visit: exit intent again, no offer again.
    page.goto(server.base + "/demo/products/oxford-shirt")
    assert connected(page) == sid
    exit_through_the_top(page)
    server.session_when(sid, lambda s: s["exit_intents"] >= 2)
    assert server.session(sid)["exit_intents"] == 2
    expect(page.locator(OVERLAY)).to_have_count(0)


@pytest.mark.browser
def test_the_store_css_and_the_overlay_css_do_not_meet(serve, page):
    server = serve("memory")
    page.goto(server.base + PRODUCT)
    store_button = page.evaluate("getComputedStyle(document.getElementById('add-to-cart')).fontFamily")
    connected(page)
    exit_through_the_top(page)
    expect(page.locator(OVERLAY)).to_be_visible(timeout=1000)
    assert "Georgia" in store_button, "the demo store styles buttons with Georgia (the hostile theme)"
    fonts = page.evaluate("""() => {
        const root = document.getElementById('kairos-host').shadowRoot;
        const f = (el) => getComputedStyle(el).fontFamily;
        return {cta: f(root.querySelector('.k-cta')), body: f(root.querySelector('.k-body')),
                store: f(document.getElementById('add-to-cart'))};
    }""")
    assert "Georgia" not in fonts["cta"] and "Georgia" not in fonts["body"], fonts
    assert fonts["store"] == store_button, "the overlay's styles did not reach the store's button"


@pytest.mark.browser
def test_the_session_follows_the_visitor_across_pages_with_cart_and_scroll(serve, page):
    server = serve("memory")
    page.goto(server.base + PRODUCT)
    sid = connected(page)
    page.locator("#add-to-cart").click()
    state = server.session_when(sid, lambda s: s["cart_items"] == 1)
    assert (state["cart_items"], state["cart_value"]) == (1, 49.0)
    page.goto(server.base + "/demo/cart")
    assert connected(page) == sid
    state = server.session_when(sid, lambda s: s["page_type"] == "cart")
    assert (state["pages"], state["page_type"], state["cart_value"]) == (2, "cart", 49.0)
    assert state["product"]["name"] == "Linen Shirt", "read from the product page's Open Graph tags"


@pytest.mark.browser
@pytest.mark.parametrize("signal", ["globalPrivacyControl", "doNotTrack"])
def test_a_visitor_with_gpc_or_dnt_is_not_tracked_at_all(serve, page, signal):
    server = serve("memory")
    value = "true" if signal == "globalPrivacyControl" else "'1'"
    page.add_init_script(f"Object.defineProperty(Navigator.prototype, '{signal}', {{get: () => {value}}})")
    sockets = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    page.goto(server.base + PRODUCT)
    page.wait_for_function("() => window.kairos && typeof window.kairos.track === 'function'")
    exit_through_the_top(page)
    page.wait_for_timeout(500)
    assert sockets == []
    assert page.evaluate("window.localStorage.getItem('kairos.vid')") is None
    assert server.api("/api/sessions").json() == {"sessions": []}


@pytest.mark.browser
def test_a_beacon_from_a_chromium_with_do_not_track_on_is_refused(serve, browser, page, tmp_path):
    # Chromium with its "Send a Do Not Track request" setting on sends DNT: 1
    # with sendBeacon's POST (not on a websocket handshake). The server reads it,
    # so the beacon is refused even where a page's code hides navigator.doNotTrack.
    server = serve("memory")
    page.goto(server.base + PRODUCT)
    sid = connected(page)
    vid = page.evaluate("() => localStorage.getItem('kairos.vid')")
    body = list(msgpack.packb({"v": 1, "t": "events", "site": "demo", "vid": vid, "sid": sid, "seq": 9,
                               "ev": [{"e": "click", "ts": 1767225600000, "tag": "a"}]}))
    send = "bytes => navigator.sendBeacon('/b', new Uint8Array(bytes))"
    (tmp_path / "Default").mkdir()
    (tmp_path / "Default" / "Preferences").write_text(json.dumps({"enable_do_not_track": True}))
    dnt = browser.browser_type.launch_persistent_context(
        tmp_path, executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
    try:
        other = dnt.new_page()
        other.add_init_script("Object.defineProperty(Navigator.prototype, 'doNotTrack', {get: () => null})")
        with other.expect_response("**/b") as answer:
            other.goto(server.base + "/demo/")
            assert other.evaluate(send, body), "the browser took the beacon"
        assert answer.value.request.header_value("dnt") == "1"
        assert answer.value.status == 403
    finally:
        dnt.close()
    assert server.session(sid)["clicks"] == 0, "nothing of it kept"
    # the same beacon from the visitor's own browser, without the setting, is applied
    with page.expect_response("**/b") as answer:
        assert page.evaluate(send, body)
    assert answer.value.status == 204
    assert server.session(sid)["clicks"] == 1


@pytest.mark.browser
def test_the_snippet_reconnects_after_a_restart_and_keeps_its_session(serve, page):
    server = serve("redis")
    page.goto(server.base + PRODUCT)
    sid = connected(page)
    server.restart()
    page.wait_for_function("() => window.kairos.state === 'open'", timeout=30_000)
    assert page.evaluate("window.kairos.sid") == sid
    exit_through_the_top(page)
    expect(page.locator(OVERLAY)).to_be_visible(timeout=5000)
    state = server.session(sid)
    assert (state["exit_intents"], state["pages"]) == (1, 1), "the reconnection was not counted as a page view"


@pytest.mark.browser
def test_the_dashboard_shows_the_live_session_and_its_log_newest_first(serve, page):
    server = serve("memory")
    sid, oid = show_exit_offer(server, page)
    page.keyboard.press("Escape")
    server.session_when(sid, lambda s: s["overlays"][oid]["status"] == "dismissed")
    staff = page.context.new_page()
    login(staff, server)
    row = staff.locator(f'#sessions-body tr[data-sid="{sid}"]')
    expect(row).to_contain_text("/demo/products/linen-shirt")
    expect(row).to_contain_text("exit-offer: dismissed")
    row.locator("a").click()
    staff.wait_for_url(f"{server.base}/dashboard/sessions/{sid}")
    first = staff.locator("#detail-log tbody tr").first
    expect(first.locator(".what")).to_have_text("dismissed")
    expect(staff.locator("#detail-log tbody tr").last.locator(".what")).to_have_text("page_view")


@pytest.mark.browser
def test_a_cart_from_an_earlier_visit_is_known_to_the_new_session(serve, browser):
    server = serve("memory")
    context = browser.new_context()
    try:
        first = context.new_page()
        first.goto(server.base + PRODUCT)
        connected(first)
        first.locator("#add-to-cart").click()
        first.close()
        later = context.new_page()  # a new tab: a new session, the same visitor and cart
        later.goto(server.base + "/demo/")
        sid = connected(later)
        state = server.session_when(sid, lambda s: s["cart_items"] == 1)
        assert (state["cart_items"], state["cart_value"]) == (1, 49.0)
        later.goto(server.base + "/demo/category/shirts")
        assert connected(later) == sid
        server.session_when(sid, lambda s: s["pages"] == 2)
        assert server.session(sid)["counts"].get("cart") == 1, "reported once a session, not on every page"
    finally:
        context.close()

"""The snippet's signals, in real headless Chromium on the demo store, on a desktop and a phone.

Every signal is checked where a store operator would see it: in the session
the server keeps (its counters and its activity log), not in the snippet's
own variables.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis
import yaml
from playwright.sync_api import BrowserContext, expect

from conftest import STEADY_DEMO_RULES, connected, exit_through_the_top

PRODUCT = "/demo/products/linen-shirt"
OVERLAY = "#kairos-host .k-overlay"
SECRET = "4111 1111 1111 1111"

# The demo's rules with quick thresholds, so each signal shows up in a second or two.
TRACK = """
track:
  batch_ms: 200
  dwell_ms: 1000
  idle_ms: 1500
  exit_min_ms: 0
  exit_gap_ms: 1000
  rage_n: 4
  rage_ms: 1000
  hes_ms: 1000
  copy: true
  exit_back: true
"""

ANDROID_UA = ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
              "Chrome/126.0.0.0 Mobile Safari/537.36")


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    """The demo's rules (no experiment: conftest._steady) with the quick `track:` settings above in place of its own."""
    doc = yaml.safe_load(STEADY_DEMO_RULES.read_text())
    doc["track"] = {**doc.get("track", {}), **yaml.safe_load(TRACK)["track"]}
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    return path


@pytest.fixture
def phone(browser) -> BrowserContext:
    """A 375 px wide touch screen (pointer: coarse), as a phone's Chrome reports itself."""
    context = browser.new_context(viewport={"width": 375, "height": 740}, is_mobile=True, has_touch=True,
                                  device_scale_factor=2, user_agent=ANDROID_UA)
    yield context
    context.close()




def logged(state: dict, kind: str) -> list[dict]:
    """The session's activity-log entries for one event type."""
    return [e for e in state["log"] if e.get("e") == kind]


def wait_logged(server, sid: str, kind: str, n: int = 1, timeout_s: float = 5.0) -> list[dict]:
    state = server.session_when(sid, lambda s: len(logged(s, kind)) >= n, timeout_s)
    found = logged(state, kind)
    assert len(found) >= n, f"no {kind} event in the session log: {json.dumps(state['log'])[:2000]}"
    return found


@pytest.mark.browser
def test_desktop_signals_reach_the_session(serve, page, rules):
    server = serve("memory", rules)
    page.goto(server.base + PRODUCT)
    sid = connected(page)

    # dwell: visible time, reported every dwell_ms
    state = server.session_when(sid, lambda s: s["dwell_ms"] >= 1000)
    assert state["dwell_ms"] >= 1000

    # scroll depth
    page.mouse.move(400, 400)
    page.mouse.wheel(0, 5000)
    state = server.session_when(sid, lambda s: s["scroll_pct"] >= 90)
    assert state["scroll_pct"] >= 90

    # a click: the button, its id, data-kairos and a short text excerpt
    page.evaluate("window.scrollTo(0, 0)")
    page.locator("#add-to-cart").click()
    click = next(c for c in wait_logged(server, sid, "click") if c.get("id") == "add-to-cart")
    assert (click["tag"], click["k"], click["text"]) == ("button", "add-to-cart", "Add to cart")

    # rage clicks: four clicks in one spot within a second
    box = page.locator("#product-name").bounding_box()
    for dx, dy in ((10, 10), (12, 10), (11, 11), (13, 12)):
        page.mouse.click(box["x"] + dx, box["y"] + dy)
    rage = wait_logged(server, sid, "rage_click")
    assert (rage[0]["n"], rage[0]["tag"]) == (4, "h1")

    # a triple click selects the name: three clicks in one spot, but no rage
    page.wait_for_timeout(1100)
    page.locator("#product-name").click(click_count=3)
    page.wait_for_timeout(400)
    assert len(logged(server.session(sid), "rage_click")) == 1, "selecting text is not rage"

    # copy of the selected product name
    page.keyboard.press("Control+c")
    assert wait_logged(server, sid, "copy")[0]["tag"] == "h1"

    # idle, then back from idle
    state = server.session_when(sid, lambda s: s["idle_ms"] >= 1500, timeout_s=6)
    assert state["idle_ms"] >= 1500
    page.mouse.move(300, 300)
    page.mouse.move(320, 310)
    state = server.session_when(sid, lambda s: s["counts"].get("idle_end") == 1)
    assert (state["counts"].get("idle_end"), state["idle_ms"]) == (1, 0), "back from idle"

    # exit intent through the top edge, with its kind
    exit_through_the_top(page)
    expect(page.locator(OVERLAY)).to_be_visible(timeout=1000)
    assert wait_logged(server, sid, "exit_intent")[0]["how"] == "top"


@pytest.mark.browser
def test_hesitation_at_the_payment_field_sends_its_name_never_what_was_typed(serve, page, rules):
    server = serve("memory", rules)
    page.goto(server.base + PRODUCT)
    connected(page)
    page.locator("#add-to-cart").click()
    page.goto(server.base + "/demo/checkout")
    sid = connected(page)
    # typing the shipping details is no hesitation
    for field, text in (("#ship-name", "Ada Lovelace"), ("#ship-email", "ada@example.org"), ("#ship-address", "12 Analytical Row")):
        page.locator(field).click()
        page.keyboard.type(text, delay=20)
    page.locator("#to-payment").click()
    page.locator("#pay-card").click()
    page.keyboard.type(SECRET)
    hes = wait_logged(server, sid, "hesitation")
    assert [(h["field"], h["ms"]) for h in hes] == [("pay-card", 1000)]
    everything = json.dumps(server.session(sid))
    assert SECRET not in everything and SECRET.replace(" ", "") not in everything
    assert "Lovelace" not in everything


@pytest.mark.browser
def test_phone_signals_taps_scroll_and_the_three_mobile_exits(serve, phone, rules):
    server = serve("memory", rules)
    page = phone.new_page()
    page.goto(server.base + PRODUCT)
    sid = connected(page)
    assert page.evaluate("matchMedia('(pointer: fine)').matches") is False

    page.locator("#add-to-cart").tap()
    click = next(c for c in wait_logged(server, sid, "click") if c.get("id") == "add-to-cart")
    assert click["tag"] == "button"

    # scroll down the page, then a fast flick back up near the top: exit intent
    page.evaluate("window.scrollTo(0, document.documentElement.scrollHeight)")
    server.session_when(sid, lambda s: s["scroll_pct"] >= 90)
    page.wait_for_timeout(300)
    page.evaluate("""() => new Promise(done => {
        let y = Math.min(window.scrollY, 700);
        window.scrollTo(0, y);
        const step = () => {
            y = Math.max(0, y - 250);
            window.scrollTo(0, y);
            if (y > 0) requestAnimationFrame(step); else setTimeout(done, 50);
        };
        requestAnimationFrame(step);
    })""")
    exits = wait_logged(server, sid, "exit_intent")
    assert exits[0]["how"] == "scroll"
    expect(page.locator(OVERLAY)).to_be_visible(timeout=1000)
    page.locator("#kairos-host .k-close").tap()
    expect(page.locator(OVERLAY)).to_have_count(0)

    # the back button (exit_back: on): the first back stays on the page and counts as an exit
    page.wait_for_timeout(1200)  # past the cooldown; the extra history entry is in place
    url = page.url
    page.go_back()
    exits = wait_logged(server, sid, "exit_intent", 2)
    assert "back" in [e["how"] for e in exits]
    assert page.url == url

    # the tab hidden on a phone (switching apps) is an exit too
    page.wait_for_timeout(1100)
    page.evaluate("""() => {
        Object.defineProperty(document, 'visibilityState', {value: 'hidden', configurable: true});
        document.dispatchEvent(new Event('visibilitychange'));
    }""")
    exits = wait_logged(server, sid, "exit_intent", 3)
    assert "hidden" in [e["how"] for e in exits]


@pytest.mark.browser
def test_the_overlay_fits_a_375px_screen(serve, phone, rules):
    server = serve("memory", rules)
    page = phone.new_page()
    page.goto(server.base + PRODUCT)
    connected(page)
    page.evaluate("kairos.track('cart', {value: 120, items: 2, cur: 'EUR'})")
    page.evaluate("history.pushState({}, '', '/demo/cart')")
    page.wait_for_timeout(300)
    page.evaluate("""() => {
        Object.defineProperty(document, 'visibilityState', {value: 'hidden', configurable: true});
        document.dispatchEvent(new Event('visibilitychange'));
    }""")
    expect(page.locator(OVERLAY)).to_be_visible(timeout=2000)
    box = page.locator(OVERLAY).bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= 375, box
    assert page.evaluate("document.documentElement.scrollWidth") <= 375, "the overlay made the page scroll sideways"


@pytest.mark.browser
def test_a_single_page_app_route_change_is_a_page_view_with_its_declared_type(serve, page, rules):
    server = serve("memory", rules)
    page.goto(server.base + PRODUCT)
    sid = connected(page)
    page.evaluate("history.pushState({}, '', '/demo/products/oxford-shirt')")
    state = server.session_when(sid, lambda s: s["path"] == "/demo/products/oxford-shirt")
    assert (state["pages"], state["page_type"], state["prev_page_type"]) == (2, "product", "product")
    # the store's router declares the page type itself, at once after the URL changes
    page.evaluate("history.pushState({}, '', '/demo/app/basket'); kairos.page({type: 'cart'})")
    state = server.session_when(sid, lambda s: s["path"] == "/demo/app/basket")
    page.wait_for_timeout(400)  # an automatic page view would have come 100 ms after the change
    state = server.session(sid)
    assert (state["pages"], state["page_type"]) == (3, "cart"), "one page view, of the declared type"
    # a hash change is not a page view, nor is going back from it; back to the product is
    page.evaluate("location.hash = '#reviews'")
    page.go_back()
    page.wait_for_timeout(400)
    assert server.session(sid)["pages"] == 3
    page.go_back()
    state = server.session_when(sid, lambda s: s["pages"] == 4)
    assert (state["pages"], state["path"]) == (4, "/demo/products/oxford-shirt")


@pytest.mark.browser
def test_declarative_track_identify_and_custom_events(serve, page, rules):
    server = serve("memory", rules)
    page.goto(server.base + PRODUCT)
    sid = connected(page)
    # <button data-kairos-track="wishlist_add" data-kairos-sku=… data-kairos-price="49.00">: no store code
    page.locator("#save-for-later").click()
    state = server.session_when(sid, lambda s: s["custom"].get("wishlist_add") == 1)
    assert state["custom"]["wishlist_add"] == 1
    saved = next(e for e in wait_logged(server, sid, "custom") if e["name"] == "wishlist_add")
    assert saved["props"] == {"sku": "KS-SH-001", "price": 49}, "attributes as props, numbers as numbers"
    click = next(c for c in wait_logged(server, sid, "click") if c.get("id") == "save-for-later")
    assert (click["tag"], click["text"], click["ka"]["sku"]) == ("button", "Save for later", "KS-SH-001")

    page.evaluate("kairos.identify('ada@example.com'); kairos.track('size_guide_opened', {size: 'M', n: 1})")
    state = server.session_when(sid, lambda s: bool(s.get("uid")) and s["custom"].get("size_guide_opened") == 1)
    assert state["custom"]["size_guide_opened"] == 1
    assert state["uid"] and "ada@example.com" not in json.dumps(server.session(sid)), "only a hash of the store's id is kept"


@pytest.mark.browser
def test_events_made_while_the_server_is_down_arrive_after_it_restarts(serve, page, rules):
    server = serve("redis", rules)
    page.goto(server.base + PRODUCT)
    sid = connected(page)
    server.proc.terminate()
    server.proc.wait(10)
    page.wait_for_function("() => window.kairos.state !== 'open'", timeout=5000)
    page.evaluate("for (let i = 0; i < 30; i++) kairos.track('offline_tick', {i})")
    server.start()
    page.wait_for_function("() => window.kairos.state === 'open'", timeout=30_000)
    assert page.evaluate("window.kairos.sid") == sid, "the same session resumed"
    state = server.session_when(sid, lambda s: s["custom"].get("offline_tick") == 30, timeout_s=10)
    assert state["custom"].get("offline_tick") == 30, "every event made while the server was down arrived"
    assert (state["pages"], state["lost"]) == (1, 0)

    # past the buffer's bound (100 events): the oldest go, and the loss is counted
    server.proc.terminate()
    server.proc.wait(10)
    page.wait_for_function("() => window.kairos.state !== 'open'", timeout=5000)
    page.evaluate("for (let i = 0; i < 130; i++) kairos.track('offline_burst', {i})")
    server.start()
    page.wait_for_function("() => window.kairos.state === 'open'", timeout=30_000)
    state = server.session_when(sid, lambda s: s["lost"] >= 30, timeout_s=10)
    assert state["lost"] >= 30
    assert state["custom"].get("offline_burst", 0) + state["lost"] >= 130


@pytest.mark.browser
def test_the_demo_store_runs_under_a_strict_csp_and_the_overlay_is_styled(serve, page, rules):
    server = serve("memory", rules)
    page.add_init_script("""
        window.__violations = [];
        document.addEventListener('securitypolicyviolation',
            e => window.__violations.push(e.violatedDirective + ' ' + e.blockedURI));
    """)
    response = page.goto(server.base + PRODUCT)
    csp = response.headers.get("content-security-policy", "")
    assert "script-src 'self'" in csp and "style-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
    connected(page)
    exit_through_the_top(page)
    overlay = page.locator(OVERLAY)
    expect(overlay).to_be_visible(timeout=1000)
    style = overlay.evaluate("el => { const s = getComputedStyle(el); return [s.position, s.backgroundColor, s.zIndex] }")
    assert style == ["fixed", "rgb(255, 255, 255)", "2147483647"], "the overlay's stylesheet was applied"
    assert page.evaluate("window.__violations") == []


@pytest.mark.browser
def test_the_overlay_code_is_fetched_only_when_an_overlay_is_shown(serve, page, rules):
    server = serve("memory", rules)
    page.add_init_script("""
        window.__violations = [];
        document.addEventListener('securitypolicyviolation',
            e => window.__violations.push(e.violatedDirective + ' ' + e.blockedURI));
    """)
    fetched: list[str] = []
    page.on("request", lambda r: fetched.append(r.url) if "/k-overlay.js" in r.url else None)
    page.goto(server.base + PRODUCT)
    sid = connected(page)
    # a visit with no overlay (no exit, no deep scroll): pointer, a click, some dwell
    page.mouse.move(300, 300)
    page.locator("h1").first.click()
    server.session_when(sid, lambda s: s["clicks"] >= 1)
    server.session_when(sid, lambda s: s["dwell_ms"] >= 1000)
    assert fetched == [], "k.js fetched the overlay code on a page that showed none"

    exit_through_the_top(page)
    overlay = page.locator(OVERLAY)
    expect(overlay).to_be_visible(timeout=1000)  # the show waited for the code, then appeared
    assert fetched == [server.base + "/k-overlay.js"]
    state = server.session_when(sid, lambda s: any(o["status"] == "shown" for o in s["overlays"].values()))
    oid = overlay.get_attribute("data-oid")
    assert state["overlays"][oid]["status"] == "shown"
    page.locator("#kairos-host .k-close").click()
    expect(overlay).to_have_count(0)
    server.session_when(sid, lambda s: s["overlays"][oid]["status"] == "dismissed")
    assert page.evaluate("window.__violations") == [], "the overlay file is allowed by the store's strict CSP"
    assert sorted(page.evaluate("Object.keys(window.kairos)")) == ["consent", "identify", "page", "sid", "state", "track", "version"]


@pytest.mark.browser
def test_an_overlay_file_that_cannot_be_fetched_does_not_break_the_store(serve, page, rules):
    server = serve("memory", rules)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.route("**/k-overlay.js", lambda route: route.abort())
    page.goto(server.base + PRODUCT)
    sid = connected(page)
    exit_through_the_top(page)
    wait_logged(server, sid, "exit_intent")
    page.wait_for_timeout(300)
    expect(page.locator(OVERLAY)).to_have_count(0)
    # the snippet keeps reporting, and the store's own script keeps working
    page.evaluate("kairos.track('cart', {value: 80, items: 1, cur: 'EUR'})")
    server.session_when(sid, lambda s: s["cart_value"] == 80)
    assert page.evaluate("kairos.state") == "open"
    assert errors == []


@pytest.mark.browser
def test_consent_required_nothing_is_sent_before_consent_and_withdrawal_erases(serve, page, rules):
    server = serve("redis", rules)
    traffic: list[str] = []
    page.on("websocket", lambda ws: traffic.append(ws.url))
    page.on("request", lambda r: traffic.append(r.url) if r.url.endswith(("/b", "/ws")) else None)
    page.goto(server.base + PRODUCT + "?consent=required")  # the demo's data-consent="required"
    page.wait_for_function("() => window.kairos && window.kairos.state === 'idle'")
    page.evaluate("kairos.track('cart', {value: 80, items: 1, cur: 'EUR'})")
    page.mouse.move(300, 300)
    page.mouse.wheel(0, 800)
    page.mouse.move(300, -5)
    page.wait_for_timeout(700)
    assert traffic == [], "nothing leaves the page before consent"
    assert page.evaluate("() => [localStorage.getItem('kairos.vid'), sessionStorage.getItem('kairos.sid')]") == [None, None]
    assert server.api("/api/sessions").json() == {"sessions": []}

    page.evaluate("kairos.consent(true)")
    sid = connected(page)
    vid = page.evaluate("() => localStorage.getItem('kairos.vid')")
    state = server.session_when(sid, lambda s: s["cart_value"] == 80)
    assert state["cart_value"] == 80, "the event from before consent went once consent was given"

    page.evaluate("kairos.consent(false)")
    page.wait_for_function("() => window.kairos.state === 'idle'")
    gone = False
    for _ in range(50):
        if server.api(f"/api/sessions/{sid}").status_code == 404:
            gone = True
            break
        page.wait_for_timeout(100)
    assert gone, "withdrawing consent erased the session"
    keys = redis.Redis.from_url(server.redis_url).keys("*")
    assert not [k for k in keys if vid.encode() in k or sid.encode() in k], keys
    assert page.evaluate("() => [localStorage.getItem('kairos.vid'), sessionStorage.getItem('kairos.sid')]") == [None, None]


@pytest.mark.browser
def test_the_offer_can_be_closed_with_the_keyboard_alone(serve, page, rules):
    server = serve("memory", rules)
    page.goto(server.base + PRODUCT)
    sid = connected(page)
    page.locator("#add-to-cart").focus()
    exit_through_the_top(page)
    expect(page.locator(OVERLAY)).to_be_visible(timeout=1000)
    focus = "() => { const r = document.getElementById('kairos-host').shadowRoot; const a = r.activeElement; return a ? (a.className || a.tagName) : null }"
    assert page.evaluate(focus) is not None, "the dialog took the focus"
    dialog = page.locator(OVERLAY)
    # a modal <dialog>: the page behind it is inert, the dialog is named by its heading
    assert dialog.evaluate("el => [el.tagName, el.matches(':modal'), el.getAttribute('aria-labelledby')]") == ["DIALOG", True, "k-title"]
    expect(page.locator("#kairos-host #k-title")).to_contain_text("Still thinking about")
    seen = set()
    for _ in range(6):  # Tab goes round inside the dialog, never to the store's page
        page.keyboard.press("Tab")
        where = page.evaluate(focus)
        on_store = page.evaluate("() => document.activeElement && document.activeElement.id !== 'kairos-host' && document.activeElement !== document.body")
        assert not on_store, "focus reached the store's page behind the dialog"
        seen.add(where)
    assert "k-close" in seen and "k-cta" in seen
    while page.evaluate(focus) != "k-close":
        page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    expect(page.locator(OVERLAY)).to_have_count(0)
    assert page.evaluate("document.activeElement.id") == "add-to-cart", "focus went back where it was"
    state = server.session_when(sid, lambda s: "exit-offer" in s["dismissed"])
    assert "exit-offer" in state["dismissed"]


@pytest.mark.browser
def test_the_overlay_does_not_animate_for_a_visitor_who_asked_for_reduced_motion(serve, browser, rules):
    server = serve("memory", rules)
    animations = {}
    for motion in ("no-preference", "reduce"):
        context = browser.new_context(viewport={"width": 1280, "height": 800}, reduced_motion=motion)
        page = context.new_page()
        page.goto(server.base + PRODUCT)
        connected(page)
        page.mouse.move(640, 40, steps=4)
        page.mouse.move(640, -10)
        overlay = page.locator(OVERLAY)
        expect(overlay).to_be_visible(timeout=1000)
        animations[motion] = overlay.evaluate("el => getComputedStyle(el).animationName")
        context.close()
    assert animations["no-preference"] != "none"
    assert animations["reduce"] == "none"

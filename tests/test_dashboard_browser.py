"""The staff dashboard in real headless Chromium: what a merchandiser sees and does, against a real server.

Visitors are real snippets on the demo store, each in a browser context of its
own; staff log in through the form. Screenshots are saved under ARTEFACTS: the
three pages, and the live page (three sessions, none), a session's page and the
rules page's chart at 1280x800 and 1920x1080. docs/screenshots/ holds copies for
the README: `KAIROS_ARTEFACTS=docs/screenshots pytest tests/test_dashboard_browser.py`
takes them again there.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import httpx
import pytest
import redis
from playwright.sync_api import Page, expect

from conftest import ROOT, STEADY_DEMO_RULES, connected, exit_through_the_top, login
from kairos.engine import keys
from kairos.engine.base import STATS_BUCKET_MS, stats_bucket

OVERLAY = "#kairos-host .k-overlay"  # Playwright's CSS engine pierces open shadow roots
ARTEFACTS = Path(os.environ.get("KAIROS_ARTEFACTS", ROOT / "artefacts"))


def shoot(page: Page, name: str) -> None:
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTEFACTS / f"{name}.png"), full_page=True)


def visitor(browser, server, path: str) -> tuple[Page, str]:
    """A visitor in a browser of their own, on a page of the demo store; their page and session id."""
    page = browser.new_context(viewport={"width": 1100, "height": 760}).new_page()
    page.goto(server.base + path)
    return page, connected(page)


def staff_page(browser, server) -> Page:
    page = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
    login(page, server)
    return page


@pytest.mark.browser
def test_staff_watch_two_visitors_nudge_one_by_hand_pause_a_rule_and_are_refused_a_bad_edit(serve, browser, tmp_path):
    rules = tmp_path / "rules.yaml"
    shutil.copy(STEADY_DEMO_RULES, rules)
    server = serve("redis", rules=rules)
    staff = staff_page(browser, server)
    api_calls: list[str] = []
    staff.on("request", lambda r: api_calls.append(r.url) if "/api/sessions" in r.url else None)
    expect(staff.locator("#status")).to_contain_text("live")

    # Two visitors arrive; each row comes over the feed (the live page never polls the API).
    shopper, a = visitor(browser, server, "/demo/products/linen-shirt")
    started = time.monotonic()
    row_a = staff.locator(f'#sessions-body tr[data-sid="{a}"]')
    expect(row_a).to_contain_text("/demo/products/linen-shirt")
    browser_b, b = visitor(browser, server, "/demo/category/shirts")
    row_b = staff.locator(f'#sessions-body tr[data-sid="{b}"]')
    expect(row_b).to_contain_text("/demo/category/shirts")
    print(f"\nboth rows on the live page {time.monotonic() - started:.2f} s after the first visitor connected")
    expect(row_a.locator(".tag")).to_have_text("product")
    expect(staff.locator("#count-live")).to_have_text("2")

    # Visitor A's exit intent triggers the rule's offer: on their page, on their row, in their timeline.
    exit_through_the_top(shopper)
    expect(shopper.locator(OVERLAY)).to_contain_text("SAVE10")
    expect(row_a.locator(".chip[data-rule=exit-offer]")).to_be_visible()
    shoot(staff, "dashboard-live")
    staff.goto(f"{server.base}/dashboard/sessions/{a}")
    expect(staff.locator("#detail-log")).to_contain_text("exit-offer")
    expect(staff.locator("#detail-log tr.kind-show").first).to_contain_text("exit-offer")
    expect(staff.locator('#rules-now tr[data-rule="exit-offer"] .verdict')).to_contain_text("session cap spent")
    expect(staff.locator("#detail-log tr.kind-score").first).to_contain_text("exit risk")  # the exit intent moved it
    shoot(staff, "dashboard-session")

    # Staff send visitor B a chat invitation by hand; it appears on B's page and in B's timeline.
    staff.goto(f"{server.base}/dashboard/sessions/{b}")
    staff.fill("#nudge-message", "Hello from the shop floor, can we help?")
    staff.click("#nudge-send")
    expect(staff.locator("#nudge-result")).to_have_text("Sent: it is on the visitor's page.")
    expect(browser_b.locator(OVERLAY)).to_contain_text("Hello from the shop floor, can we help?")
    expect(staff.locator("#detail-log tr.kind-show").first).to_contain_text("chat invitation sent by staff")
    expect(staff.locator(f'#detail-scores [data-score="purchase_intent"]')).to_contain_text("= logistic(bias -3.00")
    # A second one meets the cap a person cannot override either: the one on screen is theirs.
    staff.click("#nudge-send")
    expect(staff.locator("#nudge-result")).to_contain_text("not sent")

    # Pause exit-offer from the rules page: a third visitor's exit intent no longer shows it.
    staff.goto(f"{server.base}/dashboard/rules")
    pause = staff.locator('button.pause[data-rule="exit-offer"]')
    pause.click()
    expect(pause).to_have_attribute("aria-pressed", "true")
    third, c = visitor(browser, server, "/demo/products/oxford-shirt")
    exit_through_the_top(third)
    state = server.session_when(c, lambda s: s["exit_intents"] == 1)
    log = server.session_when(c, lambda s: any(e.get("kind") == "skip" for e in s["log"]))["log"]
    assert [e["why"] for e in log if e["kind"] == "skip"] == ["paused"], log
    assert state["overlays"] == {} and third.locator(OVERLAY).count() == 0
    staff.reload()
    expect(staff.locator('#rule-stats tr[data-rule="exit-offer"] [data-counter="triggered"]')).to_have_text("2")
    expect(staff.locator('#rule-stats tr[data-rule="exit-offer"] [data-counter="shown"]')).to_have_text("1")

    # An invalid document sent by a script (or racing the editor's check) is refused whole and changes
    # nothing. Editing itself, its marked lines and Apply are test_rules_editor_browser.py's.
    before_text, before = rules.read_text(), server.api("/api/rules").json()
    r = staff.evaluate("""async (text) => {
        const csrf = /(?:^|;\\s*)kairos_csrf=([^;]*)/.exec(document.cookie)[1];
        const res = await fetch('/api/rules/apply', {method: 'POST', body: text, headers: {'X-CSRF-Token': csrf}});
        return {status: res.status, body: await res.json()};
    }""", before_text.replace("priority: 10", "priority: lots", 1))
    assert r["status"] == 422 and r["body"]["problems"][0]["path"].endswith("priority")
    assert rules.read_text() == before_text
    assert server.api("/api/rules").json()["version"] == before["version"]
    shoot(staff, "dashboard-rules")
    assert not [u for u in api_calls if u.endswith("/api/sessions")], "the live page polled the session list"
    for p in (shopper, browser_b, third, staff):
        p.context.close()


@pytest.mark.browser
def test_a_dashboard_on_one_process_sees_the_sessions_of_another(serve, browser, tmp_path):
    first = serve("redis")
    second = serve("redis", extra=["--admin-token", first.admin_token])
    staff = staff_page(browser, second)
    shopper, sid = visitor(browser, first, "/demo/products/canvas-sneaker")
    expect(staff.locator(f'#sessions-body tr[data-sid="{sid}"]')).to_contain_text("/demo/products/canvas-sneaker")
    shopper.locator("#add-to-cart").click()
    expect(staff.locator(f'#sessions-body tr[data-sid="{sid}"] .cart')).to_contain_text("· 1")
    # And a nudge sent by hand from the second process reaches the page held by the first.
    r = httpx.post(f"{second.base}/api/sessions/{sid}/nudge", json={"chat": "Across processes"}, headers=second.auth)
    assert r.status_code == 200, r.text
    expect(shopper.locator(OVERLAY)).to_contain_text("Across processes")
    shopper.context.close()
    staff.context.close()


# --- the dashboard at a laptop's 1280 px and a desktop's 1920 px ---------------------------------

SIZES = [(1280, 800), (1920, 1080)]

# What is cut off on the page: every element that hides part of its content (overflow
# other than visible: table cells, ellipses, the scrolling table), a placeholder wider
# than its box (Chromium counts no placeholder in scrollWidth, so it is measured), and
# a page that scrolls sideways. Each as "what: needed > had" in px.
CLIPPED = """(root) => {
  const out = [];
  const name = (x) => x.tagName.toLowerCase() + (x.id ? '#' + x.id : '') + (x.className && typeof x.className === 'string' ? '.' + x.className.trim().split(/\\s+/).join('.') : '')
    + ' "' + (x.textContent || x.placeholder || '').trim().slice(0, 40) + '"';
  for (const x of document.querySelectorAll(root + ', ' + root + ' *')) {
    if (!x.clientWidth || x.closest('[hidden]') || x.closest('svg')) continue;
    const st = getComputedStyle(x);
    if ((st.overflowX !== 'visible' || x.matches('input, select')) && x.scrollWidth > x.clientWidth)
      out.push(name(x) + ': ' + x.scrollWidth + ' > ' + x.clientWidth);
    if (x.matches('td') && st.overflowY !== 'visible' && x.scrollHeight > x.clientHeight)
      out.push(name(x) + ' (height): ' + x.scrollHeight + ' > ' + x.clientHeight);
  }
  const ctx = document.createElement('canvas').getContext('2d');
  for (const i of document.querySelectorAll(root + ' input[placeholder]')) {
    const st = getComputedStyle(i);
    ctx.font = st.fontStyle + ' ' + st.fontWeight + ' ' + st.fontSize + ' ' + st.fontFamily;
    const room = i.clientWidth - parseFloat(st.paddingLeft) - parseFloat(st.paddingRight);
    const need = Math.ceil(ctx.measureText(i.placeholder).width);
    if (need > room) out.push(name(i) + ' placeholder: ' + need + ' > ' + room);
  }
  if (document.documentElement.scrollWidth > innerWidth) out.push('the page scrolls sideways: ' + document.documentElement.scrollWidth + ' > ' + innerWidth);
  return out;
}"""


def staff_at(browser, server, width: int, height: int) -> Page:
    page = browser.new_context(viewport={"width": width, "height": height}).new_page()
    login(page, server)
    return page


def three_visitors(browser, server) -> list[tuple[Page, str]]:
    """One shown the exit offer on a product page, one with €59 in the cart shown free shipping, one browsing."""
    shopper, a = visitor(browser, server, "/demo/products/linen-shirt")
    exit_through_the_top(shopper)
    expect(shopper.locator(OVERLAY)).to_contain_text("SAVE10")
    buyer, b = visitor(browser, server, "/demo/products/canvas-sneaker")
    buyer.locator("#add-to-cart").click()
    server.session_when(b, lambda s: s["cart_items"] == 1)
    buyer.goto(server.base + "/demo/cart")
    connected(buyer)
    exit_through_the_top(buyer)
    server.session_when(b, lambda s: s["overlays"])
    browsing, c = visitor(browser, server, "/demo/category/shirts")
    return [(shopper, a), (buyer, b), (browsing, c)]


@pytest.mark.browser
def test_the_live_page_shows_every_session_whole_at_1280_and_1920_px(serve, browser):
    server = serve("redis")
    people = three_visitors(browser, server)
    for width, height in SIZES:
        staff = staff_at(browser, server, width, height)
        rows = staff.locator("#sessions-body tr.session-row")
        expect(rows).to_have_count(3)
        expect(staff.locator('#sessions-body .chip[data-rule="cart-exit-shipping"]')).to_be_visible()
        for _, sid in people:
            link = staff.locator(f'#sessions-body tr[data-sid="{sid}"] td.sid a')
            expect(link).to_have_text(sid)  # whole, not "s_abc…"
            expect(staff.locator(f'#sessions-body tr[data-sid="{sid}"] button.copy')).to_have_attribute("aria-label", f"Copy session id {sid}")
        expect(rows.first.locator("td.who")).to_contain_text("desktop · chrome")
        assert staff.evaluate(CLIPPED, ".layout") == [], f"cut off at {width} px"
        shoot(staff, f"live-3-{width}")
        staff.context.close()
    for page, _ in people:
        page.context.close()


@pytest.mark.browser
def test_an_empty_live_page_says_what_to_do_and_gives_way_to_the_first_visitor(serve, browser):
    server = serve("redis")
    for width, height in SIZES:
        staff = staff_at(browser, server, width, height)
        empty = staff.locator("#sessions-empty")
        expect(empty).to_be_visible()
        expect(empty).to_contain_text("No one is on the site right now")
        expect(empty).to_contain_text("appear here live as visitors arrive")
        expect(empty.locator('a[href="/demo/"]')).to_be_visible()
        expect(staff.locator("#snippet-tag")).to_have_text(f'<script src="{server.base}/k.js" data-site="mystore" async></script>')
        expect(staff.locator("#sessions")).to_be_hidden()
        assert staff.evaluate(CLIPPED, ".layout") == [], f"cut off at {width} px"
        shoot(staff, f"live-empty-{width}")
        if width == 1920:
            break
        staff.context.close()

    # The first visitor arrives: the panel gives way to their row, without a reload.
    shopper, sid = visitor(browser, server, "/demo/products/oxford-shirt")
    expect(staff.locator(f'#sessions-body tr[data-sid="{sid}"]')).to_be_visible()
    expect(staff.locator("#sessions-empty")).to_be_hidden()
    # Filters that leave no row say so, in other words, and clear in one click.
    staff.fill("#filter-text", "leather")
    no_match = staff.locator("#sessions-no-match")
    expect(no_match).to_contain_text("No session matches these filters")
    expect(no_match).to_contain_text("1 session is listed, but none mentions “leather”.")
    expect(staff.locator("#sessions-empty")).to_be_hidden()
    staff.select_option("#filter-view", "checkout")
    expect(no_match).to_contain_text("none is on checkout now and mentions “leather”")
    staff.click("#filters-clear")
    expect(staff.locator(f'#sessions-body tr[data-sid="{sid}"]')).to_be_visible()
    expect(no_match).to_be_hidden()
    expect(staff.locator("#filter-text")).to_have_value("")
    expect(staff.locator("#filter-view")).to_have_value("all")
    shopper.context.close()
    staff.context.close()


@pytest.mark.browser
def test_the_copy_buttons_copy_the_whole_session_id_and_the_script_tag(serve, browser):
    server = serve("redis")
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.base)
    staff = context.new_page()
    login(staff, server)
    staff.click("#snippet-copy")
    expect(staff.locator("#snippet-copy")).to_have_text("Copied")
    assert staff.evaluate("navigator.clipboard.readText()") == f'<script src="{server.base}/k.js" data-site="mystore" async></script>'

    shopper, sid = visitor(browser, server, "/demo/products/linen-shirt")
    staff.locator(f'#sessions-body tr[data-sid="{sid}"] button.copy').click()
    assert staff.evaluate("navigator.clipboard.readText()") == sid
    expect(staff.locator(f'#sessions-body tr[data-sid="{sid}"] button.copy')).to_have_attribute("data-copied", "")
    assert staff.url == f"{server.base}/dashboard", "copying is not opening the session"
    staff.goto(f"{server.base}/dashboard/sessions/{sid}")
    staff.evaluate("navigator.clipboard.writeText('')")
    staff.locator("#detail-title button.copy").click()
    assert staff.evaluate("navigator.clipboard.readText()") == sid
    shopper.context.close()
    context.close()


@pytest.mark.browser
def test_the_session_page_is_not_cut_off_at_1280_and_1920_px(serve, browser):
    server = serve("redis")
    shopper, sid = visitor(browser, server, "/demo/products/linen-shirt")
    shopper.locator("#add-to-cart").click()
    exit_through_the_top(shopper)
    expect(shopper.locator(OVERLAY)).to_contain_text("SAVE10")
    for width, height in SIZES:
        staff = staff_at(browser, server, width, height)
        staff.goto(f"{server.base}/dashboard/sessions/{sid}")
        expect(staff.locator("#detail-log tr.kind-show").first).to_contain_text("exit-offer")
        expect(staff.locator("#detail-sid")).to_have_text(sid)
        assert staff.evaluate(CLIPPED, ".layout") == [], f"cut off at {width} px"
        shoot(staff, f"session-{width}")
        staff.context.close()
    shopper.context.close()


@pytest.mark.browser
def test_an_hour_of_counts_is_charted_in_five_minute_bins_across_the_chart(serve, browser):
    server = serve("redis")
    # An hour of a busy store's counters, written as the engine keeps them (five-minute buckets).
    r = redis.Redis.from_url(server.redis_url)
    now = int(time.time() * 1000)
    starts = list(range(stats_bucket(now) - 11 * STATS_BUCKET_MS, now + 1, STATS_BUCKET_MS))
    shown = [6, 9, 7, 12, 8, 11, 14, 9, 7, 10, 12, 8]
    for b, n in zip(starts, shown):
        r.hset(keys.stats(b), mapping={"exit-offer|triggered": n + 3, "exit-offer|shown": n, "exit-offer|clicked": n // 4,
                                       "exit-offer|dismissed": n // 3, "exit-offer|converted": n // 6})
        r.expire(keys.stats(b), 3600)
    staff = staff_at(browser, server, 1280, 800)
    staff.goto(f"{server.base}/dashboard/rules")
    chart = staff.locator("#chart")
    expect(chart).to_have_attribute("data-bins", "12")
    expect(chart.locator(".axis-label").first).to_have_text("time (bins of 5 min)")
    expect(staff.locator('#rule-stats tr[data-rule="exit-offer"] [data-counter="shown"]')).to_have_text(str(sum(shown)))
    labels = chart.locator(".tick.x").all_text_contents()
    # Times of day; an hour that spans midnight (local) shows the new day's date at its midnight tick.
    times = [t for t in labels if re.fullmatch(r"\d\d:\d\d", t)]
    dates = [t for t in labels if t not in times]
    assert 4 <= len(labels) <= 8 and len(dates) <= 1, labels
    if dates:
        assert re.fullmatch(r"[A-Z][a-z]{2} \d{1,2}|\d{1,2} [A-Z][a-z]{2}", dates[0]), labels
        assert labels.index(dates[0]) > 0, "a date where a new day starts, never first"
    assert any(not t.endswith(":00") for t in times), f"minutes for five-minute bins: {labels}"
    # The shown line has a point per bin, spread across the chart, each at its bin's count.
    points = [tuple(map(float, p.split(","))) for p in chart.locator('polyline[data-counter="shown"]').get_attribute("points").split()]
    assert len(points) == 12
    xs, ys = [x for x, _ in points], [y for _, y in points]
    assert xs[0] < 100 and xs[-1] > 700, "from the left of the chart to its right"
    assert sorted(range(12), key=lambda i: ys[i])[0] == shown.index(max(shown)), "the highest point is the busiest bin"
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    staff.locator('section[aria-labelledby="stats-title"]').screenshot(path=str(ARTEFACTS / "rules-1280.png"))
    staff.context.close()

"""The staff dashboard in real headless Chromium: what a merchandiser sees and does, against a real server.

Visitors are real snippets on the demo store, each in a browser context of its
own; staff log in through the form. Screenshots of the three pages are saved
under ARTEFACTS (the README shows copies of them).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from conftest import DEMO_RULES, ROOT, connected, exit_through_the_top, login

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
    shutil.copy(DEMO_RULES, rules)
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

    # An invalid edit shows the error as it is typed, cannot be applied, and changes nothing.
    before_text, before = rules.read_text(), server.api("/api/rules").json()
    editor = staff.locator("#rules-editor")
    expect(editor).to_have_value(before_text)
    editor.fill(before_text.replace("priority: 10", "priority: lots", 1))
    expect(staff.locator("#rules-problems")).to_contain_text("priority")
    expect(staff.locator("#rules-problems")).to_contain_text("line ")
    expect(staff.locator("#rules-apply")).to_be_disabled()
    # Applied anyway (a script, or a race with the check): refused whole.
    r = staff.evaluate("""async (text) => {
        const csrf = /(?:^|;\\s*)kairos_csrf=([^;]*)/.exec(document.cookie)[1];
        const res = await fetch('/api/rules/apply', {method: 'POST', body: text, headers: {'X-CSRF-Token': csrf}});
        return {status: res.status, body: await res.json()};
    }""", editor.input_value())
    assert r["status"] == 422 and r["body"]["problems"][0]["path"].endswith("priority")
    assert rules.read_text() == before_text
    assert server.api("/api/rules").json()["version"] == before["version"]
    shoot(staff, "dashboard-rules")

    # A valid edit is applied: the file is rewritten and the new version is in force.
    editor.fill(before_text.replace("code: SAVE10", "code: SAVE15", 1))
    expect(staff.locator("#rules-problems")).to_contain_text("Valid: 3 rules.")
    with staff.expect_navigation():  # applied, the page reloads with the rules in force
        staff.click("#rules-apply")
    assert "SAVE15" in rules.read_text()
    expect(staff.locator("#rules-editor")).to_have_value(rules.read_text())
    assert server.api("/api/rules").json()["version"] == before["version"] + 1
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

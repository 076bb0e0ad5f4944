"""Issue 6, acceptance 2: a visitor's purchase intent rises as they browse, and a crossing rule fires once."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from playwright.sync_api import expect

from conftest import connected, login

ROOT = Path(__file__).resolve().parent.parent
INTENT_RULES = ROOT / "examples" / "intent.yaml"
BAR = "#kairos-host .k-overlay"



def intent(server, sid: str) -> float:
    return server.session(sid)["scores"]["purchase_intent"]["value"]


def on_the_dashboard(desk, sid: str, check, timeout_s: float = 5.0) -> float:
    """The purchase intent the live page shows beside the session, once `check` holds of it."""
    meter = desk.locator(f"tr[data-sid='{sid}'] [data-score=purchase_intent] meter")
    deadline = time.monotonic() + timeout_s
    while True:
        value = float(meter.get_attribute("value")) if meter.count() else -1.0
        if check(value) or time.monotonic() > deadline:
            return value
        desk.wait_for_timeout(50)


@pytest.mark.browser
@pytest.mark.parametrize("engine", ["memory", "redis"])
def test_purchase_intent_rises_and_the_crossing_rule_fires_once(serve, page, browser, engine):
    server = serve(engine, INTENT_RULES)
    page.goto(server.base + "/demo/products/linen-shirt")
    sid = connected(page)
    first = intent(server, sid)
    # staff watch the live page as the visitor browses: the feed brings each change
    staff = browser.new_context(viewport={"width": 1400, "height": 900})
    desk = staff.new_page()
    login(desk, server)
    on_first = on_the_dashboard(desk, sid, lambda v: v > 0)
    assert on_first > 0

    page.goto(server.base + "/demo/products/oxford-shirt")
    assert connected(page) == sid
    second = server.session_when(sid, lambda s: s["pages"] == 2)["scores"]["purchase_intent"]["value"]
    assert second > first
    assert on_the_dashboard(desk, sid, lambda v: v > on_first) > on_first, "the live page shows it rising"

    page.mouse.move(400, 400)
    for _ in range(12):
        page.mouse.wheel(0, 600)
        page.wait_for_timeout(50)
    server.session_when(sid, lambda s: s["scroll_pct"] >= 90)
    scrolled = server.session_when(sid, lambda s: s["scores"]["purchase_intent"]["value"] > second + 0.01)
    assert scrolled["scores"]["purchase_intent"]["value"] > second
    assert scrolled["scores"]["purchase_intent"]["value"] < 0.6, "not yet: the add to cart makes the difference"
    expect(page.locator(BAR)).to_have_count(0)

    page.evaluate("window.scrollTo(0, 0)")
    page.locator("#add-to-cart").click()
    expect(page.locator(BAR)).to_contain_text("shipping is free", timeout=2000)
    state = server.session_when(sid, lambda s: s["scores"]["purchase_intent"]["value"] >= 0.6)
    assert state["scores"]["purchase_intent"]["value"] >= 0.6
    assert state["fired"] == {"ready-to-buy": 1}
    top = [signal for signal, _ in state["scores"]["purchase_intent"]["top"]]
    assert top[0] == "add_to_cart", "the explanation names what lifted it most"
    assert set(top) >= {"add_to_cart", "page_view.product", "scroll"}
    assert on_the_dashboard(desk, sid, lambda v: v >= 0.6) >= 0.6

    # kairos explain SESSION: the same explanation, in words, from the running server
    explain = subprocess.run([sys.executable, "-m", "kairos", "explain", sid, "--url", server.base,
                              "--token", server.admin_token], capture_output=True, text=True, timeout=30)
    assert explain.returncode == 0, explain.stderr
    lines = explain.stdout.splitlines()
    assert lines[1].startswith("  purchase_intent 0.") and "-3.000 bias" in lines[1]
    assert lines[2].endswith("add_to_cart") and lines[2].strip().startswith("+2.")
    refused = subprocess.run([sys.executable, "-m", "kairos", "explain", sid, "--url", server.base, "--token", "wrong"],
                             capture_output=True, text=True, timeout=30)
    assert refused.returncode == 1 and "admin token was refused" in refused.stderr

    # more intent, no second crossing: the rule fired once
    page.locator("#kairos-host .k-close").click()
    page.locator("#add-to-cart").click()
    server.session_when(sid, lambda s: s["cart_items"] == 2)
    page.wait_for_timeout(500)
    assert server.session(sid)["fired"] == {"ready-to-buy": 1}
    expect(page.locator(BAR)).to_have_count(0)

    # what makes it, in the session's view
    desk.locator(f"tr[data-sid='{sid}'] a").click()
    expect(desk.locator("#detail-scores [data-score=purchase_intent]")).to_contain_text("= logistic(bias -3.00, add_to_cart +4.")  # two adds by now
    staff.close()

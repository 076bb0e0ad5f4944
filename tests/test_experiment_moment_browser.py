"""An experiment as visitors meet it, in real Chromium on the demo store (its rules run one on
the free-shipping offer: variants a and b, 10% holdout), on both engines."""

from __future__ import annotations

import time

import httpx
import pytest
from playwright.sync_api import expect

from conftest import DEMO_RULES, connected, exit_through_the_top, login
from kairos.experiments import assign
from kairos.rules import load_rules

SECRET = "experiment-browser-secret"
SALT = assign.salt_from(SECRET.encode())
OVERLAY = "#kairos-host .k-overlay"
RULE = "cart-exit-shipping"


def visitor_in(arm: str) -> str:
    rule = load_rules(DEMO_RULES).rule(RULE)
    return next(vid for n in range(10_000) if assign.arm_of(rule, vid := f"v_moment{n:05d}", SALT) == arm)


def as_visitor(browser, vid: str):
    """A browser context whose snippet finds `vid` as its visitor id (kept in localStorage)."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.add_init_script(f"try {{ localStorage.setItem('kairos.vid', {vid!r}) }} catch (e) {{}}")
    return context, context.new_page()


def cart_over_50(server, page) -> str:
    """Two shirts in the cart (€88.90), then the cart page; the session id."""
    for product in ("linen-shirt", "oxford-shirt"):
        page.goto(f"{server.base}/demo/products/{product}")
        sid = connected(page)
        items = server.session(sid)["cart_items"]
        page.locator("#add-to-cart").click()
        server.session_when(sid, lambda s: s["cart_items"] == items + 1)
    page.goto(f"{server.base}/demo/cart")
    assert connected(page) == sid
    return sid


def arm_numbers(server, arm: str) -> dict:
    r = httpx.get(f"{server.base}/api/experiments", headers=server.auth, timeout=5)
    r.raise_for_status()
    x = next(x for x in r.json()["experiments"] if x["id"] == RULE)
    return next(a for a in x["arms"] if a["name"] == arm)


def numbers_when(server, arm: str, check, timeout_s: float = 5.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while not check(got := arm_numbers(server, arm)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return got


@pytest.mark.browser
@pytest.mark.parametrize("engine", ["memory", "redis"])
def test_the_holdout_sees_nothing_is_counted_and_its_purchase_credited(serve, browser, monkeypatch, engine):
    monkeypatch.setenv("KAIROS_IDENTIFY_SECRET", SECRET)
    server = serve(engine, DEMO_RULES)
    context, page = as_visitor(browser, visitor_in("holdout"))
    try:
        sid = cart_over_50(server, page)
        exit_through_the_top(page)
        state = server.session_when(sid, lambda s: s["fired"])
        assert state["fired"] == {RULE: 1}, "the moment was reached, and claimed"
        assert [e["kind"] for e in state["log"] if e.get("rule") == RULE and e["kind"] in ("show", "held")] == ["held"]
        page.wait_for_timeout(800)
        expect(page.locator(OVERLAY)).to_have_count(0)
        assert numbers_when(server, "holdout", lambda a: a["exposed"])["exposed"] == 1
        assert arm_numbers(server, "a")["exposed"] == arm_numbers(server, "b")["exposed"] == 0
        # The purchase after it is the holdout's.
        page.goto(f"{server.base}/demo/checkout")
        page.locator("#to-payment").click()
        page.locator("#place-order").click()
        page.wait_for_url("**/demo/thanks")
        held = numbers_when(server, "holdout", lambda a: a["converted"])
        assert (held["exposed"], held["converted"]) == (1, 1)
        assert held["revenue"] > 0
    finally:
        context.close()
    # What staff see on the Experiments page.
    staff = browser.new_page(viewport={"width": 1280, "height": 800})
    try:
        login(staff, server)
        staff.goto(f"{server.base}/dashboard/experiments")
        x = staff.locator(f'section[data-experiment="{RULE}"]')
        for metric, arm, shown in (("exposed", "holdout", "1"), ("converted", "holdout", "1"), ("exposed", "a", "0"),
                                   ("exposed", "b", "0")):
            expect(x.locator(f'tr[data-metric="{metric}"] td[data-arm="{arm}"]')).to_have_text(shown)
    finally:
        staff.close()


@pytest.mark.browser
@pytest.mark.parametrize("engine", ["memory", "redis"])
def test_a_treated_visitor_sees_their_variants_text(serve, browser, monkeypatch, engine):
    monkeypatch.setenv("KAIROS_IDENTIFY_SECRET", SECRET)
    server = serve(engine, DEMO_RULES)
    for arm, headline in (("b", "Your order ships free"), ("a", "Shipping is on us")):
        context, page = as_visitor(browser, visitor_in(arm))
        try:
            cart_over_50(server, page)
            exit_through_the_top(page)
            offer = page.locator(OVERLAY)
            expect(offer).to_be_visible(timeout=5000)
            expect(offer.locator(".k-title")).to_have_text(headline)
            expect(offer.locator(".k-code")).to_have_text("FREESHIP")
            assert numbers_when(server, arm, lambda a: a["shown"])["exposed"] == 1
        finally:
            context.close()

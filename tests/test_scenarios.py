"""The example scenarios, end to end: each rules file in examples/scenarios/ on a real
server, a visitor in real headless Chromium on the demo store, and what they see.

Delays run on the server's controllable clock, `--delay-scale`: it multiplies every
rule delay and the snippet's idle threshold, and nothing else changes — the timers,
their queue and the push are the production code. The scale of a test is chosen so
that what the visitor does *before* a moment is due fits comfortably inside the
scaled delay on a loaded machine; a visitor who only waits gets the smallest scale.

A nudge that must not come is waited for in one of two ways: when a timer is armed,
until the server says the timer came due and what became of it (`kairos_timers_total`
by outcome — "cancelled" is final); otherwise for a bounded, generous time after the
server recorded the event that would have triggered it.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect
from prometheus_client.parser import text_string_to_metric_families
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from conftest import connected, exit_through_the_top

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "examples" / "scenarios"
EXIT_OFFER = SCENARIOS / "1-exit-intent-cart-offer.yaml"
PAYMENT_CHAT = SCENARIOS / "2-checkout-hesitation-chat.yaml"
REMINDER = SCENARIOS / "3-product-reminder.yaml"
CART_RECOVERY = SCENARIOS / "5-cart-recovery.yaml"
SCROLL_IDLE = SCENARIOS / "6-scroll-proof-idle-nudge.yaml"

DEMO = "/demo/"
SHIRTS = "/demo/category/shirts"
CART = "/demo/cart"
CHECKOUT = "/demo/checkout"
THANKS = "/demo/thanks"
LINEN = "/demo/products/linen-shirt"  # 49.00: alone, a cart of 50 or less
OXFORD = "/demo/products/oxford-shirt"  # 39.90
SNEAKER = "/demo/products/canvas-sneaker"  # 59.00

OVERLAY = "#kairos-host .k-overlay"  # Playwright's CSS engine pierces the open shadow root
# A rule without a delay shows in the handler of the batch that triggered it: within
# milliseconds of the server recording that batch. How long to watch for one that must not.
SETTLE_S = 1.5


def clock(scale: float) -> list[str]:
    return ["--delay-scale", str(scale)]


def due_within_s(delay_s: float, scale: float) -> float:
    """How long to wait for a delayed nudge: three times its scaled delay, and some."""
    return 3 * delay_s * scale + 5


# --- the visitor ----------------------------------------------------------------------



def visit(server, page: Page, path: str, sid: str | None = None) -> str:
    """Open a demo page like a visitor (a full page load); the session id, checked to be the visit's."""
    page.goto(server.base + path)
    got = connected(page)
    if sid is not None:
        assert got == sid, f"{path} started another session"
    return got



def add_to_cart(server, page: Page, sid: str, items: int) -> dict:
    page.locator("#add-to-cart").click()
    return server.session_when(sid, lambda s: s["cart_items"] == items)


def the_overlay(page: Page, kind: str, timeout_s: float = 5.0):
    """The overlay on screen, once there; it must be of `kind`."""
    overlay = page.locator(OVERLAY)
    expect(overlay).to_be_visible(timeout=timeout_s * 1000)
    expect(overlay).to_have_class(re.compile(rf"\bk-kind-{kind}\b"))
    return overlay


def nothing_shows(page: Page, for_s: float) -> None:
    """No overlay appears on this page for `for_s` seconds (fails as soon as one does)."""
    try:
        page.locator(OVERLAY).wait_for(state="attached", timeout=for_s * 1000)
    except PlaywrightTimeout:
        return
    pytest.fail(f"an overlay appeared: {page.locator(OVERLAY).inner_text()!r}")


# --- the server -------------------------------------------------------------------------


def timer_outcomes(server) -> dict[str, int]:
    """What became of the timers that came due, by outcome (the outcomes still at zero left out)."""
    out = {}
    for family in text_string_to_metric_families(server.metrics()):
        for sample in family.samples:
            if sample.name == "kairos_timers_total" and sample.value:
                out[sample.labels["outcome"]] = int(sample.value)
    return out


def pending_timers(server) -> int:
    return int(server.metric("kairos_timers_pending"))


def timers_came_due(server, n: int, timeout_s: float) -> dict[str, int]:
    """What became of the server's timers, once `n` of them came due (fired, cancelled, kept…)."""
    deadline = time.monotonic() + timeout_s
    while True:
        outcomes = timer_outcomes(server)
        if sum(outcomes.values()) >= n or time.monotonic() > deadline:
            return outcomes
        time.sleep(0.05)


def shown_rules(state: dict) -> list[str]:
    return sorted(o["rule"] for o in state["overlays"].values())


# --- 1. exit intent with more than 50 in the cart -> offer -----------------------------------


@pytest.mark.browser
@pytest.mark.parametrize("engine", ["memory", "redis", "cluster"])
def test_scenario_1_exit_intent_with_more_than_50_in_the_cart_shows_the_offer(serve, page, engine):
    server = serve(engine, rules=EXIT_OFFER, extra=clock(0.005))
    sid = visit(server, page, SNEAKER)
    assert add_to_cart(server, page, sid, items=1)["cart_value"] == 59.0
    visit(server, page, CART, sid)
    exit_through_the_top(page)

    offer = the_overlay(page, "offer")
    expect(offer).to_contain_text("Your cart is waiting")
    expect(offer).to_contain_text("Complete your order in the next hour with this code.")
    expect(offer.locator(".k-code")).to_have_text("STAY10")
    expect(offer.locator(".k-cta")).to_have_text("Back to my cart")
    state = server.session_when(sid, lambda s: s["overlays"])
    assert shown_rules(state) == ["cart-exit-offer"]


@pytest.mark.browser
@pytest.mark.parametrize("engine", ["memory", "redis", "cluster"])
def test_scenario_1_exit_intent_with_an_empty_or_small_cart_shows_nothing(serve, page, engine):
    server = serve(engine, rules=EXIT_OFFER, extra=clock(0.005))
    sid = visit(server, page, DEMO)
    exit_through_the_top(page)  # an empty cart
    assert server.session_when(sid, lambda s: s["exit_intents"] == 1)["exit_intents"] == 1
    nothing_shows(page, SETTLE_S)

    visit(server, page, LINEN, sid)
    assert add_to_cart(server, page, sid, items=1)["cart_value"] == 49.0  # not over 50
    exit_through_the_top(page)
    assert server.session_when(sid, lambda s: s["exit_intents"] == 2)["exit_intents"] == 2
    nothing_shows(page, SETTLE_S)
    state = server.session(sid)
    assert (state["overlays"], state["fired"]) == ({}, {})


# --- 2. two minutes at the payment step -> chat --------------------------------------------


def at_payment(server, page: Page) -> str:
    """A visitor with a shirt in the cart, on the payment step of the checkout; the session id."""
    sid = visit(server, page, LINEN)
    add_to_cart(server, page, sid, items=1)
    visit(server, page, CHECKOUT, sid)
    server.session_when(sid, lambda s: s["checkout_step"] == "shipping")
    page.locator("#to-payment").click()
    expect(page.locator("#step-payment")).to_be_visible()
    return sid


@pytest.mark.browser
@pytest.mark.parametrize("engine", ["memory", "redis", "cluster"])
def test_scenario_2_two_minutes_at_the_payment_step_brings_the_chat(serve, page, engine):
    scale = 0.005  # 2 min -> 0.6 s; the visitor only waits
    server = serve(engine, rules=PAYMENT_CHAT, extra=clock(scale))
    sid = visit(server, page, LINEN)
    add_to_cart(server, page, sid, items=1)
    visit(server, page, CHECKOUT, sid)
    assert server.session_when(sid, lambda s: s["checkout_step"] == "shipping")["checkout_step"] == "shipping"
    nothing_shows(page, 3 * 120 * scale)  # as long at the shipping step: not the moment

    page.locator("#to-payment").click()
    chat = the_overlay(page, "chat", timeout_s=due_within_s(120, scale))
    expect(chat).to_have_class(re.compile(r"\bk-place-corner\b"))
    expect(chat.locator(".k-agent")).to_have_text("Sam from customer care")
    expect(chat).to_contain_text("Questions about payment or delivery? We reply within a minute.")
    expect(chat.locator(".k-cta")).to_have_text("Chat with us")
    assert timer_outcomes(server) == {"shown": 1}
    assert shown_rules(server.session(sid)) == ["payment-help"]


@pytest.mark.browser
@pytest.mark.parametrize("engine", ["memory", "redis", "cluster"])
def test_scenario_2_placing_the_order_before_the_delay_cancels_the_chat(serve, page, engine):
    scale = 0.02  # 2 min -> 2.4 s: time to place the order and reach the thank-you page
    server = serve(engine, rules=PAYMENT_CHAT, extra=clock(scale))
    sid = at_payment(server, page)
    page.locator("#place-order").click()
    page.wait_for_url("**" + THANKS)
    assert connected(page) == sid
    assert server.session_when(sid, lambda s: s["purchases"] == 1)["purchases"] == 1

    # The timer comes due while the visitor is on the thank-you page, connected:
    # had the order not cancelled it, the chat would show there.
    assert timers_came_due(server, 1, due_within_s(120, scale)) == {"cancelled": 1}
    expect(page.locator(OVERLAY)).to_have_count(0)
    assert server.session(sid)["overlays"] == {}


@pytest.mark.browser
@pytest.mark.parametrize("engine", ["memory", "redis", "cluster"])
def test_scenario_2_leaving_the_checkout_for_the_cart_cancels_the_chat(serve, page, engine):
    scale = 0.02  # 2 min -> 2.4 s: time to open the cart page
    server = serve(engine, rules=PAYMENT_CHAT, extra=clock(scale))
    sid = at_payment(server, page)
    visit(server, page, CART, sid)

    assert timers_came_due(server, 1, due_within_s(120, scale)) == {"cancelled": 1}
    expect(page.locator(OVERLAY)).to_have_count(0)
    assert server.session(sid)["overlays"] == {}


# --- 3. left a product page 3 minutes ago without adding to cart -> reminder bar -----------------
# 3 min at 0.02 -> 3.6 s: time to open another page or two before it is due.
REMINDER_SCALE = 0.02


@pytest.mark.browser
@pytest.mark.parametrize("engine", ["memory", "redis", "cluster"])
def test_scenario_3_left_product_page_gets_a_reminder(serve, page, engine):
    server = serve(engine, rules=REMINDER, extra=clock(REMINDER_SCALE))
    sid = visit(server, page, LINEN)
    visit(server, page, SHIRTS, sid)

    bar = the_overlay(page, "bar", timeout_s=due_within_s(180, REMINDER_SCALE))
    expect(bar).to_have_class(re.compile(r"\bk-place-bottom\b"))
    expect(bar).to_contain_text("Still thinking it over? Your size is in stock and ships tomorrow.")
    assert timer_outcomes(server) == {"shown": 1}
    assert shown_rules(server.session(sid)) == ["product-reminder"]


@pytest.mark.browser
@pytest.mark.parametrize("engine", ["memory", "redis", "cluster"])
def test_scenario_3_a_product_added_to_the_cart_is_not_reminded_of(serve, page, engine):
    server = serve(engine, rules=REMINDER, extra=clock(REMINDER_SCALE))
    sid = visit(server, page, LINEN)
    add_to_cart(server, page, sid, items=1)
    visit(server, page, SHIRTS, sid)
    server.session_when(sid, lambda s: s["pages"] == 2)

    # Leaving a product page whose product went into the cart arms no reminder.
    assert pending_timers(server) == 0
    assert timer_outcomes(server) == {}
    expect(page.locator(OVERLAY)).to_have_count(0)
    assert server.session(sid)["overlays"] == {}


@pytest.mark.browser
@pytest.mark.parametrize("engine", ["memory", "redis", "cluster"])
def test_scenario_3_coming_back_to_a_product_page_cancels_the_reminder(serve, page, engine):
    server = serve(engine, rules=REMINDER, extra=clock(REMINDER_SCALE))
    sid = visit(server, page, LINEN)
    visit(server, page, SHIRTS, sid)
    server.session_when(sid, lambda s: s["pages"] == 2)
    assert pending_timers(server) == 1, "leaving the product page armed the reminder"
    visit(server, page, OXFORD, sid)  # back on a product page before the reminder is due

    assert timers_came_due(server, 1, due_within_s(180, REMINDER_SCALE)) == {"cancelled": 1}
    expect(page.locator(OVERLAY)).to_have_count(0)
    state = server.session(sid)
    assert state["overlays"] == {}
    assert state["timer_fires"] == {"product-reminder": 1}, "one reminder came due, not one per product page"


# --- 5. cart untouched for 10 minutes -> cart recovery on the next page view ------------------


@pytest.mark.browser
@pytest.mark.parametrize("engine", ["memory", "redis", "cluster"])
def test_scenario_5_cart_recovery_offer_waits_for_the_visitors_next_page(serve, page, engine):
    scale = 0.005  # 10 min -> 3 s: time to add to the cart and leave
    server = serve(engine, rules=CART_RECOVERY, extra=clock(scale))
    sid = visit(server, page, LINEN)
    add_to_cart(server, page, sid, items=1)
    page.goto("about:blank")  # away from the store before the 10 minutes are up
    assert server.session_when(sid, lambda s: not s["connected"])["connected"] is False

    state = server.session_when(sid, lambda s: s["pending"], timeout_s=due_within_s(600, scale))
    assert state["pending"] == ["cart-recovery"], "came due while away: kept for the next page view"
    assert state["overlays"] == {}
    assert timer_outcomes(server) == {"kept": 1}

    visit(server, page, DEMO, sid)
    offer = the_overlay(page, "offer")
    expect(offer).to_contain_text("You left something behind")
    expect(offer).to_contain_text("Everything is still in your cart. Free shipping if you order today.")
    expect(offer.locator(".k-code")).to_have_text("FREESHIP")
    expect(offer.locator(".k-cta")).to_have_text("Go to my cart")
    state = server.session(sid)
    assert state["pending"] == [], "shown once, on one page view"
    assert shown_rules(state) == ["cart-recovery"]


@pytest.mark.browser
@pytest.mark.parametrize("engine", ["memory", "redis", "cluster"])
def test_scenario_5_a_purchase_cancels_the_cart_recovery(serve, page, engine):
    scale = 0.01  # 10 min -> 6 s: time to go through the checkout
    server = serve(engine, rules=CART_RECOVERY, extra=clock(scale))
    sid = visit(server, page, LINEN)
    add_to_cart(server, page, sid, items=1)
    visit(server, page, CHECKOUT, sid)
    page.locator("#to-payment").click()
    page.locator("#place-order").click()
    page.wait_for_url("**" + THANKS)
    assert connected(page) == sid
    assert server.session_when(sid, lambda s: s["purchases"] == 1)["purchases"] == 1

    # Due while the visitor is on the thank-you page, connected: the offer would show there.
    assert timers_came_due(server, 1, due_within_s(600, scale)) == {"cancelled": 1}
    expect(page.locator(OVERLAY)).to_have_count(0)
    visit(server, page, DEMO, sid)  # nor is it kept for the next page
    nothing_shows(page, SETTLE_S)
    state = server.session(sid)
    assert (state["pending"], state["overlays"]) == ([], {})


# --- 6. scroll past 70% of a product page -> social proof; idle -> re-engagement -------------


@pytest.mark.browser
@pytest.mark.parametrize("engine", ["memory", "redis", "cluster"])
def test_scenario_6_reading_past_70_percent_of_a_product_page_shows_the_social_proof_bar(serve, page, engine):
    # No delay in this rule. The real clock keeps the idle threshold at 30 s, so the
    # idle nudge (priority 10, which the bar could not replace) cannot come first.
    server = serve(engine, rules=SCROLL_IDLE, extra=clock(1))
    # The product page is about 1,000 px tall: at 800 px the first scroll is already past 70%.
    page.set_viewport_size({"width": 1280, "height": 400})
    sid = visit(server, page, LINEN)
    page.mouse.move(640, 200)
    page.mouse.wheel(0, 100)  # half of the page seen
    state = server.session_when(sid, lambda s: s["scroll_pct"] > 0)
    assert 40 <= state["scroll_pct"] < 70, state["scroll_pct"]
    nothing_shows(page, SETTLE_S)

    page.mouse.wheel(0, 2000)  # to the bottom
    bar = the_overlay(page, "bar")
    expect(bar).to_have_class(re.compile(r"\bk-place-bottom\b"))
    expect(bar).to_contain_text("38 people bought this in the last 24 hours.")
    assert server.session(sid)["scroll_pct"] >= 70
    assert shown_rules(server.session(sid)) == ["deep-scroll-proof"]


@pytest.mark.browser
@pytest.mark.parametrize("engine", ["memory", "redis", "cluster"])
def test_scenario_6_an_idle_visitor_on_a_product_page_gets_the_re_engagement_offer(serve, page, engine):
    scale = 0.005  # the snippet's 30 s idle threshold -> 150 ms
    server = serve(engine, rules=SCROLL_IDLE, extra=clock(scale))
    # No mouse, key, scroll or touch input from here on: the visitor just sits there.
    sid = visit(server, page, SHIRTS)
    # Reported at the snippet's next 1 s tick, in its next (1 s) batch.
    state = server.session_when(sid, lambda s: s["idle_ms"] > 0, timeout_s=10)
    assert state["idle_ms"] > 0 and state["page_type"] == "category"
    nothing_shows(page, SETTLE_S)  # idle on a category page: not the moment

    visit(server, page, LINEN, sid)
    offer = the_overlay(page, "offer", timeout_s=10)
    expect(offer).to_contain_text("Still there?")
    expect(offer).to_contain_text("Compare sizes and fabrics in our fit guide, or ask us anything.")
    expect(offer.locator(".k-cta")).to_have_text("Keep browsing")
    expect(offer.locator(".k-code")).to_have_count(0)  # the rule gives no code
    state = server.session(sid)
    assert state["idle_ms"] > 0 and state["page_type"] == "product"
    assert shown_rules(state) == ["idle-reengage"]

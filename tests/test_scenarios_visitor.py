"""Scenarios 4 and 7 in real Chromium: what a visitor sees across page views and sessions."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from test_browser import OVERLAY, connected, exit_through_the_top

SCENARIOS = Path(__file__).resolve().parents[1] / "examples" / "scenarios"


def visit(server, page: Page, path: str) -> str:
    page.goto(server.base + path)
    return connected(page)


@pytest.mark.browser
@pytest.mark.parametrize("engine", ["redis", "cluster", "memory"])
def test_scenario_4_third_visit_to_a_category_within_a_day_gets_a_discount(serve, page, engine):
    server = serve(engine, rules=SCENARIOS / "4-category-return-discount.yaml")
    for path in ("/demo/category/shirts", "/demo/", "/demo/category/shoes", "/demo/category/shoes"):
        sid = visit(server, page, path)
    visit(server, page, "/demo/category/shirts")  # shirts twice: not yet
    server.session_when(sid, lambda s: s["pages"] == 5)
    expect(page.locator(OVERLAY)).to_have_count(0)
    page.wait_for_timeout(300)
    expect(page.locator(OVERLAY)).to_have_count(0)
    assert visit(server, page, "/demo/category/shirts") == sid  # the third time
    offer = page.locator(OVERLAY)
    expect(offer).to_be_visible(timeout=5000)
    expect(offer).to_contain_text("FAN15")
    assert server.session(sid)["fired"] == {"category-fan": 1}


@pytest.mark.browser
@pytest.mark.parametrize("engine", ["redis", "cluster", "memory"])
def test_scenario_4_counts_across_sessions_of_one_visitor(serve, browser, engine):
    server = serve(engine, rules=SCENARIOS / "4-category-return-discount.yaml")
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        sids = set()
        for _ in range(2):  # two sessions (tabs share the visitor id, not the session id)
            tab = context.new_page()
            sids.add(visit(server, tab, "/demo/category/shoes"))
            expect(tab.locator(OVERLAY)).to_have_count(0)
            tab.close()
        tab = context.new_page()
        sids.add(visit(server, tab, "/demo/category/shoes"))
        assert len(sids) == 3, "three sessions"
        expect(tab.locator(OVERLAY)).to_be_visible(timeout=5000)
    finally:
        context.close()


@pytest.mark.browser
@pytest.mark.parametrize("engine", ["redis", "cluster", "memory"])
def test_scenario_7_no_visitor_gets_more_than_two_messages_an_hour(serve, browser, engine):
    server = serve(engine, rules=SCENARIOS / "7-global-cap.yaml")
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        page = context.new_page()
        for n, path in enumerate(["/demo/products/linen-shirt", "/demo/products/oxford-shirt"]):
            sid = visit(server, page, path)
            exit_through_the_top(page)
            expect(page.locator(OVERLAY)).to_be_visible(timeout=1000)
            page.locator("#kairos-host .k-cta").click()  # accepted, not dismissed
            expect(page.locator(OVERLAY)).to_have_count(0)
        # A third moment in a new session of the same visitor: the global cap says no.
        tab = context.new_page()
        other_sid = visit(server, tab, "/demo/products/canvas-sneaker")
        assert other_sid != sid
        exit_through_the_top(tab)
        state = server.session_when(other_sid, lambda s: s["exit_intents"] == 1)
        assert state["exit_intents"] == 1 and state["fired"] == {}
        tab.wait_for_timeout(500)
        expect(tab.locator(OVERLAY)).to_have_count(0)
        # Someone else still gets it: it is this visitor's cap, not the rule's.
        stranger = browser.new_context().new_page()
        visit(server, stranger, "/demo/products/canvas-sneaker")
        exit_through_the_top(stranger)
        expect(stranger.locator(OVERLAY)).to_be_visible(timeout=1000)
        stranger.context.close()
    finally:
        context.close()


@pytest.mark.browser
@pytest.mark.parametrize("engine", ["redis", "cluster", "memory"])
def test_scenario_7_a_dismissed_offer_is_not_shown_again_in_the_session(serve, page, engine):
    server = serve(engine, rules=SCENARIOS / "7-global-cap.yaml")
    sid = visit(server, page, "/demo/products/linen-shirt")
    exit_through_the_top(page)
    expect(page.locator(OVERLAY)).to_be_visible(timeout=1000)
    page.locator("#kairos-host .k-close").click()
    expect(page.locator(OVERLAY)).to_have_count(0)
    visit(server, page, "/demo/products/oxford-shirt")  # the rule allows 3 a session, the cap 2 an hour
    exit_through_the_top(page)
    state = server.session_when(sid, lambda s: s["exit_intents"] == 2)
    assert state["exit_intents"] == 2 and state["fired"] == {"exit-offer": 1}
    page.wait_for_timeout(500)
    expect(page.locator(OVERLAY)).to_have_count(0)

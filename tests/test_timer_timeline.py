"""Every delayed rule's timer in the session's timeline: armed, then what became of it, on both engines.

What staff read on the session page and in `kairos explain`: when a timer was
armed and when it is due, then fired (with lateness), cancelled (by which
`unless`, in words), dropped or kept (the rule's `offline`), capped (which
cap), replaced (armed again), or its rule gone.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from conftest import login
from wsclient import Visitor

# A controllable clock: 2 min -> 0.6 s, 5 min -> 1.5 s, 10 min -> 3 s.
SCALE = ["--delay-scale", "0.005"]
BAR = "then: {show: bar, template: bar.html, place: bottom, ttl_s: 20, params: {message: 'Still thinking it over?', link_text: Look}}"
RULES = f"""\
version: 1
page_types:
  home: /demo/
  category: /demo/category/*
  product: /demo/products/*
  cart: /demo/cart
  checkout: /demo/checkout*
rules:
  - id: reminder
    when: page_view
    if: {{previous_page_type: product, previous_page_adds: 0, page_type: {{ne: product}}}}
    after: 2m
    unless: [add_to_cart, {{page_type: product}}]
    {BAR}
  - id: saved-cart
    when: cart
    if: {{cart_items: {{gt: 0}}}}
    after: 2m
    offline: next_page
    {BAR}
  - id: nag
    when: click
    after: 5m
    {BAR}
"""
# Long enough to take the rule out of the rules in force before it is due.
SLOW = f"""\
  - id: slow
    when: page_view
    if: {{page_type: home}}
    after: 10m
    {BAR}
"""
CATEGORY, CART, HOME = "/demo/category/shirts", "/demo/cart", "/demo/"


async def settled(server, sid: str, n: int) -> list[dict]:
    """The timer lines once there are `n` of them (the timer loop writes asynchronously)."""
    state = await asyncio.to_thread(
        server.session_when, sid, lambda s: sum(e["kind"] == "timer" for e in s["log"]) >= n, 10)
    return [e for e in reversed(state["log"]) if e["kind"] == "timer"]


def outcomes(lines: list[dict]) -> list[tuple[str, str]]:
    return [(e["rule"], e["outcome"]) for e in lines]


async def left_a_product(server, **kw) -> Visitor:
    """A visitor who leaves a product page for a category page: arms `reminder`."""
    v = await Visitor.arrive(server.ws_url, **kw)
    await v.leave()
    return await Visitor.arrive(server.ws_url, vid=v.vid, sid=v.sid, path=CATEGORY)


@pytest.fixture
def rules_file(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text(RULES + SLOW)
    return path


@pytest.mark.parametrize("engine", ["memory", "redis", "cluster"])
async def test_every_timer_outcome_is_in_the_session_timeline(serve, engine, rules_file):
    server = serve(engine, rules=rules_file, extra=SCALE)

    # armed, then fired: shown on the open page, with its due time and lateness
    v = await left_a_product(server)
    assert (await v.expect("show", timeout=10))["rule"] == "reminder"
    armed, fired = await settled(server, v.sid, 2)
    assert outcomes([armed, fired]) == [("reminder", "armed"), ("reminder", "fired")]
    assert armed["due_ms"] == armed["ts"] + armed["after_ms"] and armed["after_ms"] == 600
    assert fired["due_ms"] == armed["due_ms"] and fired["late_ms"] >= 0 and fired["ts"] >= armed["due_ms"]

    # cancelled by an event of `unless`, named in words
    v = await left_a_product(server)
    await v.events({"e": "add_to_cart", "sku": "X"})
    lines = await settled(server, v.sid, 2)
    assert outcomes(lines) == [("reminder", "armed"), ("reminder", "cancelled")]
    assert lines[1]["why"] == "the visitor adds to cart after it was armed"

    # cancelled by a condition of `unless` that holds when it comes due
    v = await left_a_product(server)
    await v.leave()
    v = await Visitor.arrive(server.ws_url, vid=v.vid, sid=v.sid)  # on a product page again
    lines = await settled(server, v.sid, 2)
    assert outcomes(lines) == [("reminder", "armed"), ("reminder", "cancelled")]
    assert lines[1]["why"] == "they are on a product page"

    # dropped: no page open, and `offline` is drop (the default)
    v = await left_a_product(server)
    await v.leave()
    lines = await settled(server, v.sid, 2)
    assert outcomes(lines) == [("reminder", "armed"), ("reminder", "dropped")]
    assert lines[1]["why"] == "no page open"

    # kept for the next page view: `offline: next_page`
    v = await Visitor.arrive(server.ws_url, path=CART)
    await v.events({"e": "cart", "value": 49.0, "items": 1})
    await v.leave()
    assert outcomes(await settled(server, v.sid, 2)) == [("saved-cart", "armed"), ("saved-cart", "kept")]

    # replaced: the cart changed again before the first timer came due
    v = await Visitor.arrive(server.ws_url, path=CART)
    await v.events({"e": "cart", "value": 49.0, "items": 1})
    await v.events({"e": "cart", "value": 98.0, "items": 2})
    lines = await settled(server, v.sid, 4)
    assert outcomes(lines) == [("saved-cart", "armed"), ("saved-cart", "replaced"), ("saved-cart", "armed"),
                               ("saved-cart", "fired")]
    assert lines[1]["due_ms"] == lines[0]["due_ms"], "the replaced line names the timer it supersedes"
    assert lines[3]["due_ms"] == lines[2]["due_ms"] >= lines[0]["due_ms"]

    # capped: staff paused the rule while its timer ran
    v = await Visitor.arrive(server.ws_url)
    await v.events({"e": "click", "tag": "a"})
    await settled(server, v.sid, 1)
    async with httpx.AsyncClient(base_url=server.base, headers=server.auth, timeout=5) as c:
        assert (await c.post("/api/rules/nag/pause", json={"paused": True})).status_code == 200
    lines = await settled(server, v.sid, 2)
    assert outcomes(lines) == [("nag", "armed"), ("nag", "capped")] and lines[1]["why"] == "paused"

    # rule gone: the rules in force changed before it came due
    v = await Visitor.arrive(server.ws_url, path=HOME)
    await settled(server, v.sid, 1)
    r = httpx.put(f"{server.base}/admin/rules", content=RULES,
                  headers={"Content-Type": "application/yaml", **server.auth}, timeout=5)
    assert r.status_code == 200, r.text
    assert outcomes(await settled(server, v.sid, 2)) == [("slow", "armed"), ("slow", "rule_gone")]


def explain(server, sid: str) -> str:
    done = subprocess.run([sys.executable, "-m", "kairos", "explain", sid, "--url", server.base,
                           "--token", server.admin_token], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout


async def test_kairos_explain_prints_each_timer_and_what_became_of_it(serve, rules_file):
    server = serve("redis", rules=rules_file, extra=SCALE)
    v = await left_a_product(server)
    await v.events({"e": "add_to_cart", "sku": "X"})
    await settled(server, v.sid, 2)
    out = explain(server, v.sid)
    assert "timers:" in out
    timers = out[out.index("timers:"):].splitlines()[1:]
    assert [line.split(None, 1)[1] for line in timers] == [
        "reminder armed, due in 0.6 s", "reminder cancelled: the visitor adds to cart after it was armed"], out


def test_the_session_page_shows_a_cancelled_timer_and_why(serve, page, rules_file):
    server = serve("memory", rules=rules_file, extra=SCALE)

    async def cancelled_reminder() -> str:
        v = await left_a_product(server)
        await v.events({"e": "add_to_cart", "sku": "X"})
        await settled(server, v.sid, 2)
        return v.sid

    # Sync Playwright holds this thread's event loop: the visitor gets a thread of its own.
    with ThreadPoolExecutor(1) as pool:
        sid = pool.submit(asyncio.run, cancelled_reminder()).result()
    login(page, server)
    page.goto(f"{server.base}/dashboard/sessions/{sid}")
    rows = page.locator("#detail-log tr.kind-timer")
    rows.first.wait_for()
    texts = [t.strip() for t in rows.all_inner_texts()]
    assert any("reminder cancelled: the visitor adds to cart after it was armed" in t for t in texts), texts
    assert any("reminder armed, due in 0.6 s" in t for t in texts), texts

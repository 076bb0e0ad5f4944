"""Delayed rules on running servers: arming, cancelling, delivery, processes and restarts."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from wsclient import Visitor

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "examples" / "scenarios"
# A controllable clock: the example files' real delays, shrunk. 3 min -> 0.9 s, 10 min -> 3 s.
SCALE = ["--delay-scale", "0.005"]
REMINDER = SCENARIOS / "3-product-reminder.yaml"
CART = SCENARIOS / "5-cart-recovery.yaml"


def timers_metric(server, outcome: str) -> int:
    return int(server.metric("kairos_timers_total", outcome=outcome) or 0)


async def test_leaving_a_product_page_with_its_product_in_the_cart_arms_no_reminder(serve):
    server = serve("memory", rules=REMINDER, extra=SCALE)
    v = await Visitor.arrive(server.ws_url)
    await v.events({"e": "add_to_cart", "sku": "X"})
    await asyncio.sleep(0.1)
    await v.leave()
    await Visitor.arrive(server.ws_url, vid=v.vid, sid=v.sid, path="/demo/category/shirts")
    await asyncio.sleep(0.1)
    assert server.metric("kairos_timers_pending") == 0


@pytest.mark.parametrize("engine", ["memory", "redis", "cluster"])
async def test_a_reminder_comes_after_the_delay_when_nothing_cancels_it(serve, engine):
    server = serve(engine, rules=REMINDER, extra=SCALE)
    v = await Visitor.arrive(server.ws_url)  # on a product page: arms the 3-minute reminder
    await v.leave()
    v = await Visitor.arrive(server.ws_url, vid=v.vid, sid=v.sid, path="/demo/category/shirts")
    started = time.monotonic()
    show = await v.expect("show", timeout=10)
    assert show["rule"] == "product-reminder" and show["kind"] == "bar"
    assert time.monotonic() - started > 0.3, "not before its (scaled) delay"
    assert server.session(v.sid)["timer_fires"] == {"product-reminder": 1}


@pytest.mark.parametrize("engine", ["memory", "redis", "cluster"])
async def test_adding_to_cart_after_leaving_cancels_the_reminder(serve, engine):
    server = serve(engine, rules=REMINDER, extra=SCALE)
    v = await Visitor.arrive(server.ws_url)
    await v.leave()
    v = await Visitor.arrive(server.ws_url, vid=v.vid, sid=v.sid, path="/demo/category/shirts")  # arms it
    await v.events({"e": "add_to_cart", "sku": "X"})  # a quick-add from the category page
    state = await asyncio.to_thread(server.session_when, v.sid, lambda s: s["timer_fires"], 10)
    assert state["timer_fires"] == {"product-reminder": 1}, "the timer came due"
    assert timers_metric(server, "cancelled") == 1
    with pytest.raises(asyncio.TimeoutError):
        await v.recv(timeout=0.5)


async def test_a_cancelling_condition_at_firing_time_holds_the_reminder_back(serve):
    server = serve("memory", rules=REMINDER, extra=SCALE)
    v = await Visitor.arrive(server.ws_url)
    await v.leave()
    v = await Visitor.arrive(server.ws_url, vid=v.vid, sid=v.sid, path="/demo/category/shirts")  # arms it
    await v.leave()
    v = await Visitor.arrive(server.ws_url, vid=v.vid, sid=v.sid)  # back on a product page when it comes due
    await asyncio.to_thread(server.session_when, v.sid, lambda s: s["timer_fires"], 10)
    assert timers_metric(server, "cancelled") == 1
    with pytest.raises(asyncio.TimeoutError):
        await v.recv(timeout=0.3)


@pytest.mark.parametrize("engine", ["memory", "redis", "cluster"])
async def test_a_nudge_due_while_away_is_shown_on_the_next_page_view(serve, engine):
    server = serve(engine, rules=CART, extra=SCALE)
    v = await Visitor.arrive(server.ws_url, path="/demo/cart")
    await v.events({"e": "cart", "value": 49.0, "items": 1})
    await v.leave()  # gone before the 10 (scaled: 3 s) minutes are up
    state = await asyncio.to_thread(server.session_when, v.sid, lambda s: s["pending"], 15)
    assert state["pending"] == ["cart-recovery"]
    back = await Visitor.arrive(server.ws_url, vid=v.vid, sid=v.sid, path="/demo/")
    show = await back.expect("show")
    assert show["rule"] == "cart-recovery"
    assert server.session(v.sid)["pending"] == [], "kept for one page view only"


async def test_a_rule_that_drops_offline_nudges_drops_them(serve):
    server = serve("memory", rules=REMINDER, extra=SCALE)
    v = await Visitor.arrive(server.ws_url)
    await v.leave()
    v = await Visitor.arrive(server.ws_url, vid=v.vid, sid=v.sid, path="/demo/category/shirts")
    await v.leave()  # gone, from a page that does not cancel the reminder
    await asyncio.to_thread(server.session_when, v.sid, lambda s: s["timer_fires"], 10)
    assert timers_metric(server, "dropped") == 1
    back = await Visitor.arrive(server.ws_url, vid=v.vid, sid=v.sid, path="/demo/")
    with pytest.raises(asyncio.TimeoutError):
        await back.recv(timeout=0.5)


@pytest.mark.parametrize("engine", ["redis", "cluster"])
async def test_a_timer_fired_by_another_process_reaches_the_socket_here(serve, engine):
    # Two processes on one Redis (or one cluster): the visitor's socket is on `a`, which
    # runs no timer loop; `b` claims the timer and hands the nudge to `a` over pub/sub.
    from conftest import Server

    a = serve(engine, rules=REMINDER, extra=SCALE + ["--no-timers"])
    b = Server("redis", a.redis_url, REMINDER, SCALE)
    try:
        for _ in range(3):
            v = await Visitor.arrive(a.ws_url)
            await v.leave()
            v = await Visitor.arrive(a.ws_url, vid=v.vid, sid=v.sid, path="/demo/category/shirts")
            assert (await v.expect("show", timeout=10))["rule"] == "product-reminder"
            await v.leave()
        assert timers_metric(b, "forwarded") == 3
        assert timers_metric(a, "shown") == timers_metric(a, "forwarded") == 0
    finally:
        b.stop()


@pytest.mark.parametrize("engine", ["redis", "cluster"])
def test_two_processes_fire_1000_timers_due_at_once_exactly_once(serve, engine):
    """Arm 1,000 timers due in the same second, then let two processes race for them."""
    a = serve(engine, rules=CART, extra=SCALE)
    redis_url = a.redis_url
    from conftest import Server, stored_session
    from kairos.engine import create_engine
    from kairos.ws import new_sid

    def engine_here():
        return create_engine("redis", redis_url=redis_url, session_ttl_s=1800)

    async def pending() -> int:
        e = engine_here()
        await e.start()
        try:
            return await e.pending_timers()
        finally:
            await e.close()

    async def arm() -> list[str]:
        from kairos.rules.delayed import Timer
        from kairos.session import hello_ops
        from kairos.wire import Hello, Page

        e = engine_here()
        await e.start()
        sids, due = [], int(time.time() * 1000) + 3000
        for n in range(1000):
            vid = f"v_burst{n:05d}"
            sid = new_sid(vid)  # in its visitor's slot, as a server opens it (a cluster needs it)
            page = Page(url="http://x/demo/cart", path="/demo/cart")
            hello = Hello("demo", vid, sid, page, True, False, False)
            ops = hello_ops(hello, "cart", due - 3000) + [("incr", "connected", "-1"), ("set", "cart_items", "1")]
            await e.apply(sid, ops, [], due - 3000)
            sids.append(sid)
        await e.arm_timers([Timer(sid, "cart-recovery", due, due - 3000, {"purchase": 0}) for sid in sids])
        await e.close()
        return sids

    b = Server("redis", redis_url, CART, SCALE)
    try:
        sids = asyncio.run(arm())
        deadline = time.monotonic() + 30
        while asyncio.run(pending()) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(0.5)
        fires = [int(stored_session(redis_url, sid).get("x:cart-recovery", 0)) for sid in sids]
        assert fires.count(1) == 1000, f"lost: {fires.count(0)}, twice or more: {sum(f > 1 for f in fires)}"
        kept_a, kept_b = timers_metric(a, "kept"), timers_metric(b, "kept")
        assert kept_a + kept_b == 1000
        assert kept_a > 0 and kept_b > 0, f"both processes claimed some ({kept_a} / {kept_b})"
    finally:
        b.stop()


@pytest.mark.parametrize("engine", ["redis", "cluster"])
def test_a_restart_loses_no_pending_timer(serve, engine):
    server = serve(engine, rules=CART, extra=SCALE)

    async def shop_and_leave(n: int) -> str:
        v = await Visitor.arrive(server.ws_url, path="/demo/cart")
        await v.events({"e": "cart", "value": 10.0 + n, "items": 1})
        await asyncio.sleep(0.05)
        await v.leave()
        return v.sid

    async def shoppers() -> list[str]:
        return [await shop_and_leave(n) for n in range(20)]

    sids = asyncio.run(shoppers())
    server.proc.kill()  # not a clean stop: the process dies with 20 timers pending
    server.proc.wait(5)
    time.sleep(3.5)  # they come due while no process runs
    server.start()
    deadline = time.monotonic() + 20
    states = []
    while time.monotonic() < deadline:
        states = [server.session(sid) for sid in sids]
        if all(s["pending"] == ["cart-recovery"] for s in states):
            break
        time.sleep(0.2)
    assert [s["pending"] for s in states] == [["cart-recovery"]] * 20
    assert all(s["timer_fires"] == {"cart-recovery": 1} for s in states)
    assert httpx.get(f"{server.base}/healthz").status_code == 200

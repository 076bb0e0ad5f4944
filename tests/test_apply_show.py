"""A batch and the show it earned are stored in one call (RedisEngine.apply_deciding, lua/apply_show.lua).

The push waits for one round trip to Redis, not two (issue 16). What a visitor and an
operator see must be what the batch and then the claim, one after the other, would
have made: the same session, the same timeline, the same visitor caps and counters.
Whenever the engine cannot claim with the batch (the session changed meanwhile, the
visitor's caps say no, a rule-wide window, a pause), it stores the batch alone and the
caller claims as ever.
"""

from __future__ import annotations

import pytest

from kairos.caps import Caps, Window
from kairos.engine.base import Outcome, Show
from kairos.engine.redis import RedisEngine
from kairos.session import hello_ops, log_entry
from kairos.wire import Hello, Page

from conftest import stored_session
from test_compare_and_set import clicks, now

SID, VID = "s_apsh00001", "v_apsh00001"


async def opened(e: RedisEngine, sid: str = SID, t: int | None = None) -> None:
    t = t or now()
    page = Page(url="https://shop.example/demo/products/linen-shirt", path="/demo/products/linen-shirt",
                title="Linen shirt", prod={"name": "Linen shirt", "price": 59.9})
    h = Hello(site="demo", vid=VID, sid=sid, page=page, consent=True, dnt=False, gpc=False, tz=0, lang="en")
    await e.apply(sid, hello_ops(h, "product", t), [log_entry("event", t, e="page_view")], t)
    await e.apply(sid, clicks(1), [], t)  # the engine now keeps the session: the next batch may show


def offer(oid: str = "offer.1", caps: Caps = Caps(priority=1)) -> Show:
    return Show("offer", oid, caps, log_entry("show", now(), oid=oid, rule="offer"), "", b"<show frame>")


class Calls:
    """The engine's round trips, by call name."""

    def __init__(self, e: RedisEngine) -> None:
        self.names: list[str] = []
        e.on_roundtrip = lambda call, seconds: self.names.append(call)


async def test_a_show_earned_by_a_batch_is_stored_with_it_in_one_round_trip(two):
    a, _ = two
    await opened(a)
    calls, picked = Calls(a), []

    def decide(state):
        picked.append(state.clicks)  # chosen from the state the batch makes
        return Outcome([log_entry("score", now(), score="exit_risk")], offer())

    state, outcome = await a.apply_deciding(SID, clicks(2), [log_entry("event", now(), e="click")], now(), decide)
    assert picked == [3] and outcome.show is not None and outcome.show.oid == "offer.1"
    assert calls.names == ["apply_show"], "one round trip for the batch and its show"
    # What is stored is the batch, then the show, as claim_show would have recorded it.
    stored = await a.session(SID)
    assert (stored.clicks, stored.fired, stored.onscreen) == (3, {"offer": 1}, "offer.1")
    assert [e["kind"] for e in await a.log(SID)][:3] == ["show", "score", "event"], \
        "the batch's lines, what its state called for, then the show"
    totals = {}  # counted, as claim_show counts
    for counters in (await a.stats(now() - 600_000, now())).values():
        for name, n in counters.items():
            totals[name] = totals.get(name, 0) + n
    assert totals.get("offer|triggered") == 1 and totals.get("offer|shown") == 1
    # The visitor's shows were recorded: a cooldown now holds the same rule back.
    cooling = Caps(priority=5, cooldown_ms=3_600_000)
    assert await a.claim_show(SID, VID, "offer", "offer.2", cooling, log_entry("show", now()), now()) == "cooldown"
    # And the next batch is compared and set over the show, not applied in Redis.
    before = a.applied_here["apply"]
    state = await a.apply(SID, clicks(1), [], now())
    assert a.applied_here["apply"] == before + 1 and state.onscreen == "offer.1"


async def test_what_is_stored_is_what_the_batch_then_the_claim_would_store(two, clean_redis):
    a, _ = two
    other, t = "s_apsh00002", now()
    await opened(a, SID, t)
    await opened(a, other, t)
    ops, lines = clicks(3), [log_entry("event", t, e="click")]
    await a.apply_deciding(SID, ops, lines, t, lambda state: Outcome(show=offer()))
    await a.apply(other, ops, lines, t)
    assert await a.claim_show(other, VID, "offer", "offer.1", Caps(priority=1), offer().log, t) == "ok"
    one, two_calls = stored_session(clean_redis, SID), stored_session(clean_redis, other)
    assert one == two_calls
    assert [e["kind"] for e in await a.log(SID)] == [e["kind"] for e in await a.log(other)]


async def test_the_visitors_caps_stop_the_show_and_the_batch_is_still_stored(two):
    a, _ = two
    await opened(a)
    hourly = Caps(priority=1, per_visitor=Window(1, 3_600_000))
    await a.apply_deciding(SID, clicks(1), [], now(), lambda state: Outcome(show=offer("offer.1", hourly)))
    assert (await a.session(SID)).onscreen == "offer.1"
    assert await a.record_feedback(SID, "offer.1", "clicked", log_entry("feedback", now()), now())
    calls, line = Calls(a), log_entry("score", now(), score="exit_risk")
    state, outcome = await a.apply_deciding(SID, clicks(2), [log_entry("event", now(), e="click")], now(),
                                            lambda state: Outcome([line], offer("offer.2", hourly)))
    assert outcome == Outcome([line]) and calls.names == ["apply_show"], \
        "the batch and its lines stored; the show not"
    stored = await a.session(SID)
    assert (stored.clicks, stored.fired, stored.onscreen) == (4, {"offer": 1}, None), "the batch, not the show"
    assert "offer.2" not in stored.overlays
    # The caller claims as ever: the refusal is Redis's to log, once per reason in a row.
    assert await a.claim_show(SID, VID, "offer", "offer.2", hourly, offer("offer.2").log, now()) == "visitor_capped"
    assert [(e["kind"], e.get("why")) for e in (await a.log(SID))[:3]] == [
        ("skip", "visitor_capped"), ("score", None), ("event", None)]


async def test_a_session_written_meanwhile_gets_the_batch_and_no_show(two):
    a, b = two
    await opened(a)
    await b.apply(SID, clicks(10), [], now())  # another process, behind a's back
    assert await b.claim_show(SID, VID, "chat", "chat.1", Caps(priority=5), log_entry("show", now()), now()) == "ok"
    picks = []
    line = log_entry("score", now(), score="exit_risk")
    state, outcome = await a.apply_deciding(SID, clicks(1), [], now(),
                                            lambda state: picks.append(1) or Outcome([line], offer()))
    assert outcome is None and picks == [1], "decided on a stale copy: nothing of it stored with the batch"
    assert a.stale["apply_show"] == 1
    stored = await b.session(SID)
    assert (stored.clicks, stored.onscreen) == (12, "chat.1"), "nothing b wrote is lost, and a's show was not stored"
    assert state.clicks == 12 and state.onscreen == "chat.1", "the state handed back is the batch on b's session"
    assert "score" not in [e["kind"] for e in await a.log(SID)], "nor its lines: the caller logs them after"


@pytest.mark.parametrize("why", ["busy", "capped", "paused", "rule window"])
async def test_what_the_engine_cannot_claim_with_the_batch_it_leaves_to_the_claim(two, why):
    a, _ = two
    await opened(a)
    show = offer()
    if why == "busy":
        assert await a.claim_show(SID, VID, "chat", "chat.1", Caps(priority=5), log_entry("show", now()), now()) == "ok"
    elif why == "capped":
        show = offer("offer.2", Caps(per_session=1, priority=1))
        assert await a.claim_show(SID, VID, "offer", "offer.1", show.caps, log_entry("show", now()), now()) == "ok"
        assert await a.record_feedback(SID, "offer.1", "clicked", log_entry("feedback", now()), now())
    elif why == "paused":
        await a.set_paused("offer", True, now())
    else:
        show = offer("offer.1", Caps(priority=1, per_rule=Window(100, 60_000)))
    calls, line = Calls(a), log_entry("score", now(), score="exit_risk")
    state, outcome = await a.apply_deciding(SID, clicks(1), [], now(), lambda state: Outcome([line], show))
    assert outcome == Outcome([line]) and calls.names == ["apply"], \
        "the batch and its lines, compared and set; the show left to the claim"
    assert [e["kind"] for e in await a.log(SID)][0] == "score"
    assert state.clicks == 2 and (await a.session(SID)).clicks == 2
    assert show.oid not in (await a.session(SID)).overlays


async def test_no_pick_for_a_session_the_engine_does_not_keep(two):
    a, _ = two
    page = Page(url="https://shop.example/", path="/", title="Home")
    h = Hello(site="demo", vid=VID, sid=SID, page=page, consent=True, dnt=False, gpc=False, tz=0, lang="en")
    a.closed(SID)
    picks = []
    state, outcome = await a.apply_deciding(SID, hello_ops(h, "other", now()), [], now(),
                                            lambda state: picks.append(1) or Outcome(show=offer()))
    assert (outcome, picks) == (None, []) and state.vid == VID

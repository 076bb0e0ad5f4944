"""A batch the server applies itself is stored only over the state it applied it to (lua/apply.lua).

The Redis engine keeps each open session's stored bytes and, at the next batch, applies
the ops in Python and asks Redis to store the result if the session is still at the
version it saw. Whatever else writes the session in between — a claim, feedback, another
process, an erasure — must make the batch be applied again to the session as that writer
left it: nothing another writer did is lost.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from kairos.caps import Caps, Window
from kairos.engine.base import SessionGone
from kairos.engine.redis import RedisEngine
from kairos.session import event_ops, hello_ops, log_entry
from kairos.wire import Event, Hello, Page

SID, VID = "s_cas000001", "v_cas000001"


def now() -> int:
    return int(time.time() * 1000)


def classify(path: str, declared: str = "") -> str:
    return "product" if "/products/" in path else "other"


def clicks(n: int = 1) -> list:
    return event_ops([Event("click", i, {"tag": "a"}) for i in range(n)], classify, now())


async def opened(e: RedisEngine, sid: str = SID) -> None:
    page = Page(url="https://shop.example/demo/products/linen-shirt", path="/demo/products/linen-shirt",
                title="Linen shirt", prod={"name": "Linen shirt", "price": 59.9})
    h = Hello(site="demo", vid=VID, sid=sid, page=page, consent=True, dnt=False, gpc=False, tz=0, lang="en")
    await e.apply(sid, hello_ops(h, "product", now()), [log_entry("event", now(), e="page_view")], now())


async def test_batches_after_the_first_are_applied_by_the_server_and_stored_as_redis_would(two):
    a, _ = two
    await opened(a)
    for _ in range(5):
        state = await a.apply(SID, clicks(2), [log_entry("event", now(), e="click")], now())
    assert state.clicks == 10
    assert a.applied_here["apply"] >= 4, "every batch after the first is stored by compare-and-set"
    # What is stored is what Redis would have made of the same ops (read afresh, not from the process).
    assert (await a.session(SID)).clicks == 10
    assert len(await a.log(SID)) == 6


async def test_another_process_writing_in_between_loses_nothing(two):
    a, b = two
    await opened(a)
    await a.apply(SID, clicks(1), [], now())
    await a.apply(SID, clicks(1), [], now())  # a now holds the session as stored
    await b.apply(SID, clicks(10), [], now())  # b writes behind a's back
    before, stale = a.applied_here["apply"], a.stale["apply"]
    state = await a.apply(SID, clicks(1), [], now())
    assert state.clicks == 13, "a's stale copy was not stored over b's batch"
    assert a.stale["apply"] == stale + 1, "the comparison failed: a applied the batch again to the session b left"
    state = await a.apply(SID, clicks(1), [], now())
    assert (state.clicks, a.stale["apply"], a.applied_here["apply"]) == (14, stale + 1, before + 2), \
        "and a holds the session again"
    assert (await b.session(SID)).clicks == 14


async def test_a_claim_and_feedback_in_between_are_kept(two):
    a, _ = two
    await opened(a)
    await a.apply(SID, clicks(1), [], now())
    caps = Caps(per_session=1, priority=1)
    assert await a.claim_show(SID, VID, "offer", "offer.1", caps, log_entry("show", now()), now()) == "ok"
    state = await a.apply(SID, clicks(1), [], now())
    assert state.onscreen == "offer.1" and state.fired == {"offer": 1}
    assert await a.record_feedback(SID, "offer.1", "dismissed", log_entry("feedback", now()), now())
    state = await a.apply(SID, clicks(1), [], now())
    assert "offer" in state.dismissed and state.onscreen is None
    assert await a.claim_show(SID, VID, "offer", "offer.2", caps, log_entry("show", now()), now()) == "dismissed"


async def test_a_session_erased_or_lost_between_batches_is_not_written_back(two, clean_redis):
    import redis as sync_redis

    a, _ = two
    await opened(a)
    await a.apply(SID, clicks(1), [], now())
    await a.apply(SID, clicks(1), [], now())
    assert SID in await a.forget(VID, SID)
    with pytest.raises(SessionGone):
        await a.apply(SID, clicks(1), [], now())
    assert await a.session(SID) is None
    # Redis lost it (a restart without persistence): the same.
    other = "s_cas000002"
    await opened(a, other)
    await a.apply(other, clicks(1), [], now())
    sync_redis.Redis.from_url(clean_redis).flushdb()
    with pytest.raises(SessionGone):
        await a.apply(other, clicks(1), [], now())
    assert sync_redis.Redis.from_url(clean_redis).dbsize() == 0


async def test_a_session_stored_before_versions_is_read_and_versioned_at_its_next_write(two, clean_redis):
    """A session an older Kairos stored (its MessagePack map, no version) while a page was open."""
    import msgpack
    import redis as sync_redis
    from conftest import stored_map
    from kairos.engine import keys

    a, _ = two
    r = sync_redis.Redis.from_url(clean_redis)
    await opened(a)
    await a.apply(SID, clicks(1), [], now())
    old = stored_map(r.get(keys.session(SID)))
    r.set(keys.session(SID), msgpack.packb(old), ex=60)  # written by the older Kairos meanwhile
    assert (await a.apply(SID, clicks(1), [], now())).clicks == 2
    assert r.get(keys.session(SID))[:2] == b"\xaeL", "Redis applied the batch and stored a version"
    before = a.applied_here["apply"]
    assert (await a.apply(SID, clicks(1), [], now())).clicks == 3
    assert a.applied_here["apply"] == before + 1 and r.get(keys.session(SID))[:2] == b"\xaeP"
    # Kept bytes without a version (a reply of the older layout) are never compared.
    a._seen[SID] = (time.monotonic(), msgpack.packb(old))
    assert (await a.apply(SID, clicks(1), [], now())).clicks == 4
    assert a.applied_here["apply"] == before + 1


async def test_a_closed_page_load_lets_go_of_the_session(two):
    a, _ = two
    await opened(a)
    await a.apply(SID, clicks(1), [], now())
    a.closed(SID)
    before = a.applied_here["apply"]
    assert (await a.apply(SID, clicks(1), [], now())).clicks == 2
    assert a.applied_here["apply"] == before, "nothing kept: Redis applied it"


async def test_concurrent_batches_of_one_process_lose_nothing(two):
    a, b = two
    await opened(a)
    await a.apply(SID, clicks(1), [], now())
    await asyncio.gather(*(e.apply(SID, clicks(1), [], now()) for _ in range(100) for e in (a, a, b)))
    assert (await b.session(SID)).clicks == 301


async def test_a_process_keeps_busy_sessions_only(two, monkeypatch):
    import kairos.engine.redis as redis_engine

    a, _ = two
    sids = [f"s_cas00001{i}" for i in range(3)]
    for sid in sids:
        await opened(a, sid)
    # At most KEEP_SEEN sessions: the least recently written goes first.
    monkeypatch.setattr(redis_engine, "KEEP_SEEN", 2)
    for sid in sids:
        await a.apply(sid, clicks(1), [], now())
    before = a.applied_here["apply"]
    await a.apply(sids[0], clicks(1), [], now())
    assert a.applied_here["apply"] == before, "the oldest of three was let go"
    await a.apply(sids[2], clicks(1), [], now())
    assert a.applied_here["apply"] == before + 1, "the newest was kept"
    # A session quiet for KEEP_SEEN_S is let go at the next write of any session.
    monkeypatch.setattr(redis_engine, "KEEP_SEEN_S", 0.0)
    await a.apply(sids[1], clicks(1), [], now())
    before = a.applied_here["apply"]
    await a.apply(sids[2], clicks(1), [], now())
    assert a.applied_here["apply"] == before
    assert [(await a.session(sid)).clicks for sid in sids] == [2, 2, 3]


async def test_the_batch_after_a_claim_or_feedback_is_still_compared_and_set(two):
    a, _ = two
    await opened(a)
    await a.apply(SID, clicks(1), [], now())
    caps = Caps(priority=1)
    for n in range(3):
        assert await a.claim_show(SID, VID, "offer", f"offer.{n}", caps, log_entry("show", now()), now()) == "ok"
        before = a.applied_here["apply"]
        await a.apply(SID, clicks(1), [], now())
        assert a.applied_here["apply"] == before + 1, "the claim handed back the session as it stored it"
        assert await a.record_feedback(SID, f"offer.{n}", "clicked", log_entry("feedback", now()), now())
        state = await a.apply(SID, clicks(1), [], now())
        assert a.applied_here["apply"] == before + 2, "and so did the feedback"
    assert (state.clicks, state.fired, state.onscreen) == (7, {"offer": 3}, None)
    assert (await a.session(SID)).overlays["offer.2"].status == "clicked"


async def test_a_claim_for_a_session_this_process_does_not_keep_keeps_nothing(two):
    a, b = two
    await opened(a)
    await a.apply(SID, clicks(1), [], now())
    # b (a timer's process, say) claims for a session whose page is on a.
    assert await b.claim_show(SID, VID, "offer", "offer.1", Caps(priority=1), log_entry("show", now()), now()) == "ok"
    assert SID not in b._seen
    stale = a.stale["apply"]
    state = await a.apply(SID, clicks(1), [], now())
    assert a.stale["apply"] == stale + 1 and state.onscreen == "offer.1", "a's copy was stale: applied to b's show"


async def test_a_show_and_its_answer_are_compared_and_set_too_and_refused_as_redis_would(two):
    a, b = two
    await opened(a)
    await a.apply(SID, clicks(1), [], now())
    once = Caps(per_session=1, priority=1)
    assert await a.claim_show(SID, VID, "offer", "offer.1", once, log_entry("show", now()), now()) == "ok"
    assert a.applied_here["claim_show"] == 1
    assert await a.record_feedback(SID, "offer.1", "dismissed", log_entry("feedback", now()), now())
    assert a.applied_here["feedback"] == 1
    # What a's own checks refuse goes to Redis, which refuses it the same way and logs it once.
    assert await a.claim_show(SID, VID, "offer", "offer.2", once, log_entry("show", now()), now()) == "dismissed"
    assert a.applied_here["claim_show"] == 1
    # The visitor's caps are Redis's alone: a second tab (b) took the visitor's one show of
    # the hour; a's copy of its own session says yes, the visitor's cap says no.
    hourly = Caps(priority=1, per_visitor=Window(1, 3_600_000))
    other = "s_cas000003"
    await opened(b, other)
    assert await b.claim_show(other, VID, "banner", "banner.1", hourly, log_entry("show", now()), now()) == "ok"
    assert await a.claim_show(SID, VID, "banner", "banner.2", hourly, log_entry("show", now()), now()) == "visitor_capped"
    state = await a.session(SID)
    assert (state.fired, sorted(state.dismissed), state.onscreen) == ({"offer": 1}, ["offer"], None)
    skips = [e for e in await a.log(SID) if e["kind"] == "skip"]
    assert [(e["rule"], e["why"]) for e in skips] == [("banner", "visitor_capped"), ("offer", "dismissed")]
    # Feedback for an overlay a's copy never saw: Redis answers, as before.
    assert not await a.record_feedback(SID, "offer.9", "clicked", log_entry("feedback", now()), now())


async def test_feedback_and_claims_do_not_write_over_another_process(two):
    a, b = two
    await opened(a)
    await a.apply(SID, clicks(1), [], now())
    assert await a.claim_show(SID, VID, "offer", "offer.1", Caps(priority=1), log_entry("show", now()), now()) == "ok"
    await b.apply(SID, clicks(10), [], now())  # behind a's back
    assert await a.record_feedback(SID, "offer.1", "clicked", log_entry("feedback", now()), now())
    await b.apply(SID, clicks(10), [], now())
    assert await a.claim_show(SID, VID, "offer", "offer.2", Caps(priority=1), log_entry("show", now()), now()) == "ok"
    state = await b.session(SID)
    assert state.clicks == 21, "neither a's feedback nor its claim wrote a's stale copy over b's batches"
    assert (state.overlays["offer.1"].status, state.onscreen, state.fired) == ("clicked", "offer.2", {"offer": 2})

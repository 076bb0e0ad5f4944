"""The rule counters are counted in the process and written to Redis every STATS_FLUSH_S (issue 16).

A process reads its own counts at once, another process's within a flush; a
graceful stop writes what is pending, and counts that met Redis away are written
once it is back. Real Redis servers: the shared test database, or one of the test's own.
"""

from __future__ import annotations

import asyncio
import time

import pytest
import redis
import redis.asyncio as aioredis

from conftest import OwnRedis
from kairos.caps import Caps
from kairos.engine.redis import STATS_FLUSH_S, RedisEngine
from kairos.session import hello_ops, log_entry
from kairos.wire import Hello, Page

CLAIMS = 50
# What counted() counts, in one bucket.
EXPECTED = {"offer|triggered": CLAIMS, "offer|shown": CLAIMS, "offer|clicked": CLAIMS, "offer|converted": 1,
            "*|purchases": 1}


def now() -> int:
    return int(time.time() * 1000)


async def counted(e: RedisEngine, t: int) -> None:
    """A session shown the rule CLAIMS times, each nudge clicked, then a purchase: EXPECTED, at `t`."""
    sid, vid = "s_flush00001", "v_flush00001"
    page = Page(url="https://shop.example/demo/products/linen-shirt", path="/demo/products/linen-shirt",
                title="Linen shirt", prod={"name": "Linen shirt", "price": 59.9})
    h = Hello(site="demo", vid=vid, sid=sid, page=page, consent=True, dnt=False, gpc=False, tz=0, lang="en")
    await e.apply(sid, hello_ops(h, "product", t), [log_entry("event", t, e="page_view")], t)
    for n in range(CLAIMS):
        assert await e.claim_show(sid, vid, "offer", f"offer.{n}", Caps(0, 0), log_entry("show", t), t) == "ok"
        assert await e.record_feedback(sid, f"offer.{n}", "clicked", log_entry("feedback", t), t)
    assert await e.record_conversion(vid, t, 3_600_000) == ["offer"]


async def one_bucket(e: RedisEngine, t: int) -> dict[str, int]:
    counts = await e.stats(t, t)
    assert len(counts) <= 1
    return next(iter(counts.values()), {})


async def seen_within(e: RedisEngine, t: int, seconds: float) -> dict[str, int]:
    """The counts `e` reads once they are EXPECTED, or the last read at the deadline."""
    deadline = time.monotonic() + seconds
    while (got := await one_bucket(e, t)) != EXPECTED and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return got


async def test_a_process_reads_its_own_counts_at_once_and_another_process_within_a_flush(two):
    a, b = two
    t = now()
    await counted(a, t)
    assert await one_bucket(a, t) == EXPECTED, "stats() writes this process's pending counts first"
    # b counted nothing: what it reads is what a's stats() wrote, or else a's next flush.
    assert await seen_within(b, t, 2 * STATS_FLUSH_S) == EXPECTED


async def test_another_process_reads_the_counts_within_two_flushes_without_any_read_here(two):
    a, b = two
    t = now()
    await counted(a, t)
    # Nothing on a asks for its counts: only its own flush writes them.
    assert await seen_within(b, t, 2 * STATS_FLUSH_S) == EXPECTED
    assert await one_bucket(a, t) == EXPECTED, "each count once: the flush and the read do not both add it"


async def test_close_writes_the_pending_counts(two):
    a, b = two
    t = now()
    await counted(a, t)
    await a.close()  # at once: the last counts are pending, the next flush a second away
    assert await one_bucket(b, t) == EXPECTED


async def test_counts_that_met_redis_away_are_written_once_it_is_back(tmp_path):
    # Redis with an append-only file: whatever was written before the kill comes back
    # with it, so the counts add up only if nothing pending at the kill was dropped.
    own = OwnRedis(aof_dir=tmp_path)
    own.start()
    a, b = RedisEngine(own.url, session_ttl_s=60), RedisEngine(own.url, session_ttl_s=60)
    try:
        await a.start(), await b.start()
        t = now()
        await counted(a, t)
        own.kill()
        with pytest.raises(redis.ConnectionError):
            await a.stats(t, t)  # a write that fails: its counts must stay for the next
        await asyncio.sleep(1.5 * STATS_FLUSH_S)  # and a background write that fails as well
        own.start()
        # a's background write, a second after Redis is back at most; b reads nothing of its own.
        assert await seen_within(b, t, 2 * STATS_FLUSH_S + 1) == EXPECTED
    finally:
        await a.close(), await b.close()
        own.kill()


async def test_a_second_of_counts_costs_redis_one_hincrby_per_counter(own_redis):
    a = RedisEngine(own_redis.url, session_ttl_s=60)
    r = aioredis.Redis.from_url(own_redis.url)
    try:
        await a.start()
        t = now()
        await r.config_resetstat()
        started = time.monotonic()
        await counted(a, t)
        await a.stats(t, t)
        flushes = 1 + int((time.monotonic() - started) / STATS_FLUSH_S) + 1  # stats()'s, and the timer's meanwhile
        hincrby = (await r.info("commandstats")).get("cmdstat_hincrby", {}).get("calls", 0)
        # Counted at every claim, it was 152 (a HINCRBY per count), with nearly as many EXPIREs.
        assert 0 < hincrby <= flushes * len(EXPECTED)
    finally:
        await a.close()
        await r.aclose()

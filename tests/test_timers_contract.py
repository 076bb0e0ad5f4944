"""The timer queue, one contract for both engines (Redis: the real server)."""

from __future__ import annotations

import asyncio
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from kairos.engine import MemoryEngine
from kairos.rules.delayed import Timer

from test_engine_contract import engine, make_engine  # noqa: F401  (the two-engine fixture)


def timer(n: int, due: int, rule: str = "r") -> Timer:
    return Timer(f"s_timer{n:05d}", rule, due, due - 1000, {"add_to_cart": n % 3})


async def test_due_timers_come_out_earliest_first_and_only_once(engine):
    await engine.arm_timers([timer(1, 3000), timer(2, 1000), timer(3, 2000), timer(4, 9000)])
    assert await engine.next_due_ms() == 1000
    first = await engine.claim_due(2500)
    assert [t.sid for t in first] == ["s_timer00002", "s_timer00003"]
    assert first[0] == timer(2, 1000), "the payload survives the queue"
    assert await engine.claim_due(2500) == []
    assert [t.sid for t in await engine.claim_due(10_000)] == ["s_timer00001", "s_timer00004"]
    assert await engine.next_due_ms() is None and await engine.pending_timers() == 0


async def test_arming_again_replaces_the_pending_timer(engine):
    await engine.arm_timers([timer(1, 1000)])
    await engine.arm_timers([timer(1, 5000)])
    assert await engine.pending_timers() == 1
    assert await engine.claim_due(2000) == []
    assert [t.due_ms for t in await engine.claim_due(5000)] == [5000]


async def test_one_timer_per_session_and_rule(engine):
    await engine.arm_timers([timer(1, 1000, "a"), timer(1, 1000, "b"), timer(2, 1000, "a")])
    assert sorted((t.sid, t.rule) for t in await engine.claim_due(1000)) == [
        ("s_timer00001", "a"), ("s_timer00001", "b"), ("s_timer00002", "a")]


async def test_concurrent_claimers_share_the_due_timers_without_overlap(engine):
    await engine.arm_timers([timer(n, 1000 + n % 7) for n in range(1000)])
    batches = await asyncio.gather(*(engine.claim_due(5000, limit=50) for _ in range(40)))
    claimed = [t.key for batch in batches for t in batch]
    assert len(claimed) == len(set(claimed)) == 1000


async def test_two_redis_clients_claiming_at_once_never_get_the_same_timer(clean_redis):
    a, b = make_engine("redis", clean_redis), make_engine("redis", clean_redis)
    await a.start(), await b.start()
    try:
        await a.arm_timers([timer(n, 1000) for n in range(1000)])
        results = await asyncio.gather(*(e.claim_due(5000, limit=25) for _ in range(30) for e in (a, b)))
        claimed = [t.key for batch in results for t in batch]
        assert len(claimed) == len(set(claimed)) == 1000
    finally:
        await a.close(), await b.close()


async def test_the_timer_queue_expires_in_redis(clean_redis):
    import redis as sync_redis

    e = make_engine("redis", clean_redis)
    await e.start()
    try:
        await e.arm_timers([timer(1, 1000)])
        r = sync_redis.Redis.from_url(clean_redis)
        for key in r.keys("kairos:{timers}:*"):
            assert r.ttl(key) > 0, key
    finally:
        await e.close()


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["arm", "claim"]), st.integers(0, 5), st.integers(0, 50)), max_size=60))
def test_memory_queue_order_and_once_whatever_the_sequence(steps):
    """Claims come out in due order, never before they are due, each armed due time at most once,
    and what is left pending is exactly the latest arming of each unclaimed key."""
    async def run() -> None:
        q = MemoryEngine()
        latest: dict[str, int] = {}
        clock = 0
        for action, n, x in steps:
            if action == "arm":
                t = timer(n, clock + x)
                await q.arm_timers([t])
                latest[t.key] = t.due_ms
            else:
                clock += x
                out = await q.claim_due(clock, limit=random.randint(1, 4))
                assert [t.due_ms for t in out] == sorted(t.due_ms for t in out)
                for t in out:
                    assert t.due_ms <= clock
                    assert latest.pop(t.key) == t.due_ms, "only the latest arming fires"
        assert await q.pending_timers() == len(latest)

    asyncio.run(run())


async def test_arming_writes_the_timeline_and_a_rearm_says_which_timer_it_replaced(engine):
    from test_engine_contract import open_session

    await open_session(engine, sid="s_timeline1")
    first = Timer("s_timeline1", "r", 5000, 2000, {})
    again = Timer("s_timeline1", "r", 9000, 3000, {})
    await engine.arm_timers([first])
    await engine.arm_timers([again])
    lines = [e for e in reversed(await engine.log("s_timeline1")) if e["kind"] == "timer"]
    assert lines == [
        {"ts": 2000, "kind": "timer", "rule": "r", "outcome": "armed", "due_ms": 5000, "after_ms": 3000},
        {"ts": 3000, "kind": "timer", "rule": "r", "outcome": "replaced", "due_ms": 5000, "late_ms": 0},
        {"ts": 3000, "kind": "timer", "rule": "r", "outcome": "armed", "due_ms": 9000, "after_ms": 6000},
    ]


async def test_a_timer_armed_for_a_session_that_is_gone_writes_no_orphan_log(engine, clean_redis):
    # A session's timeline ends with it: no line of a timer outlives it (session_gone is not shown anywhere).
    import redis as sync_redis

    await engine.arm_timers([timer(7, 1000)])
    assert await engine.log("s_timer00007") == [] and await engine.session("s_timer00007") is None
    if engine.name == "redis":
        assert sync_redis.Redis.from_url(clean_redis).keys("kairos:{s_timer00007}:*") == []

"""The timer queue, one contract for both engines (Redis: the real server)."""

from __future__ import annotations

import asyncio
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kairos.engine import MemoryEngine, keys
from kairos.rules.delayed import Timer, outcome_line

from test_engine_contract import engine, make_engine, session_id  # noqa: F401  (the engines fixture)


def timer(n: int, due: int, rule: str = "r") -> Timer:
    return Timer(session_id(f"timer{n:05d}"), rule, due, due - 1000, {"add_to_cart": n % 3})


async def test_due_timers_come_out_earliest_first_and_only_once(engine):
    await engine.arm_timers([timer(1, 3000), timer(2, 1000), timer(3, 2000), timer(4, 9000)])
    assert await engine.next_due_ms() == 1000
    first = await engine.claim_due(2500)
    assert [t.sid for t in first] == [session_id("timer00002"), session_id("timer00003")]
    assert first[0] == timer(2, 1000), "the payload survives the queue"
    assert await engine.claim_due(2500) == []
    assert [t.sid for t in await engine.claim_due(10_000)] == [session_id("timer00001"), session_id("timer00004")]
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
        (session_id("timer00001"), "a"), (session_id("timer00001"), "b"), (session_id("timer00002"), "a")]


async def test_concurrent_claimers_share_the_due_timers_without_overlap(engine):
    await engine.arm_timers([timer(n, 1000 + n % 7) for n in range(1000)])
    batches = await asyncio.gather(*(engine.claim_due(5000, limit=50) for _ in range(40)))
    claimed = [t.key for batch in batches for t in batch]
    assert len(claimed) == len(set(claimed)) == 1000


@pytest.mark.parametrize("kind", ["redis", "cluster"])
async def test_two_redis_clients_claiming_at_once_never_get_the_same_timer(request, kind):
    url = request.getfixturevalue("clean_cluster" if kind == "cluster" else "clean_redis")
    a, b = make_engine(kind, url), make_engine(kind, url)
    await a.start(), await b.start()
    try:
        await a.arm_timers([timer(n, 1000) for n in range(1000)])
        results = await asyncio.gather(*(e.claim_due(5000, limit=25) for _ in range(30) for e in (a, b)))
        claimed = [t.key for batch in results for t in batch]
        assert len(claimed) == len(set(claimed)) == 1000
    finally:
        await a.close(), await b.close()


@pytest.mark.parametrize("kind", ["redis", "cluster"])
async def test_the_timer_queue_expires_in_redis(request, kind):
    from conftest import raw_redis, redis_contents

    url = request.getfixturevalue("clean_cluster" if kind == "cluster" else "clean_redis")
    e = make_engine(kind, url)
    await e.start()
    try:
        await e.arm_timers([timer(1, 1000), timer(2, 1000)])
        await e.heartbeat("n_a", 1000)
        await e.claim_due(1000, limit=1, node="n_a")  # one leased, one queued (on a cluster: one per shard)
        queue = [k for k in redis_contents(url) if k.startswith("kairos:{timers")]
        # Due times, payloads, leases, holders, and the live nodes; on a cluster, the two
        # timers in two shards are both leased: no due times, two of each of the rest.
        apart = kind == "cluster" and keys.timer_shard(session_id("timer00001")) != keys.timer_shard(session_id("timer00002"))
        assert len(queue) == (7 if apart else 5) and "kairos:{timers}:nodes" in queue, queue
        r = raw_redis(url)
        for key in queue:
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

    await open_session(engine, sid=session_id("timeline1"))
    first = Timer(session_id("timeline1"), "r", 5000, 2000, {})
    again = Timer(session_id("timeline1"), "r", 9000, 3000, {})
    await engine.arm_timers([first])
    await engine.arm_timers([again])
    lines = [e for e in reversed(await engine.log(session_id("timeline1"))) if e["kind"] == "timer"]
    assert lines == [
        {"ts": 2000, "kind": "timer", "rule": "r", "outcome": "armed", "due_ms": 5000, "after_ms": 3000},
        {"ts": 3000, "kind": "timer", "rule": "r", "outcome": "replaced", "due_ms": 5000, "late_ms": 0},
        {"ts": 3000, "kind": "timer", "rule": "r", "outcome": "armed", "due_ms": 9000, "after_ms": 6000},
    ]


async def test_a_timer_armed_for_a_session_that_is_gone_writes_no_orphan_log(engine):
    # A session's timeline ends with it: no line of a timer outlives it (session_gone is not shown anywhere).
    await engine.arm_timers([timer(7, 1000)])
    assert await engine.log(session_id("timer00007")) == [] and await engine.session(session_id("timer00007")) is None
    if engine.name == "redis":
        from conftest import redis_contents

        assert not [k for k in redis_contents(engine.url) if session_id("timer00007") in k]


# --- leases: no timer is lost with the process that claimed it ----------------------


async def test_a_claimed_timer_whose_lease_lapses_is_claimed_again(engine):
    await engine.arm_timers([timer(1, 1000)])
    assert [t.key for t in await engine.claim_due(1000, node="n_a", lease_ms=5000)] == [f"{session_id('timer00001')}|r"]
    assert await engine.claim_due(5999, node="n_b") == [], "leased: nobody else gets it meanwhile"
    again = await engine.claim_due(6000, node="n_b")
    assert again == [timer(1, 1000)], "n_a never finished it: it comes back whole"


async def test_a_dead_process_leases_are_claimed_again_once_its_heartbeat_lapses(engine):
    await engine.heartbeat("n_a", 1000, ttl_ms=3000)
    await engine.heartbeat("n_b", 1000, ttl_ms=3000)
    await engine.arm_timers([timer(n, 1000) for n in range(3)])
    assert len(await engine.claim_due(1000, node="n_a")) == 3
    await engine.heartbeat("n_b", 3500, ttl_ms=3000)  # n_a was killed: it beats no more
    assert await engine.claim_due(3500, node="n_b") == [], "n_a's heartbeat still runs"
    assert sorted(t.sid for t in await engine.claim_due(4000, node="n_b")) == [
        session_id("timer00000"), session_id("timer00001"), session_id("timer00002")]
    assert await engine.alive_nodes(4000) == {"n_b"}


async def test_finishing_a_timer_records_its_outcome_and_takes_it_off_the_queue(engine):
    from test_engine_contract import open_session

    await open_session(engine, sid=session_id("timer00001"))
    await engine.arm_timers([timer(1, 1000)])
    [t] = await engine.claim_due(1000, node="n_a", lease_ms=5000)
    recorded, state = await engine.finish_timer(t, [outcome_line(t, "fired", 1200)], 1200, count="x:r")
    assert recorded and state is not None and state.timer_fires == {"r": 1}
    assert [e["outcome"] for e in await engine.log(session_id("timer00001")) if e["kind"] == "timer"][0] == "fired"
    assert await engine.claim_due(60_000, node="n_b") == [], "finished: its lease is gone with it"
    assert await engine.pending_timers() == 0
    # A second finish of the same timer (a claimer whose lease lapsed) records nothing.
    assert (await engine.finish_timer(t, [outcome_line(t, "fired", 1300)], 1300, count="x:r"))[0] is False
    assert (await engine.session(session_id("timer00001"))).timer_fires == {"r": 1}


async def test_a_timer_armed_again_while_it_fires_survives_the_finish(engine):
    await engine.arm_timers([timer(1, 1000)])
    [fired] = await engine.claim_due(1000, node="n_a", lease_ms=5000)
    rearmed = Timer(session_id("timer00001"), "r", 8000, 1500, {})
    await engine.arm_timers([rearmed])
    await engine.finish_timer(fired, [], 1600)
    assert await engine.pending_timers() == 1
    assert await engine.claim_due(7000, node="n_b") == [], "the finished one's lease does not bring it back"
    assert await engine.claim_due(8000, node="n_b") == [rearmed]


async def test_a_deferred_timer_comes_back_later_with_its_wait_counted(engine):
    await engine.arm_timers([timer(1, 1000)])
    [t] = await engine.claim_due(1000, node="n_a")
    assert await engine.defer_timer(t, 1250)
    assert await engine.next_due_ms() == 1250 and await engine.claim_due(1249, node="n_a") == []
    [back] = await engine.claim_due(1250, node="n_b")
    assert (back.due_ms, back.waits) == (1000, 1), "due when it was due; one wait counted"
    # Superseded meanwhile: not put back.
    await engine.arm_timers([Timer(session_id("timer00001"), "r", 9000, 2000, {})])
    assert not await engine.defer_timer(back, 1500)
    assert [t.due_ms for t in await engine.claim_due(9000, node="n_b")] == [9000]


async def test_a_timer_handed_back_after_an_outage_comes_back_soon_without_a_wait_counted(engine):
    # Its firing met Redis away (timers.Timers.tick): due again shortly, not after its
    # lease, and not counted as a wait for the page (the offline rule's grace is its own).
    await engine.arm_timers([timer(1, 1000)])
    [t] = await engine.claim_due(1000, node="n_a", lease_ms=30_000)
    assert await engine.defer_timer(t, 2000, waited=False)
    [back] = await engine.claim_due(2000, node="n_a")
    assert (back.due_ms, back.waits) == (1000, 0)


async def test_showing_a_timer_nudge_again_under_its_oid_counts_it_once(engine):
    from kairos.caps import Caps
    from test_engine_contract import open_session

    await open_session(engine, sid=session_id("timer00001"))
    t = timer(1, 1000)
    caps = Caps(per_session=1)
    show = lambda: engine.claim_show(session_id("timer00001"), "v_visitor01", "r", t.oid, caps, "{}", 1000)  # noqa: E731
    assert t.oid.rsplit(".", 1)[0] == "r" and t.oid == timer(1, 1000).oid
    assert await show() == "ok"
    assert await show() == "again", "the same show, claimed again by a second attempt: sent again, counted once"
    assert (await engine.session(session_id("timer00001"))).fired == {"r": 1}
    await engine.record_feedback(session_id("timer00001"), t.oid, "dismissed", "{}", 1100)
    assert await show() == "seen"

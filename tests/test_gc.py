"""Open sessions stay out of full garbage collections, and closed ones leave nothing behind (kairos.gcpolicy).

A full collection stops the event loop for as long as it walks every object the
collector tracks; a real `kairos serve` reports those counts in /metrics
(`kairos_gc_objects`, by generation). No clocks: counts and ratios.
"""

from __future__ import annotations

import asyncio
import time

import psutil

from conftest import Server
from kairos.gcpolicy import FREEZE_EVERY_S, TICK_MIN_S, Cadence
from wsclient import Visitor

SESSIONS = 300
# The server freezes what survived every 5 s (gcpolicy.FREEZE_EVERY_S): a generous deadline for one to pass.
DEADLINE_S = 60.0


def walked(server: Server) -> float:
    """Objects a full collection would walk now: generations 0 to 2."""
    return sum(server.metric("kairos_gc_objects", generation=str(g)) for g in range(3))


def frozen(server: Server) -> float:
    return server.metric("kairos_gc_objects", generation="frozen")


async def open_sessions(server: Server, n: int) -> list[Visitor]:
    visitors: list[Visitor] = []
    for _ in range(0, n, 50):
        visitors += await asyncio.gather(*(Visitor.arrive(server.ws_url) for _ in range(50)))
    for v in visitors:
        await v.events({"t": "click", "sel": "#add-to-cart"})
    return visitors


async def until(check, deadline_s: float = DEADLINE_S) -> bool:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if check():
            return True
        await asyncio.sleep(0.5)
    return check()


async def least_frozen(server: Server, ticks: int = 3) -> float:
    """The fewest objects frozen while the next few freezes pass: what lives on for good.

    A closed connection's objects may be frozen while they wait out the close
    grace, then go; an object frozen in a reference cycle never does. A quiet
    process may freeze nothing new at a tick: the count is watched for as long
    as the ticks take, not until it changes.
    """
    seen = [frozen(server)]
    end = time.monotonic() + ticks * FREEZE_EVERY_S + 1
    while time.monotonic() < end:
        await asyncio.sleep(0.5)
        seen.append(frozen(server))
    return min(seen)


async def test_open_sessions_are_not_walked_by_full_collections(serve):
    server = serve("redis")
    visitors = await open_sessions(server, SESSIONS)
    frozen_before = frozen(server)
    # Each open session holds ~95 tracked objects (its task, frames, uvicorn's protocol, the scope...):
    # left in generation 2, every full collection walks them all, with every visitor waiting.
    assert await until(lambda: walked(server) < SESSIONS * 10), \
        f"{walked(server):,.0f} objects walked by a full collection with {SESSIONS} sessions open"
    assert frozen(server) - frozen_before > SESSIONS * 50, "the open sessions' objects were frozen"
    # Frozen, they are still served.
    await visitors[0].events({"t": "page_view", "path": "/demo/cart"})
    assert server.metric("kairos_open_sockets") == SESSIONS
    for v in visitors:
        await v.ws.close()


async def test_sessions_opened_and_closed_leave_nothing_frozen(serve):
    """A frozen object that dies in a reference cycle is never freed: closed connections must not make cycles."""
    server = serve("redis")
    proc = psutil.Process(server.proc.pid)
    figures = []
    for _ in range(4):
        visitors = await open_sessions(server, SESSIONS)
        # Every session's objects frozen while it was open, then closed.
        assert await until(lambda: walked(server) < SESSIONS * 10)
        for v in visitors:
            await v.ws.close()
        assert await until(lambda: server.metric("kairos_open_sockets") == 0)
        figures.append((await least_frozen(server), proc.memory_info().rss))
    # The first rounds froze what the first connections build once (lazy imports, pools, bounded caches
    # filling): compare the later ones.
    grown = figures[-1][0] - figures[1][0]
    per_session = grown / (2 * SESSIONS)
    # Before: ~25 objects per session closed (its writer task's cancellation kept the whole connection in a cycle).
    assert per_session < 2, f"{grown:,.0f} frozen objects more after {2 * SESSIONS} sessions opened and closed"
    rss_growth = figures[-1][1] / figures[1][1]
    assert rss_growth < 1.10, f"RSS {figures[1][1] / 2**20:.1f} -> {figures[-1][1] / 2**20:.1f} MiB"


async def test_no_full_collection_starts_by_itself_while_visitors_are_served(serve):
    """Python starts a full collection after every 10 of generation 1 by default; one walks what
    reached generation 2 since the last freeze, every visitor waiting (kairos.gcpolicy.FULL_NEVER)."""
    server = serve("redis")
    collections = lambda generation: server.metric("kairos_gc_collections_total", generation=generation)  # noqa: E731
    before = {g: collections(g) for g in "012"}
    rounds = 0
    while collections("1") - before["1"] < 12 and rounds < 20:  # enough for the default thresholds to go full
        rounds += 1
        visitors = await open_sessions(server, SESSIONS)
        for v in visitors:
            await v.events({"e": "exit_intent"})
        for v in visitors:
            await v.ws.close()
    assert collections("1") - before["1"] >= 12, "the load made the young generations collect"
    assert collections("2") == before["2"], "and no full collection started by itself"


async def test_a_steady_load_starts_no_young_collection_by_itself(serve):
    """Each batch replaces what its session keeps alive; with CPython's first threshold (700) the
    batches in flight on a busy loop started a young collection dozens of times a second, each
    walking every open session's objects again. Now a steady load leaves that to the tick
    (kairos.gcpolicy.YOUNG_THRESHOLDS): one walk of each survivor every few seconds."""
    server = serve("redis")
    visitors = await open_sessions(server, 100)
    events = lambda: server.metric("kairos_events_total") or 0  # noqa: E731
    young = lambda: server.metric("kairos_gc_collections_total", generation="0")  # noqa: E731
    # The arrivals themselves grew the young objects (a real growth may start collections).
    before, sent = young(), events()
    for _ in range(40):  # 100 batches at once, each round applied before the next, within the frame rate
        started_s = time.monotonic()
        await asyncio.gather(*(v.events({"e": "scroll", "pct": 40}, {"e": "dwell", "ms": 900}) for v in visitors))
        sent += 2 * len(visitors)
        assert await until(lambda: events() >= sent, 10), "the server applied the round"
        await asyncio.sleep(max(0.0, 0.15 - (time.monotonic() - started_s)))
    started = young() - before
    assert started <= 2, f"{started:.0f} young collections started by 4,000 batches of 100 open sessions"
    for v in visitors:
        await v.ws.close()


def test_the_freezes_come_sooner_while_that_shortens_their_pauses():
    """At 10,000 open sessions 5 s of pings and arrivals made ticks of up to 48 ms: the wait
    halves while a tick pauses longer than 10 ms and halving helped, and grows back once
    pauses are short. A pause that halving does not shorten (every session's newest
    objects, at 2 batches/s) gets the longest wait back at the next tick: more ticks would
    only walk it more often."""

    def waits(pause_of) -> list[float]:
        cadence = Cadence()
        return [cadence.after(pause_of(cadence.every_s)) for _ in range(8)]

    # Pauses that grow with the wait (arrivals, pings): shorter waits, held where the pause is small.
    assert waits(lambda every: every * 0.009) == [2.5, 1.25, TICK_MIN_S, TICK_MIN_S, TICK_MIN_S, TICK_MIN_S,
                                                  TICK_MIN_S, TICK_MIN_S]
    # A pause that does not: each halving tried is undone at the next tick.
    assert waits(lambda every: 0.015) == [2.5, FREEZE_EVERY_S] * 4
    # Short pauses: back to the longest wait.
    assert waits(lambda every: 0.045 if every == FREEZE_EVERY_S else 0.001)[:4] == [2.5, FREEZE_EVERY_S, 2.5,
                                                                                    FREEZE_EVERY_S]

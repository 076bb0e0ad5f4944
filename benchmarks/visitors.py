"""The benchmark's visitors: one websocket each, a hello, then a batch of events at a steady rate.

Shared by load.py (Kairos alone) and compare.py (the floor and Kairos under the
same load), so both servers see the very same frames. A share of the batches
(`trigger_share`) ends with the click the benchmark rule answers with an
overlay; the time from sending such a batch to receiving its `show` is the
event->push latency. A visitor reads `load.rate` before every batch, so a
benchmark can step the rate up without reconnecting; a rate of 0 is an idle
visitor (connected, silent). A shopper (`Shape`) instead sends a batch after
each of a few gaps drawn as a store's visitors pause between pages, then leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import sys
import time
from dataclasses import dataclass, field

import msgpack
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from common import hello


@dataclass
class Load:
    """What each visitor sends: batches a second (0: none), events a batch, share of batches that trigger."""

    rate: float = 1.0
    batch: int = 5
    trigger_share: float = 0.25


@dataclass
class Shape:
    """How shoppers pause and how long they stay: lognormal gaps between batches, a few batches a visit.

    The defaults are issue 16's "real shape" of a store: gaps with median 56 s
    and 90th percentile 299 s, about 5 batches a session.
    """

    gap_median_s: float = 56.0
    gap_p90_s: float = 299.0
    batches: float = 5.0  # mean batches a session (geometric, at least 1)

    @property
    def sigma(self) -> float:
        return math.log(self.gap_p90_s / self.gap_median_s) / 1.2815515655446004  # z of the 90th percentile

    @property
    def mean_gap_s(self) -> float:
        return self.gap_median_s * math.exp(self.sigma ** 2 / 2)

    def gap_s(self) -> float:
        return random.lognormvariate(math.log(self.gap_median_s), self.sigma)

    @property
    def visit_s(self) -> float:
        """A visit's mean length: its batches' gaps."""
        return self.batches * self.mean_gap_s

    def visit(self) -> list[float]:
        """A new visit's gaps, one before each batch; the page closes with its last batch (k.js flushes on pagehide)."""
        n = 1
        while random.random() > 1 / self.batches:
            n += 1
        return [self.gap_s() for _ in range(n)]

    def open_now(self, sessions: int) -> list[list[float]]:
        """The rest of the visits open at a given moment when `sessions` are open on average.

        Visits started over a long past at the steady arrival rate, cut at now:
        caught part-way, long visits more often than short ones, as a store
        that has been open for hours has them.
        """
        past_s = 20 * self.visit_s  # long enough for all but a vanishing share of visits
        rest = []
        for _ in range(round(sessions / self.visit_s * past_s)):
            t = -random.uniform(0, past_s)
            due = []
            for gap in self.visit():
                t += gap
                if t > 0:
                    due.append(t)
            if due:
                rest.append([due[0], *(b - a for a, b in zip(due, due[1:]))])
        return rest


@dataclass
class Stats:
    latencies_ms: list[float] = field(default_factory=list)
    batches: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    measuring: bool = False
    disconnects: int = 0
    ready: int = 0
    open: int = 0  # sessions open now
    hellos: int = 0  # welcomed while measuring


# A trigger with no `show` this long after it is given up on (an experiment's holdout).
UNANSWERED_S = 2.0

async def stopped(stop: asyncio.Event, wait_s: float) -> bool:
    """Wait `wait_s`, or less if the benchmark stops meanwhile; whether it did."""
    try:
        await asyncio.wait_for(stop.wait(), wait_s)
        return True
    except asyncio.TimeoutError:
        return False


async def visitor(n: int, ws_url: str, load: Load, stats: Stats, stop: asyncio.Event,
                  gaps_s: list[float] | None = None) -> None:
    """One visitor: batches at `load.rate` until the stop, or, given `gaps_s`, a batch after each gap, then gone."""
    vid = f"v_bench{n:07d}"
    pending: dict[int, float] = {}
    opened = False
    try:
        async with connect(ws_url, compression=None, open_timeout=60, ping_interval=None, close_timeout=2) as ws:
            await ws.send(hello(vid))
            welcome = msgpack.unpackb(await ws.recv())
            assert welcome["t"] == "welcome", welcome
            stats.ready += 1
            stats.open += 1
            opened = True
            stats.hellos += stats.measuring

            async def reader() -> None:
                with contextlib.suppress(ConnectionClosed):  # the sender sees it too, and counts it
                    await read_frames()

            async def read_frames() -> None:
                async for raw in ws:
                    frame = msgpack.unpackb(raw)
                    if frame["t"] == "show":
                        if pending:
                            sent = pending.pop(min(pending))
                            if stats.measuring:
                                stats.latencies_ms.append((time.perf_counter() - sent) * 1000)
                        await ws.send(msgpack.packb({"v": 1, "t": "feedback", "oid": frame["oid"], "act": "clicked",
                                                     "ts": int(time.time() * 1000)}))
                    elif frame["t"] == "error":
                        stats.errors[frame["code"]] = stats.errors.get(frame["code"], 0) + 1

            read_task = asyncio.create_task(reader())
            seq = 0

            async def send_batch() -> None:
                nonlocal seq
                seq += 1
                ts = int(time.time() * 1000)
                ev = [{"e": "dwell", "ts": ts, "ms": 1000}, {"e": "scroll", "ts": ts, "pct": random.randint(0, 100)}]
                # Most of a shopper's clicks land on elements the store did not mark (no data-kairos):
                # a link, its text. The last click is on a marked button, the rule's target or not.
                ev += [{"e": "click", "ts": ts, "tag": "a", "text": "Shirts"}] * max(0, load.batch - 3)
                # One overlay at a time: trigger again only once the last one was answered, or
                # after UNANSWERED_S without one (a visitor an experiment holds out gets none).
                if pending and time.perf_counter() - min(pending.values()) > UNANSWERED_S:
                    pending.clear()
                trigger = not pending and random.random() < load.trigger_share
                ev.append({"e": "click", "ts": ts, "tag": "button", "k": "bench" if trigger else "other"})
                if trigger:
                    pending[seq] = time.perf_counter()
                await ws.send(msgpack.packb({"v": 1, "t": "events", "seq": seq, "ev": ev}))
                stats.batches += stats.measuring

            if gaps_s is not None:
                # A shopper: a batch after each gap; the page closes with the last.
                for gap_s in gaps_s:
                    if await stopped(stop, gap_s):
                        break
                    await send_batch()
            else:
                first = True
                while not stop.is_set():
                    if load.rate <= 0:
                        await asyncio.sleep(0.5)  # idle: wait for a rate (or the stop)
                        continue
                    period = 1.0 / load.rate
                    if first:
                        # Spread visitors over the period so batches do not arrive in lockstep.
                        first = False
                        await asyncio.sleep(random.random() * period)
                        continue
                    await send_batch()
                    await stopped(stop, period)
            read_task.cancel()
    except Exception as exc:  # a visitor that fails is counted, not fatal to the run
        stats.disconnects += 1
        if stats.disconnects <= 3:
            print(f"visitor {n}: {type(exc).__name__}: {exc}", file=sys.stderr)
    finally:
        stats.open -= opened


async def open_visitors(ws_url: str, sessions: int, load: Load, stats: Stats, stop: asyncio.Event,
                        per_s: int = 1000) -> list[asyncio.Task]:
    """Start `sessions` visitors, `per_s` a second, and return once each has its welcome (or failed)."""
    tasks = []
    for n in range(sessions):
        tasks.append(asyncio.create_task(visitor(n, ws_url, load, stats, stop)))
        if n % 100 == 99:
            await asyncio.sleep(100 / per_s)  # ramp up, not all at once
    while stats.ready + stats.disconnects < sessions:
        await asyncio.sleep(0.1)
    return tasks

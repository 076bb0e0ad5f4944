"""The benchmark's visitors: one websocket each, a hello, then a batch of events at a steady rate.

Shared by load.py (Kairos alone) and compare.py (the floor and Kairos under the
same load), so both servers see the very same frames. A share of the batches
(`trigger_share`) ends with the click the benchmark rule answers with an
overlay; the time from sending such a batch to receiving its `show` is the
event->push latency. A visitor reads `load.rate` before every batch, so a
benchmark can step the rate up without reconnecting; a rate of 0 is an idle
visitor (connected, silent).
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from dataclasses import dataclass, field

import msgpack
from websockets.asyncio.client import connect

from common import hello


@dataclass
class Load:
    """What each visitor sends: batches a second (0: none), events a batch, share of batches that trigger."""

    rate: float = 1.0
    batch: int = 5
    trigger_share: float = 0.25


@dataclass
class Stats:
    latencies_ms: list[float] = field(default_factory=list)
    batches: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    measuring: bool = False
    disconnects: int = 0
    ready: int = 0


async def visitor(n: int, ws_url: str, load: Load, stats: Stats, stop: asyncio.Event) -> None:
    vid = f"v_bench{n:07d}"
    pending: dict[int, float] = {}
    try:
        async with connect(ws_url, compression=None, open_timeout=60, ping_interval=None, close_timeout=2) as ws:
            await ws.send(hello(vid))
            welcome = msgpack.unpackb(await ws.recv())
            assert welcome["t"] == "welcome", welcome
            stats.ready += 1

            async def reader() -> None:
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
            # Spread visitors over the period so batches do not arrive in lockstep.
            first = True
            seq = 0
            while not stop.is_set():
                if load.rate <= 0:
                    await asyncio.sleep(0.5)  # idle: wait for a rate (or the stop)
                    continue
                period = 1.0 / load.rate
                if first:
                    first = False
                    await asyncio.sleep(random.random() * period)
                    continue
                seq += 1
                ts = int(time.time() * 1000)
                ev = [{"e": "dwell", "ts": ts, "ms": 1000}, {"e": "scroll", "ts": ts, "pct": random.randint(0, 100)}]
                ev += [{"e": "click", "ts": ts, "tag": "a", "k": "browse"}] * max(0, load.batch - 3)
                # One overlay at a time: trigger again only once the last one was answered.
                trigger = not pending and random.random() < load.trigger_share
                ev.append({"e": "click", "ts": ts, "tag": "button", "k": "bench" if trigger else "other"})
                if trigger:
                    pending[seq] = time.perf_counter()
                await ws.send(msgpack.packb({"v": 1, "t": "events", "seq": seq, "ev": ev}))
                stats.batches += stats.measuring
                try:
                    await asyncio.wait_for(stop.wait(), period)
                except asyncio.TimeoutError:
                    pass
            read_task.cancel()
    except Exception as exc:  # a visitor that fails is counted, not fatal to the run
        stats.disconnects += 1
        if stats.disconnects <= 3:
            print(f"visitor {n}: {type(exc).__name__}: {exc}", file=sys.stderr)


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

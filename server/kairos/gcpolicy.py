"""When the cyclic garbage collector runs in a process that holds thousands of open websockets.

A full (generation 2) collection walks every container object the collector
tracks, with the event loop stopped: every visitor's push waits behind it.
An open session holds ~95 such objects here (its task, coroutine frames,
uvicorn's protocol, the ASGI scope, its Connection...), so at 10,000 open
sessions a full collection stopped the loop for 1.0-1.2 s, every ~45 s
(issue 16). CPython starts one when the objects that reached the oldest
generation since the last one exceed a quarter of those it kept then
(`long_lived_pending > long_lived_total / 4`, Modules/gcmodule.c; the
devguide's "Garbage collector design"): a store's steady arrivals are
enough. Raising the thresholds makes them rarer, not shorter; the incremental collector of 3.14 (gh-108362, which
cuts pauses "by an order of magnitude or more for larger heaps") was
withdrawn from 3.13 before its release, and from 3.15's main branch
(gh-148726, back to the generational one), so we cannot count on it.

What we do instead is what `gc.freeze()` is for besides fork(): "to speed up
collection" (bpo-31558, the Instagram change that added it in 3.7: move the
tracked objects to a permanent generation that no collection walks). Start-up
freezes what it built; then every few seconds (`FREEZE_EVERY_S` at most) the
process collects the young generations (0 and 1) and freezes what survived. A
full collection, automatic or ours, then walks only what reached generation 2
since the last tick, whatever the number of sessions open. freeze() itself is
a constant-time splice of the generation lists.

The price: a frozen object is never collected. One that dies by reference
counting is freed as ever; one that dies inside a reference cycle stays for
the life of the process. So a connection must not end in a cycle: the push
writer's cancellation was one (~25 objects, push.Connection._write_forever),
websockets' frame parser another (10, push.Socket._unlink). Without those
two, each session closed left 73 objects frozen for good; with them, 1,200
sessions opened and closed left 19 in all (tests/test_gc.py). For cycles
we do not know of, the process takes one full collection of everything
(`sweep`) when it is quiet — at most `QUIET_SOCKETS` open, no more than once
every `SWEEP_EVERY_S` — where a pause has nobody to stall.

The young collections themselves are the other cost. One walks every young
object still alive, and under load most of those are live work that each batch
replaces: the future each socket waits on, websockets' parser state, the kept
copy of each session, the batches waiting for Redis. With CPython's default
first threshold (700 allocations more than deallocations) the bursts of a busy
loop started ~45 young collections a second at 1,000 sessions x 2 batches/s,
each walking those same objects again: ~1.3 s of pauses in 20 s, the gen-1 ones
4-14 ms (a `gc.callbacks` hook, issue 16). Replacing an object does not move the
count, so with `YOUNG_THRESHOLDS` a steady load starts none, and the tick walks
each survivor once (~12,000 objects at that load, 2-16 ms on a 2-core machine).
A real growth (sessions arriving, a backlog) still starts one every 10,000
objects, and every fourth of those is a gen-1 one: no automatic pause walks
much more than 40,000 objects.
"""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Callable

# The tick walks the young objects still alive. Under a steady load those are mostly
# each open session's newest (~12: its wait for the next frame, websockets' parser
# state, its kept copy) however often it runs: a shorter interval walks the same
# objects more often. After a wave of arrivals it walks what they built (~95 each),
# which a longer one lets pile up (YOUNG_THRESHOLDS bounds that), and so do the
# pings of thousands of idle sockets: at a store's shape (10,000 open) 5 s of them
# were 17,000-45,000 objects, ticks of up to 48 ms. So the interval follows the
# pause: halved down to TICK_MIN_S while a tick takes longer than TICK_PAUSE_S,
# doubled back up to FREEZE_EVERY_S when a halving did not shorten it by a quarter,
# or while it takes under a third of TICK_PAUSE_S.
FREEZE_EVERY_S = 5.0
TICK_MIN_S = 1.0
TICK_PAUSE_S = 0.010
# Generation 0 is collected when allocations outnumber deallocations by the first
# figure, generation 1 with it once generation 0 was collected more than the second
# figure times since (CPython's defaults 700 and 10: Python 3.11 Doc/library/gc.rst,
# set_threshold). See the module's docstring.
YOUNG_THRESHOLDS = (10_000, 3)
# The third threshold, so that no full collection starts by itself: one walks what
# reached generation 2 since the last freeze (at 2,000 batches/s on a slow day, 4
# in 20 s of 13-14 ms each), and the tick freezes it unchecked a few seconds later
# anyway. Garbage that died in a cycle after two young collections waits for the
# next quiet sweep, as what the tick froze does.
FULL_NEVER = 2**31 - 1
# Open sockets at most for the process to count as quiet: a full collection of
# everything then walks start-up's objects (~66,000 with the demo's rules) and a
# few sessions' (~95 each), tens of ms, and stalls next to no one.
QUIET_SOCKETS = 100
# The most often a quiet process sweeps; a process busy day and night never does.
SWEEP_EVERY_S = 3600.0


class Cadence:
    """The wait between ticks, following their pauses (TICK_PAUSE_S)."""

    def __init__(self, longest_s: float = FREEZE_EVERY_S) -> None:
        self.longest_s = longest_s
        self.every_s = longest_s
        self._before_halving_s: float | None = None  # the pause before the last halving, right after one

    def after(self, pause_s: float) -> float:
        """The wait before the next tick, after one that paused `pause_s`."""
        every_s = self.every_s
        if pause_s > TICK_PAUSE_S:
            # Shorter only while shorter helps: a young set that does not shrink with the wait
            # (each session's newest objects, at 2 batches/s) is walked as long, only more often.
            before = self._before_halving_s
            every_s = min(self.longest_s, every_s * 2) if before and pause_s >= 0.75 * before \
                else max(TICK_MIN_S, every_s / 2)
        elif pause_s < TICK_PAUSE_S / 3:
            every_s = min(self.longest_s, every_s * 2)
        self._before_halving_s = pause_s if every_s < self.every_s else None
        self.every_s = every_s
        return every_s


class Collector:
    """Keeps long-lived objects out of full collections: freezes survivors every few seconds."""

    def __init__(self, open_sockets: Callable[[], int], every_s: float = FREEZE_EVERY_S,
                 quiet_sockets: int = QUIET_SOCKETS, sweep_every_s: float = SWEEP_EVERY_S) -> None:
        self.open_sockets = open_sockets
        self.cadence = Cadence(every_s)
        self.quiet_sockets = quiet_sockets
        self.sweep_every_s = sweep_every_s
        self._swept_s = time.monotonic()
        self._thresholds: tuple[int, int, int] | None = None

    def start(self) -> None:
        """What start-up built lives as long as the process: out of every collection from now on;
        young collections when the young objects grow (`YOUNG_THRESHOLDS`), and no full
        collection starts by itself (`FULL_NEVER`)."""
        gc.collect()
        gc.freeze()
        self._thresholds = gc.get_threshold()
        gc.set_threshold(*YOUNG_THRESHOLDS, FULL_NEVER)

    def stop(self) -> None:
        """The app is stopping: the collector's thresholds are as they were (an app run
        in-process, in a test, leaves its host as it found it)."""
        if self._thresholds is not None:
            gc.set_threshold(*self._thresholds)

    def tick(self) -> None:
        """Collect the young generations (what died young), freeze what survived; the next
        tick comes sooner when this one's pause was long, later when it was short."""
        now = time.monotonic()
        if now - self._swept_s >= self.sweep_every_s and self.open_sockets() <= self.quiet_sockets:
            self.sweep()
            return
        # Generations 0 and 1 only: a full pass here would walk every session opened since
        # the last tick (~100 ms after 1,000 opened at once), where the young ones hold
        # what the last few seconds made and kept. What reached generation 2
        # meanwhile is frozen unchecked: garbage there is what died in a cycle after
        # outliving two young collections, which a connection no longer makes (tests/test_gc.py).
        gc.collect(1)
        gc.freeze()
        self.cadence.after(time.monotonic() - now)

    def sweep(self) -> None:
        """One full collection of everything, frozen objects included, then freeze again: frees any frozen cycle."""
        self._swept_s = time.monotonic()
        gc.unfreeze()
        gc.collect()
        gc.freeze()

    async def run(self) -> None:
        """Tick at the cadence's waits until cancelled."""
        while True:
            await asyncio.sleep(self.cadence.every_s)
            self.tick()

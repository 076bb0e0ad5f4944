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
freezes what it built; then every `FREEZE_EVERY_S` the process collects
the young generations (0 and 1, a few thousand objects at most) and freezes
what survived. A full collection, automatic or ours, then walks only what
reached generation 2 since the last tick, whatever the number of sessions
open. freeze() itself is a constant-time splice of the generation lists.

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
"""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Callable

# An automatic full collection walks what reached generation 2 since the last
# freeze: at a store's shape (~15 arrivals/s, ~95 objects each) 5 s of them are
# a few ms to walk (docs/operations.md, "Garbage collection"). Shorter: smaller
# pauses, more of them, about the same work.
FREEZE_EVERY_S = 5.0
# The third threshold, so that no full collection starts by itself: one walks what
# reached generation 2 since the last freeze (up to FREEZE_EVERY_S of survivors; at
# 2,000 batches/s on a slow day, 4 in 20 s of 13-14 ms each), and the tick freezes
# it unchecked a few seconds later anyway. Garbage that died in a cycle after two
# young collections waits for the next quiet sweep, as what the tick froze does.
FULL_NEVER = 2**31 - 1
# Open sockets at most for the process to count as quiet: a full collection of
# everything then walks start-up's objects (~66,000 with the demo's rules) and a
# few sessions' (~95 each), tens of ms, and stalls next to no one.
QUIET_SOCKETS = 100
# The most often a quiet process sweeps; a process busy day and night never does.
SWEEP_EVERY_S = 3600.0


class Collector:
    """Keeps long-lived objects out of full collections: freezes survivors every few seconds."""

    def __init__(self, open_sockets: Callable[[], int], every_s: float = FREEZE_EVERY_S,
                 quiet_sockets: int = QUIET_SOCKETS, sweep_every_s: float = SWEEP_EVERY_S) -> None:
        self.open_sockets = open_sockets
        self.every_s = every_s
        self.quiet_sockets = quiet_sockets
        self.sweep_every_s = sweep_every_s
        self._swept_s = time.monotonic()
        self._thresholds: tuple[int, int, int] | None = None

    def start(self) -> None:
        """What start-up built lives as long as the process: out of every collection from now on;
        and no full collection starts by itself (`FULL_NEVER`)."""
        gc.collect()
        gc.freeze()
        self._thresholds = gc.get_threshold()
        gc.set_threshold(self._thresholds[0], self._thresholds[1], FULL_NEVER)

    def stop(self) -> None:
        """The app is stopping: full collections start by themselves again (an app run in-process,
        in a test, leaves its host as it found it)."""
        if self._thresholds is not None:
            gc.set_threshold(*self._thresholds)

    def tick(self) -> None:
        """Collect the young generations (what died young), freeze what survived."""
        now = time.monotonic()
        if now - self._swept_s >= self.sweep_every_s and self.open_sockets() <= self.quiet_sockets:
            self.sweep()
            return
        # Generations 0 and 1 only: a full pass here would walk every session opened since
        # the last tick (~100 ms after 1,000 opened at once), where the young ones hold a
        # few thousand objects at most (thresholds 700 x 10). What reached generation 2
        # meanwhile is frozen unchecked: garbage there is what died in a cycle after
        # outliving two young collections, which a connection no longer makes (tests/test_gc.py).
        gc.collect(1)
        gc.freeze()

    def sweep(self) -> None:
        """One full collection of everything, frozen objects included, then freeze again: frees any frozen cycle."""
        self._swept_s = time.monotonic()
        gc.unfreeze()
        gc.collect()
        gc.freeze()

    async def run(self) -> None:
        """Tick every `every_s` until cancelled."""
        while True:
            await asyncio.sleep(self.every_s)
            self.tick()

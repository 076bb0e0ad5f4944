"""The dashboard feed: what changed in the sessions, pushed to every dashboard watching.

Changes are gathered, not sent one by one: every FEED_EVERY_S the sessions
touched since the last flush go out as one message, the latest state of each.
With the Redis engine the message is published on one channel that every
process hears, so a dashboard on any process sees the sessions of all of them;
with the memory engine it goes straight to this process's dashboards. Nothing
is gathered or sent while no dashboard watches anywhere.

A dashboard that falls behind is closed (kairos.push.Connection) and reconnects
to a fresh snapshot, so a stalled tab never holds memory or slows a visitor.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import TYPE_CHECKING, Any, Mapping

from .push import Connection, Limits
from .session import SessionState

if TYPE_CHECKING:
    from .runtime import Runtime

log = logging.getLogger("kairos.feed")

# 4 updates a second: smooth to the eye, and the rows of 1,000 busy sessions
# fit in a few messages a second.
FEED_EVERY_S = 0.25
# A process with dashboards says so in Redis for this long, renewing it well before.
WATCH_TTL_S = 15
WATCH_EVERY_S = 5.0
# How often a process without dashboards asks whether another process has some.
ASK_EVERY_S = 1.0
# A dashboard's feed is JSON: a row is ~510 B, a snapshot of dashboard.SNAPSHOT_MAX
# (5,000) rows ~2.5 MB, and with 1,000 busy sessions a rows message each
# FEED_EVERY_S holds ~250 rows, ~128 KB (~512 KB/s). Behind the message on its
# way (a snapshot goes whatever its size), 2 MiB is ~4 s of that feed; a
# dashboard further behind is released (1013) and reconnects to a fresh
# snapshot, and ten stalled ones hold ~25 MB at most, for at most the send
# timeout. The kernel's 128 KiB (256 KiB once Linux doubles it) carries that
# feed at ~2.5 MB/s over a 100 ms round trip.
DASHBOARD = Limits(queue_bytes=2 * 1024 * 1024, sndbuf_bytes=128 * 1024, high_water_bytes=64 * 1024)


def row(s: SessionState, now_ms: int, models: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A session as a row of the live page: what a merchandiser scans, nothing more.

    `models`: the rules' trained-model scores, which a session's state does not carry.
    """
    if models:
        s.models = models
    names = sorted(set(s.scores.names()) | set(s.models))
    return {
        "sid": s.sid, "site": s.site, "device": s.device, "browser": s.browser, "os": s.os,
        "country": s.country, "region": s.region, "traffic": s.traffic, "path": s.path, "title": s.title, "page_type": s.page_type,
        "started_ms": s.started_ms, "seen_ms": s.seen_ms, "pages": s.pages, "dwell_ms": s.dwell_ms,
        "scroll_pct": s.scroll_pct, "clicks": s.clicks, "exit_intents": s.exit_intents,
        "cart_value": s.cart_value, "cart_items": s.cart_items, "currency": s.currency,
        "checkout_step": s.checkout_step, "purchases": s.purchases, "connected": s.connected > 0,
        "scores": {name: round(s.score(name, now_ms), 4) for name in names},
        "nudges": [[o.rule, o.status] for o in s.overlays.values()],
    }


class Watcher:
    """One dashboard's socket. Messages that come while its snapshot is read wait, then follow it."""

    __slots__ = ("conn", "held")

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.held: list[str] | None = []

    def send(self, text: str) -> None:
        if self.held is None:
            self.conn.send(text)
        else:
            self.held.append(text)

    def ready(self, snapshot: str) -> None:
        """Send the snapshot, then whatever arrived while it was read (newer, so it wins)."""
        held, self.held = self.held or [], None
        self.conn.send(snapshot)
        for text in held:
            self.conn.send(text)


class Feed:
    """Gathers session changes in this process and delivers feed messages to its dashboards."""

    def __init__(self, rt: "Runtime") -> None:
        self.rt = rt
        self.watchers: set[Watcher] = set()
        # sid -> the newest state known here, or None: read it at the flush.
        self._dirty: dict[str, SessionState | None] = {}
        self._gone: set[str] = set()
        self._watched = False
        self._asked_at = float("-inf")
        self._told_at = float("-inf")

    # --- what changed ------------------------------------------------------------

    def touch(self, sid: str, state: SessionState | None = None) -> None:
        """A session changed; `state` is its new state when the caller has it."""
        if self._watched:
            self._dirty[sid] = state

    def gone(self, sids: list[str]) -> None:
        """Sessions erased (a visitor withdrew consent): off every dashboard."""
        if self._watched:
            for sid in sids:
                self._dirty.pop(sid, None)
                self._gone.add(sid)

    def announce(self, kind: str, **what: Any) -> None:
        """Tell every dashboard of a change that is not a session's (a rule paused, new rules)."""
        asyncio.ensure_future(self._announce(json.dumps({"t": kind, **what}, separators=(",", ":"))))

    async def _announce(self, text: str) -> None:
        try:
            await self._send(text)
        except Exception as exc:  # the change itself is made; only the dashboards hear of it late
            if not self.rt.engine.fault(exc):
                log.exception("dashboard feed: could not announce a change")

    # --- dashboards here ---------------------------------------------------------

    async def add(self, watcher: Watcher) -> None:
        first = not self.watchers
        self.watchers.add(watcher)
        if first:
            # The flag first, then the word: a process that hears the word and looks
            # at the flag finds it set.
            self._told_at = time.monotonic()
            await self.rt.engine.watch_feed(WATCH_TTL_S)
            self._start_watching()
            self.announce("watching")

    def remove(self, watcher: Watcher) -> None:
        self.watchers.discard(watcher)

    def deliver(self, text: str) -> None:
        """A feed message (from this process or another) to this process's dashboards."""
        self._start_watching()  # someone somewhere watches; the flag in Redis says until when
        for w in tuple(self.watchers):
            w.send(text)

    def _start_watching(self) -> None:
        """From now on gather changes; and send the sessions held here once, so that a
        dashboard that came while nobody was gathering misses none of them."""
        if not self._watched:
            self._watched = True
            self._asked_at = time.monotonic()
            for sid in self.rt.hub.sids():
                self._dirty.setdefault(sid, None)

    # --- the loop ----------------------------------------------------------------

    async def run(self) -> None:
        while True:
            await asyncio.sleep(FEED_EVERY_S)
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the feed outlives any one bad flush
                if not self.rt.engine.fault(exc):
                    log.exception("dashboard feed: a flush failed")

    async def tick(self) -> None:
        engine, now = self.rt.engine, time.monotonic()
        if self.watchers and now - self._told_at >= WATCH_EVERY_S:
            self._told_at = now
            await engine.watch_feed(WATCH_TTL_S)
        if now - self._asked_at >= ASK_EVERY_S:
            self._asked_at = now
            if bool(self.watchers) or await engine.feed_watched():
                self._start_watching()
            else:
                self._watched = False
                self._dirty.clear()
                self._gone.clear()
        if self._dirty or self._gone:
            await self.flush()

    async def flush(self) -> None:
        dirty, self._dirty = self._dirty, {}
        gone, self._gone = sorted(self._gone), set()
        unread = [sid for sid, state in dirty.items() if state is None]
        if unread:
            for sid, state in zip(unread, await asyncio.gather(*(self.rt.engine.session(sid) for sid in unread))):
                if state is None:
                    gone.append(sid)
                    del dirty[sid]
                else:
                    dirty[sid] = state
        now_ms = int(time.time() * 1000)
        # A state from a batch counts every socket it has recorded, a killed process's too.
        await self.rt.engine.only_live([s for s in dirty.values() if s is not None], now_ms)
        models = self.rt.rules.models
        msg: dict[str, Any] = {"t": "rows", "rows": [row(s, now_ms, models) for s in dirty.values() if s is not None]}
        if gone:
            msg["gone"] = gone
        await self._send(json.dumps(msg, separators=(",", ":")))

    async def _send(self, text: str) -> None:
        if not await self.rt.engine.publish_feed(text):
            self.deliver(text)

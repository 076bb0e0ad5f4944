"""The memory engine: sessions in a dict, for trying Kairos and for one-process sites."""

from __future__ import annotations

import asyncio
import dataclasses
import heapq
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from ..caps import Caps, bucket, visitor_verdict
from ..rules.delayed import Timer, armed_line, outcome_line
from ..session import (Op, SessionState, VisitorInfo, apply_ops, log_entry, note_skip, record_feedback, record_show,
                       session_verdict)
from .base import (ARM_STATS_TTL_S, ARCHIVE_KEEP, COUNTED_ACTS, HEARTBEAT_TTL_MS, LOG_MAX, SHOWS_TTL_S, STATS_TTL_S,
                   TIMER_LEASE_MS, VIEWS_KEEP, VIEWS_WINDOW_MS, Engine, Opened, Opening, SessionGone, arm_credits, arm_day,
                   arm_days, arm_field, index_ttl_s, not_held, opens_session, parse_log, stats_bucket, stats_buckets)
from .keys import EmptyId

SWEEP_EVERY_S = 60.0
# Clients with wrong tokens counted: beyond this many, expired counts and then the oldest go.
STAFF_CLIENTS_KEEP = 10_000


@dataclass(slots=True)
class _Entry:
    h: dict[str, str] = field(default_factory=dict)
    log: deque[str] = field(default_factory=lambda: deque(maxlen=LOG_MAX))
    expires_at: float = 0.0  # time.monotonic()


@dataclass(slots=True)
class _Visitor:
    first_ms: int
    sid: str = ""
    sessions: int = 0
    views: deque[tuple[int, str, str]] = field(default_factory=lambda: deque(maxlen=VIEWS_KEEP))
    shows: dict[str, list[int]] = field(default_factory=dict)  # by rule; "" for every rule
    pending: dict[str, int] = field(default_factory=dict)  # rule -> when it was kept
    arms: dict[str, tuple[str, int]] = field(default_factory=dict)  # experiment -> (arm, first exposure ms)
    converted: set[str] = field(default_factory=set)  # experiments they converted in
    expires_at: float = 0.0


@dataclass(slots=True)
class _Index:
    """Every session of a visitor, as long as anything of them may be kept (engine.base.index_ttl_s)."""

    sids: dict[str, int] = field(default_factory=dict)  # sid -> ms last seen or archived
    expires_at: float = 0.0


class MemoryEngine(Engine):
    """Single-process engine. Every method runs without awaiting, so a batch is atomic
    with respect to every other task on the event loop."""

    name = "memory"

    def __init__(self, session_ttl_s: int = 1800, visitor_ttl_s: int = 30 * 24 * 3600,
                 archive_ttl_s: int = 30 * 24 * 3600) -> None:
        self.session_ttl_s = session_ttl_s
        self.visitor_ttl_s = visitor_ttl_s
        self.archive_ttl_s = archive_ttl_s
        # sid -> (ms of the last write, row); insertion order is write order
        self._archive: dict[str, tuple[int, str]] = {}
        self._visitors: dict[str, _Visitor] = {}
        self._index: dict[str, _Index] = {}
        self.index_ttl_s = index_ttl_s(visitor_ttl_s, archive_ttl_s)
        self._rule_counts: dict[tuple[str, int], int] = {}
        self._sessions: dict[str, _Entry] = {}
        self._sweeper: asyncio.Task[None] | None = None
        # Timers as the Redis engine keeps them: the one per key (queued or leased),
        # the queued ones' due times, a heap of (due, key) in which a re-armed or
        # claimed timer's old entry stays until it surfaces and is skipped, and the
        # leases (key -> deadline ms, node). A fire that raised mid-way leaves its
        # lease, which lapses, and the timer fires again.
        self._timers: dict[str, Timer] = {}
        self._due: dict[str, int] = {}
        self._heap: list[tuple[int, str]] = []
        self._leased: dict[str, tuple[int, str]] = {}
        self._nodes: dict[str, int] = {}  # node -> alive until (ms)
        self._stats: dict[int, dict[str, int]] = {}  # bucket start -> "<rule>|<counter>" -> n
        self._arm_stats: dict[int, dict[str, int]] = {}  # day start -> "<experiment>@<arm>|<counter>" -> n
        self._paused: dict[str, int] = {}
        # Staff access: wrong tokens by client (count, window end), logins (record, expiry); time.monotonic().
        self._staff_failures: dict[str, tuple[int, float]] = {}
        self._staff_sessions: dict[str, tuple[dict[str, str], float]] = {}

    def _count(self, now_ms: int, rule: str, counter: str) -> None:
        b = self._stats.setdefault(stats_bucket(now_ms), {})
        key = f"{rule}|{counter}"
        b[key] = b.get(key, 0) + 1

    async def start(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep_forever())

    async def close(self) -> None:
        if self._sweeper:
            self._sweeper.cancel()

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_EVERY_S)
            self.sweep()

    def sweep(self) -> int:
        """Drop expired sessions; returns how many."""
        now = time.monotonic()
        dead = [sid for sid, e in self._sessions.items() if e.expires_at <= now]
        for sid in dead:
            del self._sessions[sid]
        for vid in [vid for vid, v in self._visitors.items() if v.expires_at <= now]:
            del self._visitors[vid]
        for vid in [vid for vid, ix in self._index.items() if ix.expires_at <= now]:
            del self._index[vid]
        oldest_ms = int(time.time() * 1000) - self.index_ttl_s * 1000
        for ix in self._index.values():
            for sid in [sid for sid, ms in ix.sids.items() if ms < oldest_ms]:
                del ix.sids[sid]
        oldest = stats_bucket(int(time.time() * 1000) - STATS_TTL_S * 1000)
        for b in [b for b in self._stats if b < oldest]:
            del self._stats[b]
        oldest = arm_day(int(time.time() * 1000) - ARM_STATS_TTL_S * 1000)
        for d in [d for d in self._arm_stats if d < oldest]:
            del self._arm_stats[d]
        return len(dead)

    def _live(self, sid: str) -> _Entry | None:
        e = self._sessions.get(sid)
        if e is not None and e.expires_at <= time.monotonic():
            del self._sessions[sid]
            return None
        return e

    def _touch(self, e: _Entry) -> None:
        e.expires_at = time.monotonic() + self.session_ttl_s

    async def ping(self) -> bool:
        return True

    async def visitor_of(self, sid: str) -> str | None:
        e = self._live(sid)
        return e.h.get("vid") if e else None

    async def apply(self, sid: str, ops: Sequence[Op], log: Sequence[str], now_ms: int) -> SessionState:
        e = self._live(sid)
        if e is None:
            if not sid or not opens_session(ops):
                raise SessionGone(sid)
            e = self._sessions[sid] = _Entry()
        apply_ops(e.h, ops)
        e.log.extendleft(log)
        self._touch(e)
        return SessionState.from_hash(sid, e.h)

    async def open_session(self, o: Opening, now_ms: int) -> Opened:
        # As open.lua: nothing below awaits, so the check and the writes are one step.
        e = self._live(o.sid) if o.sid else None
        resumed = e is not None and e.h.get("vid") == o.vid
        reconnect = resumed and o.re_ops is not None
        sid = o.sid if resumed else o.fresh
        state = await self.apply(sid, o.re_ops if reconnect else o.ops, () if reconnect else o.log, now_ms)
        visitor = await self.visit(o.vid, sid, o.path, o.page_type, not reconnect, now_ms)
        return Opened(sid, resumed, state, visitor)

    async def claim_show(self, sid: str, vid: str, rule: str, oid: str, caps: Caps, log: str, now_ms: int,
                         placed: str = "", held: bool = False) -> str:
        e = self._live(sid)
        if e is None:
            return "gone"
        if (status := e.h.get(f"o:{oid}")) is not None:  # the same show claimed again (claim_show.lua)
            return "again" if status == "sent" else "seen"
        verdict = "paused" if rule in self._paused else session_verdict(e.h, rule, caps.per_session, caps.priority)
        if verdict == "ok":
            v = self._visitor(vid, now_ms)
            rule_times, all_times = v.shows.setdefault(rule, []), v.shows.setdefault("", [])
            window = (rule, bucket(caps.per_rule, now_ms)) if caps.per_rule else None
            verdict = visitor_verdict(caps, rule_times, all_times, self._rule_counts.get(window, 0), now_ms)
        if verdict != "ok":
            if note_skip(e.h, rule, verdict):
                e.log.appendleft(log_entry("skip", now_ms, rule=rule, why=verdict))
                self._count(now_ms, rule, "triggered")
            return verdict
        record_show(e.h, rule, oid, caps.priority, placed)
        e.log.appendleft(log)
        self._touch(e)
        self._count(now_ms, rule, "triggered")
        self._count(now_ms, rule, "held" if held else "shown")
        for times in (rule_times, all_times):
            times.append(now_ms)
            times[:] = [t for t in times if t > now_ms - SHOWS_TTL_S * 1000]
        if window:
            self._rule_counts = {k: n for k, n in self._rule_counts.items() if k[1] >= window[1] or k[0] != rule}
            self._rule_counts[window] = self._rule_counts.get(window, 0) + 1
        return "ok"

    def _visitor(self, vid: str, now_ms: int) -> _Visitor:
        if not vid:  # as keys.visitor refuses for Redis: no visitor record shared under ""
            raise EmptyId("refused to record under an empty visitor id")
        v = self._visitors.get(vid)
        if v is None or v.expires_at <= time.monotonic():
            v = self._visitors[vid] = _Visitor(first_ms=now_ms)
        v.expires_at = time.monotonic() + self.visitor_ttl_s
        return v

    async def visit(self, vid: str, sid: str, path: str, page_type: str, record: bool, now_ms: int) -> VisitorInfo:
        v = self._visitor(vid, now_ms)
        if v.sid != sid:
            v.sid, v.sessions = sid, v.sessions + 1
        self._index_session(vid, sid, now_ms)
        pending: tuple[str, ...] = ()
        if record:
            v.views.append((now_ms, page_type, path))
            pending, v.pending = tuple(sorted(v.pending)), {}
        recent = [(t, p) for ms, t, p in v.views if ms > now_ms - VIEWS_WINDOW_MS]
        return VisitorInfo(
            sessions=v.sessions,
            first_ms=v.first_ms,
            page_views_24h=sum(1 for _, p in recent if p == path),
            type_views_24h=sum(1 for t, _ in recent if t == page_type),
            pending=pending,
            arms={exp: arm for exp, (arm, _) in v.arms.items()},
        )

    async def keep_for_next_page(self, vid: str, rule: str, now_ms: int) -> None:
        self._visitor(vid, now_ms).pending[rule] = now_ms

    async def pending_for(self, vid: str) -> list[str]:
        v = self._visitors.get(vid)
        return sorted(v.pending) if v else []

    def _index_session(self, vid: str, sid: str, now_ms: int) -> None:
        ix = self._index.setdefault(vid, _Index())
        ix.sids[sid] = now_ms
        ix.expires_at = time.monotonic() + self.index_ttl_s

    async def forget(self, vid: str, sid: str | None) -> list[str]:
        v = self._visitors.pop(vid, None)
        ix = self._index.pop(vid, None)
        theirs = set(ix.sids if ix else ()) | ({v.sid} if v and v.sid else set())
        erased, gone = [], set()
        for c in sorted(theirs | ({sid} if sid else set())):
            e = self._sessions.get(c)
            owner = e.h.get("vid") if e else None
            # A session only named by the caller is erased if its state names the visitor;
            # one of their own index also when a batch re-created it without a visitor.
            if e is not None and (owner == vid or (owner is None and c in theirs)):
                del self._sessions[c]
                erased.append(c)
            elif e is not None or c not in theirs:
                continue
            gone.add(c)
            self._archive.pop(c, None)
        for key in [k for k in self._timers if k.partition("|")[0] in gone]:
            del self._timers[key]
            self._due.pop(key, None)
            self._leased.pop(key, None)
        if gone:  # the heap's entries too, a re-armed timer's stale ones included
            self._heap = [entry for entry in self._heap if entry[1].partition("|")[0] not in gone]
            heapq.heapify(self._heap)
        return erased

    async def archive(self, sid: str, row: str, now_ms: int) -> None:
        e = self._sessions.get(sid)
        if e is not None and e.h.get("vid"):
            # The row outlives the session: the visitor's index must point to it as long.
            self._index_session(e.h["vid"], sid, now_ms)
        self._archive.pop(sid, None)
        self._archive[sid] = (now_ms, row)
        cutoff = now_ms - self.archive_ttl_s * 1000
        while self._archive:
            oldest, (ms, _) = next(iter(self._archive.items()))
            if ms > cutoff and len(self._archive) <= ARCHIVE_KEEP:
                break
            del self._archive[oldest]

    async def archived(self, last_before_ms: int, limit: int = ARCHIVE_KEEP) -> list[str]:
        cutoff = int(time.time() * 1000) - self.archive_ttl_s * 1000
        return [row for ms, row in self._archive.values() if cutoff < ms < last_before_ms][:limit]

    async def record_feedback(self, sid: str, oid: str, act: str, log: str, now_ms: int) -> bool:
        e = self._live(sid)
        if e is None or not record_feedback(e.h, oid, act):
            return False
        e.log.appendleft(log)
        self._touch(e)
        if act in COUNTED_ACTS:
            self._count(now_ms, e.h[f"r:{oid}"], act)
        return True

    async def append_log(self, sid: str, lines: Sequence[str], now_ms: int) -> None:
        e = self._live(sid)
        if e is not None:
            e.log.extendleft(lines)

    async def record_conversion(self, vid: str, now_ms: int, window_ms: int, value_cents: int = 0) -> list[str]:
        self._count(now_ms, "*", "purchases")
        v = self._visitors.get(vid)
        for exp, arm, first in arm_credits(v.arms if v else {}, v.converted if v else set(), now_ms, window_ms):
            if first:
                v.converted.add(exp)  # type: ignore[union-attr]
                self.count_arm(now_ms, exp, arm, "converted")
            if value_cents:
                self.count_arm(now_ms, exp, arm, "revenue", value_cents)
                self.count_arm(now_ms, exp, arm, "revenue_sq", value_cents * value_cents)
        since = now_ms - min(window_ms, SHOWS_TTL_S * 1000)
        credited = not_held({r for r, times in (v.shows.items() if v else ()) if r and any(t > since for t in times)},
                            v.arms if v else {})
        for rule in credited:
            self._count(now_ms, rule, "converted")
        return credited

    async def stats(self, since_ms: int, until_ms: int) -> dict[int, dict[str, int]]:
        return {b: dict(self._stats[b]) for b in stats_buckets(since_ms, until_ms) if b in self._stats}

    async def expose(self, vid: str, experiment: str, arm: str, now_ms: int) -> tuple[str, bool]:
        v = self._visitor(vid, now_ms)
        kept = v.arms.get(experiment)
        if kept is not None:
            return kept[0], False
        v.arms[experiment] = (arm, now_ms)
        return arm, True

    async def arms(self, vid: str) -> dict[str, str]:
        v = self._visitors.get(vid)
        return {exp: arm for exp, (arm, _) in v.arms.items()} if v else {}

    def count_arm(self, now_ms: int, experiment: str, arm: str, counter: str, n: int = 1) -> None:
        day = self._arm_stats.setdefault(arm_day(now_ms), {})
        key = arm_field(experiment, arm, counter)
        day[key] = day.get(key, 0) + n

    async def arm_stats(self, since_ms: int, until_ms: int) -> dict[int, dict[str, int]]:
        return {d: dict(self._arm_stats[d]) for d in arm_days(since_ms, until_ms) if d in self._arm_stats}

    async def set_paused(self, rule: str, paused: bool, now_ms: int) -> None:
        if paused:
            self._paused.setdefault(rule, now_ms)
        else:
            self._paused.pop(rule, None)

    async def paused(self) -> dict[str, int]:
        return dict(self._paused)

    async def session(self, sid: str) -> SessionState | None:
        e = self._live(sid)
        if e is None:
            return None
        state = SessionState.from_hash(sid, e.h)
        await self.only_live([state], int(time.time() * 1000))
        return state

    async def log(self, sid: str, limit: int = LOG_MAX) -> list[dict[str, Any]]:
        e = self._live(sid)
        return parse_log(list(e.log)[:limit]) if e else []

    async def sessions(self, now_ms: int, limit: int = 100) -> list[SessionState]:
        self.sweep()
        states = [SessionState.from_hash(sid, e.h) for sid, e in self._sessions.items()]
        states.sort(key=lambda s: s.seen_ms, reverse=True)
        await self.only_live(states[:limit], now_ms)
        return states[:limit]

    async def ttl_s(self, sid: str) -> dict[str, float]:
        e = self._live(sid)
        if e is None:
            return {}
        left = e.expires_at - time.monotonic()
        return {"state": left, "log": left}

    async def arm_timers(self, timers) -> int | None:
        for t in timers:
            old, e = self._timers.get(t.key), self._live(t.sid)
            if self._leased.pop(t.key, None) is not None:
                old = None  # it came due and is firing: its outcome is its own line
            if e is not None:
                if old is not None:
                    e.log.appendleft(outcome_line(old, "replaced", t.armed_ms))
                e.log.appendleft(armed_line(t))
            self._timers[t.key] = t
            self._due[t.key] = t.due_ms
            heapq.heappush(self._heap, (t.due_ms, t.key))
        return await self.next_due_ms()

    async def claim_due(self, now_ms: int, limit: int = 200, node: str = "",
                        lease_ms: int = TIMER_LEASE_MS) -> list[Timer]:
        out: list[Timer] = []

        def take(key: str) -> None:
            t = self._timers.get(key)
            if t is None:
                self._leased.pop(key, None)
            else:
                self._leased[key] = (now_ms + lease_ms, node)
                out.append(t)

        for key, (deadline, holder) in list(self._leased.items()):
            if len(out) >= limit:
                break
            alive = self._nodes.get(holder)
            if deadline <= now_ms or (alive is not None and alive <= now_ms):
                take(key)
        while self._heap and self._heap[0][0] <= now_ms and len(out) < limit:
            due, key = heapq.heappop(self._heap)
            if self._due.get(key) == due:
                del self._due[key]
                take(key)
        return sorted(out, key=lambda t: t.due_ms)

    async def finish_timer(self, t: Timer, lines: Sequence[str], now_ms: int,
                           count: str = "") -> tuple[bool, SessionState | None]:
        current = self._timers.get(t.key)
        if current is None:
            return False, None
        if current == t:
            del self._timers[t.key]
            self._due.pop(t.key, None)
            self._leased.pop(t.key, None)
        e = self._live(t.sid)
        if e is None:
            return True, None
        if count:
            e.h[count] = str(int(e.h.get(count, "0")) + 1)
        e.log.extendleft(lines)
        self._touch(e)
        return True, SessionState.from_hash(t.sid, e.h)

    async def defer_timer(self, t: Timer, due_ms: int, waited: bool = True) -> bool:
        if self._timers.get(t.key) != t:
            return False
        self._timers[t.key] = dataclasses.replace(t, waits=t.waits + int(waited))
        self._due[t.key] = due_ms
        heapq.heappush(self._heap, (due_ms, t.key))
        self._leased.pop(t.key, None)
        return True

    async def next_due_ms(self) -> int | None:
        while self._heap:
            due, key = self._heap[0]
            if self._due.get(key) == due:
                return due
            heapq.heappop(self._heap)  # superseded by a re-arm, or claimed
        return None

    async def pending_timers(self) -> int:
        return len(self._due)

    async def heartbeat(self, node: str, now_ms: int, ttl_ms: int = HEARTBEAT_TTL_MS) -> None:
        self._nodes[node] = now_ms + ttl_ms
        self._nodes = {n: until for n, until in self._nodes.items() if until > now_ms - TIMER_LEASE_MS}

    async def node_gone(self, node: str) -> None:
        self._nodes[node] = 0

    async def alive_nodes(self, now_ms: int) -> set[str]:
        return {n for n, until in self._nodes.items() if until > now_ms}

    # --- staff access ------------------------------------------------------------

    async def staff_attempt(self, client: str, failed: bool, max_failures: int, window_s: int) -> float:
        now = time.monotonic()
        count, ends = self._staff_failures.get(client, (0, now))
        if ends <= now:
            count = 0
        if count >= max_failures:
            return ends - now
        if failed:
            if count == 0:
                ends = now + window_s
                self._staff_failures.pop(client, None)  # re-inserted last: insertion order is age
                if len(self._staff_failures) >= STAFF_CLIENTS_KEEP:
                    self._staff_failures = {c: v for c, v in self._staff_failures.items() if v[1] > now}
                    while len(self._staff_failures) >= STAFF_CLIENTS_KEEP:
                        del self._staff_failures[next(iter(self._staff_failures))]
            self._staff_failures[client] = (count + 1, ends)
        return 0.0

    async def add_staff_session(self, session: str, record: Mapping[str, str], ttl_s: int) -> None:
        now = time.monotonic()
        self._staff_sessions = {s: v for s, v in self._staff_sessions.items() if v[1] > now}
        self._staff_sessions[session] = (dict(record), now + ttl_s)

    async def staff_session(self, session: str) -> dict[str, str] | None:
        found = self._staff_sessions.get(session)
        if found is None or found[1] <= time.monotonic():
            return None
        return dict(found[0])

    async def end_staff_session(self, session: str) -> None:
        self._staff_sessions.pop(session, None)

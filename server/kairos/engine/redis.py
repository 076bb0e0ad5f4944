"""The Redis engine: each session one MessagePack string in Redis, one Lua script call per batch."""

from __future__ import annotations

from collections import Counter, OrderedDict
from importlib.resources import files
from typing import Any, Awaitable, Callable, Mapping, Sequence

import msgspec
import redis.asyncio as aioredis
from redis.client import NEVER_DECODE

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import re
import secrets
import time

from ..caps import Caps, bucket
from ..rules.delayed import Timer, armed_line
from ..rules.model import MAX_DELAY_S
from ..session import (Op, SessionState, VisitorInfo, apply_ops, log_entry, record_feedback, record_show,
                       session_verdict)
from . import keys
from .autopipe import AutoPipeline
from .outage import Outage, is_outage
from .base import (ARM_STATS_TTL_S, ARCHIVE_KEEP, COUNTED_ACTS, FORGET_BATCH, HEARTBEAT_TTL_MS, LOG_MAX, PAUSED_TTL_S,
                   SHOWS_TTL_S, STATS_TTL_S, TIMER_LEASE_MS, VIEWS_KEEP, VIEWS_WINDOW_MS, Bus, Engine, Opened, Opening,
                   Outcome, SessionGone, Show, arm_credits, arm_day, arm_days, arm_field, index_ttl_s, not_held, parse_log,
                   stats_bucket, stats_buckets)

log = logging.getLogger("kairos.redis")
# The timer queue outlives its longest delay by an hour, then expires if unused.
TIMERS_TTL_S = int(MAX_DELAY_S) + 3600

# Sessions whose stored state a process keeps for compare-and-set (~1 KB each at a
# store's shape, docs/operations.md): well above the busy sockets one process holds;
# and for how long after a session's last batch. Shoppers' batches come a median
# 56 s and a p90 of 299 s apart (the store shape of benchmarks/compare.py, issue 16):
# five minutes keep nine writes in ten compared and set, for ~1 KB an open page.
KEEP_SEEN = 20_000
KEEP_SEEN_S = 300.0
# How often a process trims the dashboard's list of live sessions and renews its expiry.
LIVE_TRIM_MS = 1000

# How long a dashboard query waits for a free pooled connection before failing.
POOL_WAIT_S = 10.0
# Connections that carry the visitors' traffic, auto-pipelined; the rest of the
# pool serves the dashboard.
PIPELINE_WORKERS = 4
# How often a process reads the paused rules into its view, which its claims use
# (claim_show.lua runs in the visitor's hash slot and cannot read kairos:paused): a
# pause or resume made on this process holds for its claims at once, one made on
# another process within this (and a round trip).
PAUSED_REFRESH_S = 1.0
# How often a process writes the rule counters it counted (claims, feedback, purchases):
# one HINCRBY per (bucket, rule|counter) and one EXPIRE per bucket a second, instead of
# two or three commands at every claim (issue 16: ~2,500 commands/s at 2,000 batches/s).
# A process reads its own counts at once (`stats` writes them first); the other
# processes' are at most this late. A process killed loses at most this much of its
# counts: they are statistics, never a cap (the caps are counted in the scripts).
STATS_FLUSH_S = 1.0


def _script(name: str) -> str:
    """A script's text, after the libraries its "-- Needs lib/x.lua" line names, which define its functions.

    Redis runs one text per script (EVALSHA) and refuses globals: what several scripts
    share is prepended, so the hello's script and a batch's apply ops one same way.
    """
    lua = files("kairos").joinpath("lua")
    text = lua.joinpath(name).read_text()
    needs = next((line for line in text.splitlines() if line.startswith("-- Needs ")), "")
    return "".join(lua.joinpath(lib).read_text() + "\n" for lib in _NEEDS.findall(needs.partition("(")[0])) + text


_NEEDS = re.compile(r"lib/\w+\.lua")


# The timer queue's keys, in the order its scripts take them.
_TIMER_KEYS = (keys.TIMERS_DUE, keys.TIMERS_DATA, keys.TIMERS_LEASED, keys.TIMERS_HOLDER)


def _pairs(flat: Sequence[str]) -> dict[str, str]:
    return dict(zip(flat[::2], flat[1::2]))


def _scored(reply: Sequence[Any]) -> list[tuple[str, Any]]:
    """A WITHSCORES reply as (member, score) pairs, whether redis-py paired it or not (RESP2/3)."""
    if reply and isinstance(reply[0], (list, tuple)):
        return [(m, sc) for m, sc in reply]
    return list(zip(reply[::2], reply[1::2]))


# A session's state as lib/ops.lua stores it: a MessagePack map of field -> string.
# msgspec, not msgpack: decoding straight to dict[str, str] and encoding take 2.5 and
# 0.9 µs for a 49-field state where msgpack takes 5.4 and 2.7 (python -m timeit,
# this project's machine), and the compare-and-set path does both at every batch.
_decode_state = msgspec.msgpack.Decoder(dict[str, str]).decode
_encode = msgspec.msgpack.Encoder().encode


# A session's stored bytes begin with a version (lib/ops.lua): a MessagePack str
# (0xa0 | 14) of 'L' or 'P' and 13 hex digits, new at every write. Its 15 bytes are
# what a compare-and-set sends back instead of the whole session.
_VERSION_HEAD = 0xA0 | 14
_VERSION_BYTES = 15
# The versions this process writes: 'P', 5 random hex digits, then a counter (lib/ops.lua
# writes 'L' and Redis's clock): unique per key for as long as anyone keeps a session.
_PROCESS = f"{secrets.randbits(20):05x}"
_written = itertools.count(secrets.randbits(31))


def _version(raw: bytes) -> bytes:
    """The version of a session's stored bytes; b"" for bytes stored without one."""
    return raw[:_VERSION_BYTES] if raw[:1] == b"\xae" else b""


def _versioned(h: dict[str, str]) -> bytes:
    """A session as this process stores it: a new version, then its map."""
    return b"\xaeP" + f"{_PROCESS}{next(_written) & 0xFFFFFFFF:08x}".encode() + _encode(h)


def _comparable(raw: bytes | None) -> tuple[bytes, dict[str, str]] | None:
    """Stored bytes as a compare-and-set takes them: their version and a decoded copy to
    change; None for none, or for bytes stored without a version (never compared)."""
    version = _version(raw) if raw else b""
    return (version, _stored(raw) or {}) if version else None


def _stored(raw: bytes | None) -> dict[str, str] | None:
    """A session as lib/ops.lua stores it (a version, then a MessagePack map of strings), or None."""
    if not raw:
        return None
    body = memoryview(raw)[_VERSION_BYTES:] if raw[0] == _VERSION_HEAD else raw
    try:
        return _decode_state(body)
    except msgspec.ValidationError:  # not a map of strings (Lua packs an empty table as an array)
        got = msgspec.msgpack.decode(body)
        return {str(k): str(v) for k, v in got.items()} if isinstance(got, dict) else {}


# A session's state is binary (lib/ops.lua): its replies are read as bytes, not text.
_RAW = {NEVER_DECODE: True}


def _packed(ops: Sequence[Op]) -> bytes:
    """Ops as lib/ops.lua takes them: one MessagePack array of kind, field, value, kind, ..."""
    return _encode([x for op in ops for x in op])


def _visit(seen: Sequence[Any]) -> VisitorInfo:
    """lib/visit.lua's reply, read as text or (with a session's state, _RAW) as bytes."""
    sessions, first, same_path, same_type, pending, arms = seen
    text = lambda b: b.decode() if isinstance(b, bytes) else b  # noqa: E731
    return VisitorInfo(int(sessions), int(first), int(same_path), int(same_type),
                       tuple(sorted(text(p) for p in pending)),
                       {text(arms[i])[2:]: _arm_record(text(arms[i + 1]))[0] for i in range(0, len(arms), 2)})


def _arm_record(value: str) -> tuple[str, int]:
    """An experiment's record under the visitor ("<arm>|<first exposure ms>")."""
    arm, _, at = value.partition("|")
    return arm, int(at) if at.isdigit() else 0


def _arms(info: Mapping[str, str]) -> dict[str, str]:
    """The recorded arms in a visitor's info hash (fields x:<experiment>)."""
    return {f[2:]: _arm_record(v)[0] for f, v in info.items() if f.startswith("x:")}


def _visitor_caps(caps: Caps, rule_full: bool) -> list[Any]:
    """The visitor's caps as lib/shows.lua takes them (six arguments)."""
    w = lambda window: (window.max, window.per_ms) if window else (0, 0)  # noqa: E731
    return [*w(caps.per_visitor), *w(caps.all_per_visitor), "1" if rule_full else "0", caps.cooldown_ms]


class RedisEngine(Engine):
    """Production engine: state in Redis, atomic through Lua, few connections, auto-pipelined."""

    name = "redis"

    def __init__(self, url: str, session_ttl_s: int = 1800, pool_size: int = 8, visitor_ttl_s: int = 30 * 24 * 3600,
                 archive_ttl_s: int = 30 * 24 * 3600) -> None:
        self.url = url
        self.session_ttl_s = session_ttl_s
        self.visitor_ttl_s = visitor_ttl_s
        self.archive_ttl_s = archive_ttl_s
        self.outage = Outage()
        self.r, self.pool, db = self._connect(url, pool_size)
        # Pub/sub channels are shared by every database of a Redis server: on a database
        # other than 0 they carry its number, so installations (or test runs) sharing one
        # Redis do not hear each other's dashboard feed, timer wake-ups and nudges.
        self._channels = f"@{db}" if db else ""
        self.feed_channel = keys.FEED + self._channels
        self.wake_channel = keys.TIMERS_WAKE + self._channels
        self.forgotten_channel = keys.FORGOTTEN + self._channels
        self._apply = self.r.register_script(_script("apply.lua"))
        self._claim = self.r.register_script(_script("claim_show.lua"))
        self._apply_show = self.r.register_script(_script("apply_show.lua"))
        self._feedback = self.r.register_script(_script("feedback.lua"))
        self._arm = self.r.register_script(_script("arm_timers.lua"))
        self._claim_timers = self.r.register_script(_script("claim_timers.lua"))
        self._finish_timer = self.r.register_script(_script("finish_timer.lua"))
        self._defer_timer = self.r.register_script(_script("defer_timer.lua"))
        self._visit = self.r.register_script(_script("visit.lua"))
        self._open = self.r.register_script(_script("open.lua"))
        self._archive = self.r.register_script(_script("archive.lua"))
        # Rare (a consent withdrawn): loaded on first use, not at start.
        self._forget_session = self.r.register_script(_script("forget.lua"))
        self.index_ttl_s = index_ttl_s(visitor_ttl_s, archive_ttl_s)
        self._staff_attempt = self.r.register_script(_script("staff_attempt.lua"))
        # Each session's state as this process last saw it stored (MessagePack bytes),
        # while its page is open here: what apply's compare-and-set compares with.
        self._seen: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        # Calls stored by compare-and-set, by script: what applying here saved Redis.
        self.applied_here: Counter[str] = Counter()
        # Compare-and-set writes refused because another writer had changed the session
        # meanwhile (then applied again to the session as it is): two tabs, or a timer.
        self.stale: Counter[str] = Counter()
        self._live_trimmed_ms = 0
        self.pipe = self._pipeline(max(1, min(PIPELINE_WORKERS, pool_size - 1)))
        # Told how long each script call took (the runtime points it at /metrics).
        self.on_roundtrip: Callable[[str, float], None] = lambda call, seconds: None
        # Redis Cluster (read at start): a session id of the old form, whose keys are not
        # in its visitor's slot, is not resumed there (_resumable).
        self.cluster = False
        # The rules paused, as this process last read them (PAUSED_REFRESH_S); `_paused_gen`
        # counts this process's own pauses, so that a read sent before one does not undo it.
        self.paused_view: frozenset[str] = frozenset()
        self._paused_gen = 0
        self._paused_task: asyncio.Task[None] | None = None
        # The rule counters counted here and not yet written (STATS_FLUSH_S), by (bucket
        # start, "<rule>|<counter>"). Small whatever the traffic: five counters per rule of
        # the rules file and the purchases, in the one or two buckets of the last second;
        # only an outage lets it grow, by as many for each five minutes (_write_stats).
        self._tally: Counter[tuple[int, str]] = Counter()
        self._tally_lock = asyncio.Lock()
        self._stats_task: asyncio.Task[None] | None = None

    def _connect(self, url: str, pool_size: int) -> tuple[Any, Any, int]:
        """The client, its pool and the database number (a cluster engine connects otherwise)."""
        pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=pool_size, timeout=POOL_WAIT_S,
                                                        decode_responses=True)
        return aioredis.Redis(connection_pool=pool), pool, int(pool.connection_kwargs.get("db") or 0)

    def _pipeline(self, workers: int) -> Any:
        return AutoPipeline(self.r, workers=workers, outage=self.outage)

    async def _register(self) -> None:
        """Scripts of this engine's own, beside the common ones (the cluster engine has some)."""

    async def _is_cluster(self) -> bool:
        return bool(int((await self.r.info("cluster")).get("cluster_enabled", 0)))

    async def _close_clients(self) -> None:
        await self.r.aclose()
        await self.pool.aclose()

    async def start(self) -> None:
        await self._register()
        # Load the scripts now, so the first batch is a plain EVALSHA.
        for script in (self._apply, self._apply_show, self._claim, self._feedback, self._arm, self._claim_timers,
                       self._finish_timer, self._defer_timer, self._visit, self._open, self._archive,
                       self._staff_attempt):
            script.sha = await self.r.script_load(script.script)
        self.cluster = await self._is_cluster()
        self.pipe.start()
        await self._read_paused()
        self._paused_task = asyncio.create_task(self._keep_paused_fresh(), name="kairos-paused")
        self._stats_task = asyncio.create_task(self._keep_writing_stats(), name="kairos-stats")

    async def close(self) -> None:
        for task in (self._paused_task, self._stats_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        # What was counted since the last write, before the connections close: a graceful
        # stop loses no count (a write cut by the cancel above put its counts back).
        try:
            await self._write_stats()
        except Exception as exc:
            self.fault(exc, refused=False)
            log.warning("%d rule counts not written at close: %s", sum(self._tally.values()), exc)
        await self.pipe.close()
        await self._close_clients()

    def node_channel(self, node: str) -> str:
        """Where the process `node` hears of nudges for its sockets (and answers to its forwards)."""
        return keys.node_channel(node) + self._channels

    def fault(self, exc: BaseException, refused: bool = True) -> bool:
        if not is_outage(exc):
            return False
        line = self.outage.failed(time.monotonic(), str(exc), refused)
        if line:
            log.warning(line)
        return True

    def _eval(self, call: str, script: Any, script_keys: list[str], args: list[Any], raw: bool = False) -> Awaitable[Any]:
        """Run one of the scripts through the pipeline, timed: the wait for a pipeline counts too.

        Queued at the call (what the caller queues next joins the same pipeline); awaited for its reply.
        `raw`: its reply is read as bytes (one that carries a session's state).
        """
        started = time.perf_counter()
        return self._timed(call, started, self.pipe.evalsha(script, script_keys, args, _RAW if raw else None))

    async def _timed(self, call: str, started: float, reply: Awaitable[Any]) -> Any:
        try:
            return await reply
        finally:
            self.on_roundtrip(call, time.perf_counter() - started)

    async def ping(self) -> bool:
        try:
            return bool(await self.r.ping())
        except aioredis.RedisError:
            return False

    async def _read(self, sid: str) -> dict[str, str] | None:
        """A session as stored, None if there is none; through the auto-pipeline, as a batch's calls."""
        key = keys.session(sid)
        try:
            return _stored(await self.pipe.execute("GET", key, **_RAW))
        except aioredis.ResponseError as exc:
            if "WRONGTYPE" not in str(exc):
                raise
            # stored as a hash by an older Kairos: lib/ops.lua rewrites it at its next change
            return await self.pipe.execute("HGETALL", key) or None

    async def visitor_of(self, sid: str) -> str | None:
        h = await self._read(sid)
        return h.get("vid") if h else None

    async def apply(self, sid: str, ops: Sequence[Op], log: Sequence[str], now_ms: int) -> SessionState:
        return (await self._write_batch(sid, ops, log, now_ms, None))[0]

    async def apply_deciding(self, sid: str, ops: Sequence[Op], log: Sequence[str], now_ms: int,
                             decide: Callable[[SessionState], Outcome]) -> tuple[SessionState, Outcome | None]:
        return await self._write_batch(sid, ops, log, now_ms, decide)

    async def _write_batch(self, sid: str, ops: Sequence[Op], log: Sequence[str], now_ms: int,
                           decide: Callable[[SessionState], Outcome] | None) -> tuple[SessionState, Outcome | None]:
        kept = self._kept(sid, take=True)  # a concurrent batch of the session finds none: applied in Redis
        script_keys = [keys.session(sid), keys.log(sid)]
        # Applied here and stored by compare-and-set (lua/apply.lua): Redis only compares
        # and stores. When another writer came in between, Redis sends the session as it
        # is and the ops are applied to it here once more; a second time, in Redis.
        for _ in range(2):
            if kept is None:
                break
            version, h = kept
            apply_ops(h, ops)
            state = SessionState.from_hash(sid, h)
            mine = _versioned(h)
            # What the new state calls for is decided before it is stored, and stored with it:
            # its log lines, and its show (lua/apply_show.lua) when the session's own caps
            # pass here and nothing outside the visitor's slot is counted first (a rule-wide
            # window). Decided once: an outcome of a session someone changed meanwhile is
            # dropped, and the caller decides after the batch as ever.
            outcome, decide = (decide(state) if decide is not None else None), None
            lines = [*log, *outcome.lines] if outcome else log
            show = outcome.show if outcome else None
            if show is not None and not show.caps.per_rule and (shown := self._record_show(h, show)):
                reply = await self._eval(
                    "apply_show", self._apply_show,
                    [*script_keys, keys.visitor(state.vid, f"shows:{show.rule}"), keys.visitor(state.vid, "shows")],
                    [self.session_ttl_s, LOG_MAX, version, mine, shown, show.oid, now_ms, SHOWS_TTL_S,
                     *_visitor_caps(show.caps, False), *lines, show.log],
                    raw=True,
                )
                if reply == 1:
                    self.applied_here["apply_show"] += 1
                    self._keep(sid, shown)
                    self._count(now_ms, f"{show.rule}|triggered")
                    self._count(now_ms, f"{show.rule}|{'held' if show.held else 'shown'}")
                    return state, outcome
                if isinstance(reply, bytes):  # the visitor's caps stopped the show: the batch alone is stored
                    self.applied_here["apply_show"] += 1
                    self._keep(sid, mine)
                    return state, dataclasses.replace(outcome, show=None)
                self.stale["apply_show"] += 1
                kept = _comparable(reply[0])
                continue
            reply = await self._eval("apply", self._apply, script_keys,
                                     [self.session_ttl_s, LOG_MAX, "", version, mine, *lines], raw=True)
            if reply == 1:
                self.applied_here["apply"] += 1
                self._keep(sid, mine)
                return state, outcome and dataclasses.replace(outcome, show=None)
            self.stale["apply"] += 1
            kept = _comparable(reply[0])
        reply = await self._eval("apply", self._apply, script_keys,
                                 [self.session_ttl_s, LOG_MAX, _packed(ops), "", "", *log], raw=True)
        stored = _stored(reply)
        if stored is None:  # not stored, and these ops do not open it
            raise SessionGone(sid)
        self._keep(sid, reply)
        return SessionState.from_hash(sid, stored), None

    def _kept(self, sid: str, take: bool = False) -> tuple[bytes, dict[str, str]] | None:
        """The version of the session's stored bytes as this process keeps them, and a copy
        decoded to change here; None when it keeps none. `take`: let go of them meanwhile."""
        kept = self._seen.pop(sid, None) if take else self._seen.get(sid)
        return None if kept is None else _comparable(kept[1])

    def _keep(self, sid: str, stored: bytes) -> None:
        # Kept while the session's page is open here and sends batches (released by
        # `closed`); one quiet for KEEP_SEEN_S, or the oldest past KEEP_SEEN, goes: its
        # next batch is applied in Redis, as its first was. (Re-inserted at every batch,
        # the least recently written come first.)
        now = time.monotonic()
        seen = self._seen
        seen[sid] = (now, stored)
        while len(seen) > KEEP_SEEN or next(iter(seen.values()))[0] < now - KEEP_SEEN_S:
            seen.popitem(last=False)

    def _refresh(self, sid: str, stored: bytes) -> None:
        # A claim or feedback changed a session this process keeps: what its next batch
        # compares with. One it does not keep (a timer's claim, a beacon after the page
        # closed) stays unkept.
        if sid in self._seen:
            self._keep(sid, stored)

    def closed(self, sid: str) -> None:
        self._seen.pop(sid, None)

    def _resumable(self, sid: str | None, vid: str) -> bool:
        """Whether the session a hello names may be resumed: one of this visitor's tag (any
        other is not theirs, and its keys are in another slot), or of the old form on a
        single Redis (a page open across the upgrade; a cluster has no such session)."""
        if not sid:
            return False
        tag = keys.session_tag(sid)
        return tag == keys.visitor_tag(vid) if tag else not self.cluster

    async def open_session(self, o: Opening, now_ms: int) -> Opened:
        named = o.sid if self._resumable(o.sid, o.vid) else None
        own = named or o.fresh  # no session named: the new one's keys, which the script does not read then
        reopen = "" if o.re_ops is None else _packed(o.re_ops)
        # The dashboard's list is one key for every session (another slot): indexed in the
        # same pipeline as the script, under the session the hello most likely resumes.
        (sid, resumed, flat, seen, found), *_ = await asyncio.gather(self._eval(
            "open", self._open,
            [keys.session(own), keys.log(own), keys.session(o.fresh), keys.log(o.fresh), keys.visitor(o.vid, "info"),
             keys.visitor(o.vid, "views"), keys.visitor_sessions(o.vid)],
            [named or "", o.fresh, o.vid, self.session_ttl_s, LOG_MAX, _packed(o.ops),
             reopen, now_ms, o.path, o.page_type, self.visitor_ttl_s, VIEWS_WINDOW_MS, VIEWS_KEEP, self.index_ttl_s,
             *o.log],
            raw=True,
        ), *self._live(own, now_ms))
        sid = sid.decode()
        if sid != own:
            # The session named was gone (or another visitor's of the same tag): the new one
            # is indexed in a second round trip, and a gone one leaves the list.
            await self.mark_live(sid, now_ms, drop=() if int(found) else (own,))
        return Opened(sid, bool(resumed), SessionState.from_hash(sid, _stored(flat) or {}), _visit(seen))

    async def mark_live(self, sid: str, now_ms: int, drop: Sequence[str] = ()) -> None:
        """Index the session for the dashboard (once per page load, not per batch); `drop`:
        sessions to take off the list."""
        await asyncio.gather(*self._live(sid, now_ms, drop))

    def _live_key(self, sid: str) -> str:
        """The dashboard's list of live sessions that holds `sid` (one list; sharded on a cluster)."""
        return keys.LIVE

    def _live_keys(self) -> list[str]:
        return [keys.LIVE]

    def _live(self, sid: str, now_ms: int, drop: Sequence[str] = ()) -> list[Awaitable[Any]]:
        # Commands, not a task: gathered with a script's call, they join its pipeline.
        out = [self.pipe.execute("ZADD", self._live_key(sid), now_ms, sid)]
        out += [self.pipe.execute("ZREM", self._live_key(d), d) for d in drop]
        # The list's old entries and its expiry are seen to once a second, not at every
        # hello: the dashboard reads it by score, so an entry past its time shows nowhere.
        if now_ms - self._live_trimmed_ms >= LIVE_TRIM_MS:
            self._live_trimmed_ms = now_ms
            for key in self._live_keys():
                self.pipe.post("ZREMRANGEBYSCORE", key, "-inf", now_ms - self.session_ttl_s * 1000)
                self.pipe.post("EXPIRE", key, self.session_ttl_s)
        return out

    async def claim_show(self, sid: str, vid: str, rule: str, oid: str, caps: Caps, log: str, now_ms: int,
                         placed: str = "", held: bool = False) -> str:
        """The claim runs in the visitor's slot (claim_show.lua); what is shared by every
        visitor is done beside it: the rule's window, the pauses and the counters."""
        window, full = None, False
        if caps.per_rule:
            # A place in the rule's window is reserved before the claim and given back if
            # the claim is refused, so the window never counts more shows than its cap.
            # Claims racing for the last place may both be refused where one would have
            # been shown: the cap errs on the side of fewer shows, never more.
            window = keys.rule_window(rule, bucket(caps.per_rule, now_ms))
            taken, _ = await asyncio.gather(self.pipe.execute("INCR", window),
                                            self.pipe.execute("PEXPIRE", window, caps.per_rule.per_ms))
            full = int(taken) > caps.per_rule.max
        kept = self._kept(sid)
        mine = self._record_show(kept[1], Show(rule, oid, caps, log, placed)) if kept is not None else None
        seen = kept[0] if kept is not None and mine else b""
        try:
            reply = await self._eval(
                "claim_show", self._claim,
                [keys.session(sid), keys.log(sid), keys.visitor(vid, f"shows:{rule}"), keys.visitor(vid, "shows")],
                [rule, oid, caps.per_session, caps.priority, self.session_ttl_s, LOG_MAX, log, now_ms,
                 *_visitor_caps(caps, full), SHOWS_TTL_S,
                 "1" if rule in self.paused_view else "0", placed, seen, mine or b""],
                raw=True,
            )
        except Exception:
            if window:  # best effort: a place not given back (Redis away) lowers the cap until the window ends
                with contextlib.suppress(Exception):
                    await asyncio.gather(*self._give_back(window, caps.per_rule.per_ms))
            raise
        verdict, counted = reply[0].decode(), reply[1]
        if len(reply) > 2:
            self._refresh(sid, reply[2])
        elif verdict == "ok" and mine:  # stored as this process recorded it
            self.applied_here["claim_show"] += 1
            self._refresh(sid, mine)
        # The counters are statistics: counted after the claim, not atomically with it, and
        # in this process, written to Redis every STATS_FLUSH_S (a process killed loses up
        # to that much of its counts; it never changes a cap): the push waits for no
        # round trip of theirs, and Redis adds a second of counts in a few commands.
        if int(counted):
            self._count(now_ms, f"{rule}|triggered")
        if verdict == "ok":
            self._count(now_ms, f"{rule}|{'held' if held else 'shown'}")
        if window and verdict != "ok":
            await asyncio.gather(*self._give_back(window, caps.per_rule.per_ms))
        return verdict

    def _record_show(self, h: dict[str, str], show: Show) -> bytes | None:
        """Record the show on `h`, a decoded copy of the session (session.record_show), and return
        it as this process stores it, when the session's own caps pass there and the rule is not
        paused (the script then checks only the visitor's); else None, and `h` is untouched."""
        if (show.rule in self.paused_view or f"o:{show.oid}" in h
                or session_verdict(h, show.rule, show.caps.per_session, show.caps.priority) != "ok"):
            return None
        record_show(h, show.rule, show.oid, show.caps.priority, show.placed)
        return _versioned(h)

    def _give_back(self, window: str, per_ms: int) -> list[Awaitable[Any]]:
        # PEXPIRE again: a window that expired meanwhile must not come back without a TTL.
        return [self.pipe.execute("DECR", window), self.pipe.execute("PEXPIRE", window, per_ms)]

    async def append_log(self, sid: str, lines: Sequence[str], now_ms: int) -> None:
        # LPUSHX: a session that expired meanwhile gets no orphan log without a TTL.
        # Through the auto-pipeline, like a batch's own calls: queued together, so in order.
        key = keys.log(sid)
        await asyncio.gather(self.pipe.execute("LPUSHX", key, *lines), self.pipe.execute("LTRIM", key, 0, LOG_MAX - 1))

    async def record_conversion(self, vid: str, now_ms: int, window_ms: int, value_cents: int = 0) -> list[str]:
        since = now_ms - min(window_ms, SHOWS_TTL_S * 1000)
        info = keys.visitor(vid, "info")
        oids, fields = await asyncio.gather(
            self.pipe.execute("ZRANGEBYSCORE", keys.visitor(vid, "shows"), f"({since}", "+inf"),
            self.pipe.execute("HGETALL", info))
        exposed = {f[2:]: _arm_record(v) for f, v in fields.items() if f.startswith("x:")}
        converted = {f[2:] for f in fields if f.startswith("c:")}
        credits = arm_credits(exposed, converted, now_ms, window_ms)
        # HSETNX decides the first conversion: two purchases at once on two processes count one.
        firsts = await asyncio.gather(*(self.pipe.execute("HSETNX", info, f"c:{exp}", now_ms)
                                        for exp, _, first in credits if first))
        it = iter(firsts)
        for exp, arm, first in credits:
            if first and int(next(it)):
                self.count_arm(now_ms, exp, arm, "converted")
            if value_cents:
                self.count_arm(now_ms, exp, arm, "revenue", value_cents)
                self.count_arm(now_ms, exp, arm, "revenue_sq", value_cents * value_cents)
        # Each show's oid is "<rule>.<hex>".
        credited = not_held({oid.rsplit(".", 1)[0] for oid in oids}, exposed)
        self._count(now_ms, "*|purchases")
        for rule in credited:
            self._count(now_ms, f"{rule}|converted")
        return credited

    def _count(self, now_ms: int, field: str) -> None:
        self._tally[stats_bucket(now_ms), field] += 1

    def count_arm(self, now_ms: int, experiment: str, arm: str, counter: str, n: int = 1) -> None:
        self._tally[arm_day(now_ms), arm_field(experiment, arm, counter)] += n

    async def arm_stats(self, since_ms: int, until_ms: int) -> dict[int, dict[str, int]]:
        return await self._counters(arm_days(since_ms, until_ms), keys.arm_stats)

    async def expose(self, vid: str, experiment: str, arm: str, now_ms: int) -> tuple[str, bool]:
        # In the visitor's info hash, so it lives and is forgotten with them (and read at each
        # page view with the rest of it: lib/visit.lua).
        info = keys.visitor(vid, "info")
        first, kept, _ = await asyncio.gather(self.pipe.execute("HSETNX", info, f"x:{experiment}", f"{arm}|{now_ms}"),
                                              self.pipe.execute("HGET", info, f"x:{experiment}"),
                                              self.pipe.execute("EXPIRE", info, self.visitor_ttl_s))
        return (kept or f"{arm}|").split("|", 1)[0], bool(int(first))

    async def arms(self, vid: str) -> dict[str, str]:
        return _arms(await self.pipe.execute("HGETALL", keys.visitor(vid, "info")))

    async def _write_stats(self) -> None:
        """Add the counts counted here to Redis's; on failure they stay, for the next write.

        One MULTI/EXEC per bucket (one, two at a bucket's edge), sent together: a
        bucket's counts are added whole or not at all, so a write that fails is written
        again without counting twice (unless its reply alone was lost), and each
        transaction stays in its key's slot (on Redis Cluster, at its master). Under the
        lock: a write under way when `stats` is asked is waited for, and the pending
        counts written after it.
        """
        async with self._tally_lock:
            if not self._tally:
                return
            tally, self._tally = self._tally, Counter()
            # An experiment's counts ("<experiment>@<arm>|…", rule ids have no @) go to its days' keys.
            buckets: dict[tuple[int, bool], dict[str, int]] = {}
            for (b, field), n in tally.items():
                buckets.setdefault((b, "@" in field), {})[field] = n
            written: set[tuple[int, bool]] = set()

            async def add(b: int, arms: bool, fields: dict[str, int]) -> None:
                key = keys.arm_stats(b) if arms else keys.stats(b)
                async with self.r.pipeline(transaction=True) as pipe:
                    for field, n in fields.items():
                        pipe.hincrby(key, field, n)
                    pipe.expire(key, ARM_STATS_TTL_S if arms else STATS_TTL_S)
                    await pipe.execute()

            try:
                results = await asyncio.gather(*(add(b, arms, fields) for (b, arms), fields in buckets.items()),
                                               return_exceptions=True)
                written = {bucket for bucket, r in zip(buckets, results) if not isinstance(r, BaseException)}
                if len(written) < len(buckets):
                    raise next(r for r in results if isinstance(r, BaseException))
            except BaseException:  # Redis away, or cancelled at close: counted again at the next write
                now_ms = int(time.time() * 1000)
                for (b, field), n in tally.items():
                    # Only buckets whose key would not have expired yet: an outage however
                    # long keeps at most a month of buckets (STATS_TTL_S).
                    arms = "@" in field
                    if (b, arms) not in written and b > now_ms - (ARM_STATS_TTL_S if arms else STATS_TTL_S) * 1000:
                        self._tally[b, field] += n
                raise

    async def _keep_writing_stats(self) -> None:
        while True:
            await asyncio.sleep(STATS_FLUSH_S)
            try:
                await self._write_stats()
            except Exception as exc:  # Redis away: the counts stay for the next write
                if not self.fault(exc, refused=False):
                    log.warning("could not write the rule counters: %s", exc)

    async def stats(self, since_ms: int, until_ms: int) -> dict[int, dict[str, int]]:
        return await self._counters(stats_buckets(since_ms, until_ms), keys.stats)

    async def _counters(self, starts: range, key: Callable[[int], str]) -> dict[int, dict[str, int]]:
        """The counters of each bucket (or day) that has any, by its start."""
        # This process's counts are written first, so it reads them at once; another
        # process's reach Redis within its STATS_FLUSH_S.
        await self._write_stats()
        async with self.r.pipeline(transaction=False) as pipe:
            for start in starts:
                pipe.hgetall(key(start))
            found = await pipe.execute()
        return {start: {k: int(v) for k, v in h.items()} for start, h in zip(starts, found) if h}

    async def set_paused(self, rule: str, paused: bool, now_ms: int) -> None:
        async with self.r.pipeline(transaction=False) as pipe:
            if paused:
                pipe.hsetnx(keys.PAUSED, rule, now_ms)
            else:
                pipe.hdel(keys.PAUSED, rule)
            pipe.expire(keys.PAUSED, PAUSED_TTL_S)
            await pipe.execute()
        self._paused_gen += 1
        self.paused_view = self.paused_view | {rule} if paused else self.paused_view - {rule}

    async def _read_paused(self) -> None:
        gen = self._paused_gen
        rules = frozenset(await self.pipe.execute("HKEYS", keys.PAUSED))
        if gen == self._paused_gen:  # else this process paused or resumed a rule meanwhile: the next read
            self.paused_view = rules

    async def _keep_paused_fresh(self) -> None:
        while True:
            await asyncio.sleep(PAUSED_REFRESH_S)
            try:
                await self._read_paused()
            except Exception as exc:  # Redis away: the view stays as it was, claims fail anyway
                if not self.fault(exc, refused=False):
                    log.warning("could not read the paused rules: %s", exc)

    async def paused(self) -> dict[str, int]:
        return {rule: int(ms) for rule, ms in (await self.r.hgetall(keys.PAUSED)).items()}

    async def visit(self, vid: str, sid: str, path: str, page_type: str, record: bool, now_ms: int) -> VisitorInfo:
        return _visit(await self._eval(
            "visit", self._visit,
            [keys.visitor(vid, "info"), keys.visitor(vid, "views"), keys.visitor_sessions(vid)],
            [now_ms, sid, path, page_type, "1" if record else "0", self.visitor_ttl_s, VIEWS_WINDOW_MS, VIEWS_KEEP,
             self.index_ttl_s],
        ))

    async def keep_for_next_page(self, vid: str, rule: str, now_ms: int) -> None:
        await self.pipe.execute("HSET", keys.visitor(vid, "info"), f"q:{rule}", now_ms)
        await self.pipe.execute("EXPIRE", keys.visitor(vid, "info"), self.visitor_ttl_s)

    async def pending_for(self, vid: str) -> list[str]:
        fields = await self.pipe.execute("HKEYS", keys.visitor(vid, "info"))
        return sorted(f[2:] for f in fields if f.startswith("q:"))

    async def forget(self, vid: str, sid: str | None) -> list[str]:
        # Rare (a consent withdrawn), so plain round trips: the visitor's keys, each
        # session's keys, the live set, the archive and the timers live in different
        # hash slots. The index is walked FORGET_BATCH sessions per round trip and
        # emptied as it goes, so an interrupted forget is finished by the next one.
        info_key, index = keys.visitor(vid, "info"), keys.visitor_sessions(vid)
        info = await self.r.hgetall(info_key)
        # The last session, and those that servers before the index listed (s:<sid>), are theirs too.
        listed = sorted({info.get("sid", "")} - {""} | {f[2:] for f in info if f.startswith("s:")})
        erased, gone = await self._forget_sessions(vid, listed, trusted=True)
        if sid and sid not in gone:
            more, more_gone = await self._forget_sessions(vid, [sid], trusted=False)
            erased, gone = erased + more, gone | more_gone
        while batch := await self.r.zrange(index, 0, FORGET_BATCH - 1):
            more, more_gone = await self._forget_sessions(vid, batch, trusted=True)
            erased, gone = erased + more, gone | more_gone
            await self.r.zrem(index, *batch)
        await self._forget_timers(gone)
        # Each show's oid is "<rule>.<hex>": the per-rule show keys of this visitor.
        rules = {oid.rsplit(".", 1)[0] for oid in await self.r.zrange(keys.visitor(vid, "shows"), 0, -1)}
        await self.r.delete(info_key, index, *(keys.visitor(vid, p) for p in ("views", "shows", *(f"shows:{r}" for r in rules))))
        return sorted(set(erased))

    async def _forget_sessions(self, vid: str, sids: Sequence[str], trusted: bool) -> tuple[list[str], set[str]]:
        """Erase a batch of the visitor's sessions (`trusted`: from their own index) with their
        logs, live-set entries and rows kept for training; those erased live, and all of theirs."""
        if not sids:
            return [], set()
        # Through the auto-pipeline: each call to its session's master on a cluster, and
        # the script loaded where it is not known yet (it is not loaded at start).
        verdicts = await asyncio.gather(*(self.pipe.evalsha(self._forget_session, [keys.session(c), keys.log(c)],
                                                            [vid, "1" if trusted else "0"]) for c in sids))
        erased = [c for c, v in zip(sids, verdicts) if int(v) == 1]
        # A session of theirs that expired still has its row kept for training; one only
        # named by the caller is theirs only if its state said so.
        gone = {c for c, v in zip(sids, verdicts) if int(v) == 1 or (trusted and int(v) == 0)}
        if gone:
            async with self.r.pipeline(transaction=False) as pipe:
                for sid in gone:
                    pipe.zrem(self._live_key(sid), sid)
                for sid in gone:
                    idx, rows = self._archive_keys(sid)
                    pipe.zrem(idx, sid)
                    pipe.hdel(rows, sid)
                await pipe.execute()
        return erased, gone

    def _timer_queue(self, sid: str) -> tuple[str, ...]:
        """The queue that holds a session's timers: due times, payloads, leases, holders (one; sharded on a cluster)."""
        return _TIMER_KEYS

    async def _forget_timers(self, sids: set[str]) -> None:
        """Drop the timers of these sessions: one incremental pass over each queue they are in, whatever their number."""
        queues: dict[tuple[str, ...], set[str]] = {}
        for sid in sids:
            queues.setdefault(self._timer_queue(sid), set()).add(sid)
        for (due, data, leased, holder), own in queues.items():
            doomed = [m async for m, _ in self.r.hscan_iter(data, count=1000) if m.partition("|")[0] in own]
            for i in range(0, len(doomed), FORGET_BATCH):
                part = doomed[i:i + FORGET_BATCH]
                async with self.r.pipeline(transaction=True) as pipe:
                    pipe.zrem(due, *part)
                    pipe.hdel(data, *part)
                    pipe.zrem(leased, *part)
                    pipe.hdel(holder, *part)
                    await pipe.execute()

    async def record_feedback(self, sid: str, oid: str, act: str, log: str, now_ms: int) -> bool:
        kept = self._kept(sid)
        seen, mine, rule = b"", b"", ""
        if kept is not None:
            h = kept[1]
            rule = h.get(f"r:{oid}", "")
            if record_feedback(h, oid, act):  # compared and set by feedback.lua, as a batch is
                seen, mine = kept[0], _versioned(h)
        reply = await self._eval("feedback", self._feedback, [keys.session(sid), keys.log(sid)],
                                 [oid, act, self.session_ttl_s, LOG_MAX, log, seen, mine], raw=True)
        if reply == 1:
            self.applied_here["feedback"] += 1
            self._refresh(sid, mine)
        elif not reply:
            return False
        else:
            rule = reply[0].decode()
            self._refresh(sid, reply[1])
        if act in COUNTED_ACTS:  # counted beside the script, as claim_show's counters are
            self._count(now_ms, f"{rule}|{act}")
        return True

    async def session(self, sid: str) -> SessionState | None:
        h = await self._read(sid)
        if not h:
            return None
        state = SessionState.from_hash(sid, h)
        await self.only_live([state], int(time.time() * 1000))
        return state

    async def log(self, sid: str, limit: int = LOG_MAX) -> list[dict[str, Any]]:
        return parse_log(await self.r.lrange(keys.log(sid), 0, limit - 1))

    async def sessions(self, now_ms: int, limit: int = 100) -> list[SessionState]:
        # The newest `limit` of each list (one, or each shard's on a cluster), then the newest of those.
        lists = await asyncio.gather(*(self.pipe.execute("ZREVRANGEBYSCORE", key, "+inf", now_ms - self.session_ttl_s * 1000,
                                                         "WITHSCORES", "LIMIT", 0, limit) for key in self._live_keys()))
        newest = sorted(((float(ms), sid) for found in lists for sid, ms in _scored(found)), reverse=True)[:limit]
        sids = [sid for _, sid in newest]
        if not sids:
            return []
        hashes = await asyncio.gather(*(self._read(sid) for sid in sids))  # one pipeline
        states = [SessionState.from_hash(sid, h) for sid, h in zip(sids, hashes) if h]
        states.sort(key=lambda s: s.seen_ms, reverse=True)
        await self.only_live(states, now_ms)
        return states

    def _archive_keys(self, sid: str) -> tuple[str, str]:
        """The index and rows that keep `sid`'s row for training (one pair; sharded on a cluster)."""
        return keys.ARCHIVE_INDEX, keys.ARCHIVE_ROWS

    def _archives(self) -> list[tuple[str, str]]:
        return [(keys.ARCHIVE_INDEX, keys.ARCHIVE_ROWS)]

    async def archive(self, sid: str, row: str, now_ms: int) -> None:
        # Each of the archives keeps its share of the rows (ARCHIVE_KEEP in all).
        keep = -(-ARCHIVE_KEEP // len(self._archives()))
        vid, _ = await asyncio.gather(
            self.visitor_of(sid),
            self._eval("archive", self._archive, list(self._archive_keys(sid)),
                       [sid, row, now_ms, self.archive_ttl_s, keep]),
        )
        if vid:
            # The row outlives the session: the visitor's index must point to it as long.
            index = keys.visitor_sessions(vid)
            await asyncio.gather(self.pipe.execute("ZADD", index, now_ms, sid),
                                 self.pipe.execute("EXPIRE", index, self.index_ttl_s))

    async def archived(self, last_before_ms: int, limit: int = ARCHIVE_KEEP) -> list[str]:
        cutoff = int(time.time() * 1000) - self.archive_ttl_s * 1000
        # The oldest `limit` of each archive, then the oldest of those.
        found = await asyncio.gather(*(self.r.zrangebyscore(idx, f"({cutoff}", f"({last_before_ms}", start=0,
                                                            num=limit, withscores=True)
                                       for idx, _ in self._archives()))
        oldest = sorted((ms, sid, rows) for (_, rows), got in zip(self._archives(), found) for sid, ms in got)[:limit]
        by_rows: dict[str, list[str]] = {}
        for _, sid, rows in oldest:
            by_rows.setdefault(rows, []).append(sid)
        kept: dict[str, str] = {}
        for rows, sids in by_rows.items():
            for i in range(0, len(sids), 1000):  # in slices: one reply stays small
                part = sids[i:i + 1000]
                kept.update((sid, r) for sid, r in zip(part, await self.r.hmget(rows, part)) if r is not None)
        return [kept[sid] for _, sid, _ in oldest if sid in kept]

    async def ttl_s(self, sid: str) -> dict[str, float]:
        async with self.r.pipeline(transaction=False) as pipe:
            pipe.pttl(keys.session(sid))
            pipe.pttl(keys.log(sid))
            state_ms, log_ms = await pipe.execute()
        # PTTL: -2 no such key, -1 a key without expiry (which must never happen).
        return {name: ms / 1000 if ms >= 0 else float(ms) for name, ms in (("state", state_ms), ("log", log_ms)) if ms != -2}

    async def arm_timers(self, timers) -> int | None:
        if not timers:
            return await self.next_due_ms()
        args: list[object] = [TIMERS_TTL_S, LOG_MAX]
        script_keys = [keys.TIMERS_DUE, keys.TIMERS_DATA, keys.TIMERS_LEASED, keys.TIMERS_HOLDER]
        for t in timers:
            # The script ends the `replaced` line with the superseded timer's due time.
            replaced_head = log_entry("timer", t.armed_ms, rule=t.rule, outcome="replaced")[:-1]
            args += [t.key, t.due_ms, t.payload(), armed_line(t), replaced_head]
            script_keys += [keys.session(t.sid), keys.log(t.sid)]
        first = await self._eval("arm_timers", self._arm, script_keys, args)
        first_ms = int(float(first)) if first is not None else None
        if first_ms is not None and any(t.due_ms == first_ms for t in timers):
            # A new earliest timer: the other processes' loops sleep past it otherwise.
            await self._publish(self.wake_channel, first_ms)
        return first_ms

    async def claim_due(self, now_ms: int, limit: int = 200, node: str = "",
                        lease_ms: int = TIMER_LEASE_MS) -> list[Timer]:
        flat = await self._eval("claim_timers", self._claim_timers, [*_TIMER_KEYS, keys.NODES],
                                [now_ms, limit, node, lease_ms, TIMERS_TTL_S])
        return sorted((Timer.from_payload(k, p) for k, p in _pairs(flat).items()), key=lambda t: t.due_ms)

    async def finish_timer(self, t: Timer, lines: Sequence[str], now_ms: int,
                           count: str = "") -> tuple[bool, SessionState | None]:
        recorded, raw = await self._eval(
            "finish_timer", self._finish_timer, [*_TIMER_KEYS, keys.session(t.sid), keys.log(t.sid)],
            [t.key, t.payload(), self.session_ttl_s, LOG_MAX, count, *lines], raw=True)
        h = _stored(raw)
        return bool(int(recorded)), SessionState.from_hash(t.sid, h) if h else None

    async def defer_timer(self, t: Timer, due_ms: int, waited: bool = True) -> bool:
        kept = dataclasses.replace(t, waits=t.waits + int(waited)).payload()
        return bool(int(await self._eval("defer_timer", self._defer_timer, list(self._timer_queue(t.sid)),
                                         [t.key, t.payload(), kept, due_ms])))

    async def heartbeat(self, node: str, now_ms: int, ttl_ms: int = HEARTBEAT_TTL_MS) -> None:
        async with self.r.pipeline(transaction=True) as pipe:
            pipe.zadd(keys.NODES, {node: now_ms + ttl_ms})
            # Dead for longer than a lease: its leases have lapsed by then, nothing needs it.
            pipe.zremrangebyscore(keys.NODES, "-inf", now_ms - TIMER_LEASE_MS)
            pipe.pexpire(keys.NODES, TIMER_LEASE_MS + ttl_ms)
            await pipe.execute()

    async def node_gone(self, node: str) -> None:
        # Alive until long ago: its leases are taken over at once, and it stays listed
        # (as dead) until the heartbeats' sweep, like a process that was killed.
        await self.r.zadd(keys.NODES, {node: 0})

    async def alive_nodes(self, now_ms: int) -> set[str]:
        return set(await self.pipe.execute("ZRANGEBYSCORE", keys.NODES, f"({now_ms}", "+inf"))

    async def next_due_ms(self) -> int | None:
        first = await self.pipe.execute("ZRANGE", keys.TIMERS_DUE, 0, 0, "WITHSCORES")
        if not first:
            return None
        score = first[0][1] if isinstance(first[0], (list, tuple)) else first[1]
        return int(float(score))

    async def pending_timers(self) -> int:
        return int(await self.pipe.execute("ZCARD", keys.TIMERS_DUE))

    async def _publish(self, channel: str, message: Any) -> int:
        """Publish on one channel: how many subscribers heard it (sharded on a cluster)."""
        return int(await self.pipe.execute("PUBLISH", channel, message))

    async def publish(self, node: str, sid: str, frame: bytes, reply_to: str = "", ref: str = "") -> int:
        # Frames are bytes and the client decodes replies as text: carry them as hex.
        message = f"{sid} {frame.hex()}" + (f" {reply_to} {ref}" if reply_to else "")
        return await self._publish(self.node_channel(node), message)

    async def ack(self, node: str, sid: str, ref: str, pushed: bool) -> None:
        # Session ids never start with "!" (ws.new_sid), so an ack cannot pass for a push.
        await self._publish(self.node_channel(node), f"!ack {sid} {ref} {int(pushed)}")

    async def publish_forgotten(self, vid: str, sids: Sequence[str]) -> None:
        await self._publish(self.forgotten_channel, " ".join([vid, *sids]))

    async def publish_feed(self, text: str) -> bool:
        await self._publish(self.feed_channel, text)
        return True

    async def watch_feed(self, ttl_s: int) -> None:
        await self.pipe.execute("SET", keys.FEED_WATCHED, "1", "EX", ttl_s)

    async def feed_watched(self) -> bool:
        return bool(await self.pipe.execute("EXISTS", keys.FEED_WATCHED))

    async def listen(self, node: str, bus: Bus) -> None:
        pubsub = self.r.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(self.node_channel(node), self.wake_channel, self.feed_channel, self.forgotten_channel)
        try:
            while True:
                try:
                    msg = await pubsub.get_message(timeout=5.0)
                except aioredis.ConnectionError as exc:  # logged with the outage; pushes wait for it
                    self.fault(exc, refused=False)
                    await asyncio.sleep(1.0)
                    continue
                if msg is not None:
                    await self.heard(msg["channel"], msg["data"], bus)
        finally:
            await pubsub.aclose()

    async def heard(self, channel: str, data: str, bus: Bus) -> None:
        """Hand one message heard on this process's channels to the bus."""
        if channel == self.feed_channel:
            bus.on_feed(data)
        elif channel == self.wake_channel:
            bus.on_wake(int(float(data)))
        elif channel == self.forgotten_channel:
            vid, *sids = data.split(" ")
            await bus.on_forgotten(vid, sids)
        elif data.startswith("!ack "):
            _, sid, ref, pushed = data.split(" ")
            bus.on_ack(sid, ref, pushed == "1")
        else:
            sid, hexframe, *reply = data.split(" ")
            await bus.on_push(sid, bytes.fromhex(hexframe), *reply)

    # --- staff access ------------------------------------------------------------

    async def staff_attempt(self, client: str, failed: bool, max_failures: int, window_s: int) -> float:
        wait_ms = await self.pipe.evalsha(self._staff_attempt, [keys.staff_failures(client)],
                                          ["1" if failed else "0", max_failures, window_s * 1000])
        return int(wait_ms) / 1000

    async def add_staff_session(self, session: str, record: Mapping[str, str], ttl_s: int) -> None:
        key = keys.staff_session(session)
        async with self.r.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping=dict(record))
            pipe.expire(key, ttl_s)
            await pipe.execute()

    async def staff_session(self, session: str) -> dict[str, str] | None:
        return await self.r.hgetall(keys.staff_session(session)) or None

    async def end_staff_session(self, session: str) -> None:
        await self.r.delete(keys.staff_session(session))

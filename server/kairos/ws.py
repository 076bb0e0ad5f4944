"""The visitor websocket endpoint: frames in, engine and rules, pushes out."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
import time
from typing import Sequence

from starlette.types import Message
from starlette.websockets import WebSocket

from . import wire
from .batch import Applied, apply_events, arm_delayed, claim_best, keep_for_training, log_score_moves
from .push import Connection
from .context import request_context
from .engine import keys
from .engine.base import COUNTED_ACTS, Opening, SessionGone
from .engine.outage import Tally
from .nudge import note_feedback, note_page_closed
from .rules import Rule, Ruleset
from .runtime import Runtime, now_ms
from .session import SessionState, VisitorInfo, hello_ops, log_entry, sockets_field
from .wire import Event, Events, Feedback, Hello, WireError

log = logging.getLogger("kairos.ws")

# Refused-for-rate frames in a row before the connection is closed as a flood.
FLOOD_DROPS = 50
# Sessions the store lost while their pages stayed open (Redis restarted without
# persistence): after one outage, every open page's next batch finds its session
# gone. One line for the first, then a count, whatever their number.
RESTORES = Tally("a session's state was lost by the store (Redis restarted without persistence?); "
                 "opened again from its page's hello")


def new_sid(vid: str) -> str:
    """A new session id of this visitor: `<tag>.<random>`, 20 characters of the wire's
    alphabet, whose tag puts the session's keys in its visitor's Redis Cluster slot
    (engine.keys.visitor_tag): one script may touch both."""
    return f"{keys.visitor_tag(vid)}." + secrets.token_urlsafe(12)


async def visitor_endpoint(ws: WebSocket) -> None:
    rt: Runtime = ws.app.state.kairos
    origin = ws.headers.get("origin")
    if rt.settings.allowed_origins and origin not in rt.settings.allowed_origins:
        log.info("refused handshake from origin %r", origin)
        # A 403 reaches the page's script as close 1006, which looks like a network
        # fault and is retried for the life of the tab. Accepting and closing at once
        # with 4003 lets the snippet stop; nothing is read or sent but the close, so
        # the origin still gets no session, state or data.
        await ws.accept()
        await ws.close(code=wire.CLOSE_ORIGIN, reason="origin not allowed")
        return
    await ws.accept()
    rt.metrics.connections.inc()
    await VisitorSocket(ws, rt).run()


class VisitorSocket:
    """One page load's connection."""

    # Thousands are open at once, most of them idle (issue 16: memory per idle session).
    __slots__ = ("ws", "rt", "conn", "sid", "hello_frame", "vid", "site", "visitor", "limit", "_dropped",
                 "_rate_error_at", "_received_s", "_stored")

    def __init__(self, ws: WebSocket, rt: Runtime) -> None:
        self.ws = ws
        self.rt = rt
        self.conn = Connection(ws)
        self.sid: str | None = None
        # The hello this page load was opened with, as received (smaller than decoded, and
        # rarely needed): what re-opens the session if the store loses it.
        self.hello_frame: bytes | None = None
        self.vid = ""
        self.site = ""
        # What is known of the visitor beyond the session, read at each page view.
        self.visitor = VisitorInfo()
        s = rt.settings
        self.limit = wire.RateLimit(s.frames_burst, s.frames_per_s)
        self._dropped = 0
        self._rate_error_at = float("-inf")
        # When the frame being handled was received (perf_counter): a rule's push latency starts there.
        self._received_s = 0.0
        # Whether the batch being handled was stored: a fault before that is answered with its seq.
        self._stored = False

    async def run(self) -> None:
        try:
            hello = await self._receive_hello()
            if hello is not None:
                await self._open(hello)
                await self._serve()
        except Exception as exc:
            if not self.rt.engine.fault(exc):
                raise
            # Redis went away while the session was opened (a page load in an outage): one
            # logged outage, and the snippet's reconnect with backoff, not a traceback per page.
            self.rt.metrics.refused.labels(code="server_error").inc()
            self.conn.send(wire.error(WireError("server_error", "the server cannot keep sessions right now; try again")))
            self.conn.close(wire.CLOSE_INTERNAL)
        finally:
            self.rt.hub.remove(self.conn)
            await self.conn.finish()
            # A restart's sockets are not counted out: their pages come straight back, and
            # the process marks itself gone (timers.TimerService.close), so they count as
            # lost sockets and a timer due meanwhile waits for the page.
            if self.sid is not None and not self.conn.forgotten and not self.rt.stopping:
                await self._mark_disconnected()

    # --- refusals ---------------------------------------------------------------

    def refuse(self, err: WireError) -> None:
        """Answer bad input with its error frame (and close code), log it, count it."""
        log.info("refused sid=%s code=%s close=%s: %s", self.sid, err.code, err.close, err.msg)
        self.rt.metrics.refused.labels(code=err.code).inc()
        self.conn.send(wire.error(err))
        if err.close is not None:
            self.conn.close(err.close)

    # --- hello --------------------------------------------------------------------

    async def _receive_hello(self) -> Hello | None:
        try:
            async with asyncio.timeout(wire.HELLO_TIMEOUT_S):  # not wait_for: no task of its own per hello
                msg = await self.ws.receive()
        except TimeoutError:
            self.refuse(WireError("hello_required", f"no hello within {wire.HELLO_TIMEOUT_S:g} s", wire.CLOSE_NO_HELLO))
            return None
        self._received_s = time.perf_counter()
        if msg["type"] == "websocket.disconnect":
            return None
        data = msg.get("bytes")
        frame = wire.decode(data, max_bytes=self.rt.settings.max_frame_bytes) if data is not None else None
        self.rt.metrics.child(self.rt.metrics.frames, "hello").inc()
        if isinstance(frame, WireError) and frame.close is not None:
            self.refuse(frame)
            return None
        if not isinstance(frame, Hello):
            why = frame.msg if isinstance(frame, WireError) else "the first frame must be a binary hello frame"
            self.refuse(WireError("hello_required", why, wire.CLOSE_NO_HELLO))
            return None
        # The browser's own DNT / Sec-GPC headers count as much as the hello's fields.
        if not frame.consent or frame.dnt or frame.gpc or wire.privacy_signal(self.ws.headers):
            self.refuse(WireError("no_consent", "no consent, or Do-Not-Track / Global Privacy Control is on", wire.CLOSE_NO_CONSENT))
            return None
        self.hello_frame = data
        return frame

    async def _open(self, hello: Hello) -> None:
        rt, now, rules = self.rt, now_ms(), self.rt.rules
        page_type = rules.classify(hello.page.path, hello.page.type)
        # One round trip (Engine.open_session): the session is resumed only by the visitor
        # it belongs to and only while it lives, else a new one starts with a page view,
        # even from a reconnect's hello. Both sets of ops go, the engine picks.
        full = dataclasses.replace(hello, re=False) if hello.re else hello
        opened = await rt.engine.open_session(Opening(
            vid=hello.vid, sid=hello.sid or None, fresh=new_sid(hello.vid),
            ops=hello_ops(full, page_type, now, rt.node_id, self._context(), rules.scores),
            log=[log_entry("event", now, e="page_view", path=hello.page.path, page_type=page_type)],
            path=hello.page.path, page_type=page_type,
            re_ops=hello_ops(hello, page_type, now, rt.node_id) if hello.re else None,
        ), now)
        sid, state, self.visitor = opened.sid, opened.state, opened.visitor
        if not opened.resumed:
            hello = full  # a new session starts with a page view
        state.visitor = self.visitor
        rt.feed.touch(sid, state)
        self.vid = hello.vid
        self.site = hello.site
        self.sid = sid
        rt.hub.add(sid, self.conn)
        self.conn.send(wire.welcome(sid, rt.track, max_frame=rt.settings.max_frame_bytes, max_events=rt.settings.max_events))
        if hello.re:
            return
        p = hello.page
        page_view = Event("page_view", now, {"url": p.url, "path": p.path, "title": p.title, "ref": p.ref, "prod": p.prod, "type": p.type})
        await log_score_moves(rt, rules, state, [page_view], now)
        await self._decide(rules, state, [page_view], now, self._pending(rules))

    def _context(self) -> dict[str, str]:
        # uvicorn puts the client's address here, from X-Forwarded-For when the
        # proxy is trusted (FORWARDED_ALLOW_IPS). It is read once and not kept.
        ip = self.ws.client.host if self.ws.client else None
        return request_context(self.ws.headers.get("user-agent", ""), ip, self.rt.geo)

    async def _mark_disconnected(self) -> None:
        """The page load is over: count the socket out, and keep the session's row for training."""
        now = now_ms()
        ops = [("incr", sockets_field(self.rt.node_id), "-1")]
        if self.visitor.first_ms:
            ops.append(("set", "visits", str(self.visitor.sessions)))
        try:
            state = await self.rt.engine.apply(self.sid, ops, [], now)
            await keep_for_training(self.rt, self.rt.rules, state, now)
            self.rt.feed.touch(self.sid, state)
        except SessionGone:
            pass  # expired, or lost by the store: there is no connection count left to lower
        except Exception as exc:
            if not self.rt.engine.fault(exc):  # a Redis outage is logged once, as a whole
                log.exception("could not record the disconnect of sid=%s", self.sid)
        finally:
            self.rt.engine.closed(self.sid)
            note_page_closed(self.rt, self.sid, now)

    # --- frames ---------------------------------------------------------------

    async def _serve(self) -> None:
        # The frame is handled in a call of its own, not in a local here: a local would keep
        # the last one (~12 tracked objects) alive while the socket waits for the next, and
        # every young garbage collection would walk it again (kairos.gcpolicy).
        while not self.conn.closing:
            if not await self._take(await self.ws.receive()):
                return

    async def _take(self, msg: Message) -> bool:
        """Handle one websocket message; False when it says the socket closed."""
        self._received_s = time.perf_counter()
        if msg["type"] == "websocket.disconnect":
            return False
        if not self._within_rate():
            return True
        data = msg.get("bytes")
        if data is None:
            self.refuse(WireError("bad_frame", "text messages are not part of the protocol; send binary MessagePack"))
            return True
        frame = wire.decode(data, max_bytes=self.rt.settings.max_frame_bytes, max_events=self.rt.settings.max_events)
        if isinstance(frame, WireError):
            self.refuse(frame)
            return True
        self.rt.metrics.child(self.rt.metrics.frames, type(frame).__name__.lower()).inc()
        try:
            await self._handle(frame)
        except Exception as exc:
            # With the batch's seq when nothing of it was stored: the snippet sends
            # that batch again (a batch stored, then a later step failed, is not resent).
            seq = frame.seq if isinstance(frame, Events) and not self._stored else None
            err = WireError("server_error", "the server failed to handle this frame; it was dropped", seq=seq)
            if self.rt.engine.fault(exc):  # a Redis outage is logged once, as a whole: no line per batch
                self.rt.metrics.refused.labels(code=err.code).inc()
                self.conn.send(wire.error(err))
                return True
            log.exception("fault handling a %s frame of sid=%s", type(frame).__name__, self.sid)
            self.refuse(err)
        return True

    def _within_rate(self) -> bool:
        now = time.monotonic()
        if self.limit.allow(now):
            self._dropped = 0
            return True
        self._dropped += 1
        if self._dropped >= FLOOD_DROPS:
            self.refuse(WireError("flood", f"{FLOOD_DROPS} frames in a row over the rate limit", wire.CLOSE_FLOOD))
        elif now - self._rate_error_at >= 1.0:
            self._rate_error_at = now
            self.refuse(WireError("rate_limited", "too many frames; this one was dropped"))
        else:
            self.rt.metrics.refused.labels(code="rate_limited").inc()
        return False

    async def _handle(self, frame: wire.Frame) -> None:
        match frame:
            case Events():
                await self._events(frame)
            case Feedback():
                await self._feedback(frame)
            case Hello():
                self.refuse(WireError("unexpected_hello", "hello was already received on this connection"))

    async def _events(self, frame: Events) -> None:
        for problem in frame.problems:
            self.refuse(problem)
        if not frame.events and not frame.lost:
            return
        rt, now, rules = self.rt, now_ms(), self.rt.rules
        self._stored = False
        try:
            applied = await apply_events(rt, rules, self.sid, self.vid, self.site, frame, self.visitor, now,
                                         stored=self._on_stored, showing=True)
        except SessionGone:
            await self._reopen(now)
            applied = await apply_events(rt, rules, self.sid, self.vid, self.site, frame, self.visitor, now,
                                         stored=self._on_stored, showing=True)
        self.visitor = applied.visitor
        if frame.events:
            await self._decide(rules, applied.state, frame.events, now, applied=applied)

    def _on_stored(self) -> None:
        self._stored = True

    async def _reopen(self, now: int) -> None:
        """The store lost this session while its page stayed open: open it again from the hello.

        The page, the visitor and where they came from are what the hello said;
        counters start again from this page, and the session is marked `restored`:
        what it was shown is unknown, so its once-per-session nudges are held
        back rather than shown twice (session.session_verdict). Pending timers
        and the visitor's caps went with the store's data.
        """
        rt = self.rt
        hello = wire.decode(self.hello_frame, max_bytes=rt.settings.max_frame_bytes)
        assert isinstance(hello, Hello), "the hello was decoded once already"
        hello = dataclasses.replace(hello, re=False)
        page_type = rt.rules.classify(hello.page.path, hello.page.type)
        ops = hello_ops(hello, page_type, now, rt.node_id, self._context(), rt.rules.scores)
        ops.append(("set", "restored", str(now)))
        line = log_entry("restored", now, why="the store lost this session's state; opened again from its page")
        state, self.visitor, _ = await asyncio.gather(
            rt.engine.apply(self.sid, ops, [line], now),
            rt.engine.visit(hello.vid, self.sid, hello.page.path, page_type, False, now),
            rt.engine.mark_live(self.sid, now),
        )
        rt.metrics.restored.inc()
        rt.feed.touch(self.sid, state)
        if said := RESTORES.note(time.monotonic()):
            log.warning(said)

    async def _feedback(self, fb: Feedback) -> None:
        now = now_ms()
        line = log_entry("feedback", now, oid=fb.oid, act=fb.act, **({"why": fb.why} if fb.why else {}))
        if await self.rt.engine.record_feedback(self.sid, fb.oid, fb.act, line, now):
            self.rt.metrics.feedback.labels(act=fb.act).inc()
            self.rt.feed.touch(self.sid)
            if fb.act in COUNTED_ACTS:
                note_feedback(self.rt, self.visitor, fb.oid, fb.act, now)
        else:
            self.refuse(WireError("unknown_overlay", f"overlay {fb.oid!r} was not shown in this session"))

    # --- decisions ---------------------------------------------------------------

    async def _decide(
        self, rules: Ruleset, state: SessionState, events: Sequence[Event], now: int, extra: Sequence[Rule] = (),
        applied: Applied | None = None,
    ) -> None:
        """Arm the delayed rules the batch armed; show the best nudge it earned, caps allowing.

        `applied`: the batch as apply_events stored it; the show claimed with it is pushed
        first, and a batch it settled is not evaluated again.
        """
        if applied is not None and applied.shown is not None:
            self.conn.send(applied.shown, self.rt.metrics.pushed("rule", self._received_s))
        await arm_delayed(self.rt, rules, state, events, now)
        if applied is not None and applied.settled:
            return
        if (frame := await claim_best(self.rt, rules, state, events, now, extra)) is not None:
            self.conn.send(frame, self.rt.metrics.pushed("rule", self._received_s))

    def _pending(self, rules: Ruleset) -> list[Rule]:
        """Delayed nudges kept for the visitor's next page view (`offline: next_page`), best first.

        The engine took them from the visitor's keys with this page view, so two
        tabs opening at once do not both get them.
        """
        found = [r for r in (rules.rule(rule_id) for rule_id in self.visitor.pending) if r is not None]
        return sorted(found, key=lambda r: -r.priority)

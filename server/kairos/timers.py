"""The timer loop of one process: delayed nudges come due, are claimed once, and are delivered.

Every process runs one. It sleeps until the earliest queued timer is due (at
most MAX_SLEEP_S, in case a wake-up was missed), or until a sooner timer is
armed — here (`arm`) or in another process (a wake-up on the engine's bus;
BullMQ's design, not a 0.5-5 s poll). It claims due timers atomically, so
each fires in exactly one process, re-checks the rule's cancel conditions
against the session as it is now, and delivers the nudge: to the socket here,
to the process holding the socket, to the next page view, or nowhere.

No timer is lost with a process. A claim is a lease, and a timer leaves the
queue only in the engine call that records its outcome, after its nudge was
handed to a socket; a process that dies mid-way stops its heartbeat, and the
others claim its timers again. Such a timer's show keeps its overlay id
(Timer.oid), so it is counted once and may reach the page twice, never two
overlays. A nudge forwarded to another process waits for that process's word
that a socket took it. A due timer whose visitor's page is reconnecting (its
socket died with its process, or closed as the nudge went out) waits for it, a
few hundred ms at a time, up to the reconnect grace after its due time, before
its rule's `offline` decides.

The heartbeat also tells the dashboard which sessions' sockets are still open:
those of a killed process stop counting once its heartbeat lapses.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from .engine.base import HEARTBEAT_EVERY_S, Bus
from .nudge import claim_nudge_or_why, where_open
from .rules.delayed import Timer, cancelled_by, outcome_line, spent
from .rules import Rule
from .runtime import Runtime, now_ms
from .session import SessionState

log = logging.getLogger("kairos.timers")

MAX_SLEEP_S = 1.0
CLAIM_BATCH = 200
# A timer whose firing met Redis away is tried again this much later (a failover on
# Redis Cluster promotes a replica in ~4 s: docs/scaling.md).
OUTAGE_RETRY_MS = 1000
# A due timer waiting for its page to reconnect is looked at again this often:
# the snippet's quickest reconnect is 500 ms (client-js/src/connection.js).
RECONNECT_POLL_MS = 250
# How long a nudge forwarded to another process waits for its word that a socket
# took it: a pub/sub round trip is a millisecond or two; a process that does not
# answer in this time is taken for dead, and the timer waits or falls to `offline`.
FORWARD_ACK_S = 2.0


class TimerService(Bus):
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self._wake = asyncio.Event()
        self._next_ms: int | None = None
        self._tasks: list[asyncio.Task[None]] = []
        # Forwarded nudges waiting for the holder's word: (sid, oid) -> whether a socket took it.
        self._acks: dict[tuple[str, str], asyncio.Future[bool]] = {}

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self.rt.engine.listen(self.rt.node_id, self), name="kairos-bus"),
                       asyncio.create_task(self._beat(), name="kairos-heartbeat")]
        if self.rt.settings.timers:
            self._tasks.append(asyncio.create_task(self._run(), name="kairos-timers"))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        try:  # its sockets are closed and its leases free now, not a heartbeat later
            await self.rt.engine.node_gone(self.rt.node_id)
        except Exception as exc:
            if not self.rt.engine.fault(exc):
                log.exception("could not say this process is gone")

    async def _beat(self) -> None:
        while True:
            try:
                await self.rt.engine.heartbeat(self.rt.node_id, now_ms())
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not self.rt.engine.fault(exc):
                    log.exception("heartbeat fault; retrying")
            await asyncio.sleep(HEARTBEAT_EVERY_S)

    # --- wake-ups ---------------------------------------------------------------

    def arm(self, earliest_ms: int | None) -> None:
        """A timer was armed here; wake the loop if it is due sooner than the loop planned."""
        if earliest_ms is not None and (self._next_ms is None or earliest_ms < self._next_ms):
            self._wake.set()

    def on_wake(self, due_ms: int) -> None:
        self.arm(due_ms)

    def on_feed(self, text: str) -> None:
        self.rt.feed.deliver(text)

    async def on_forgotten(self, vid: str, sids: list[str]) -> None:
        # The process that erased them let its own pages go already: there, none to close.
        closed = self.rt.let_go(sids)
        if closed:
            # A batch those pages sent before their close may have found the session gone
            # and opened it again (ws.VisitorSocket._reopen): erased once more, now that no
            # page of the visitor is left here to write.
            try:
                await self.rt.engine.forget(vid, None)
            except Exception as exc:
                if not self.rt.engine.fault(exc):
                    log.exception("could not erase a forgotten visitor's sessions again")
            log.info("closed %d page(s) of a visitor forgotten on another process", closed)

    async def on_push(self, sid: str, frame: bytes, reply_to: str = "", ref: str = "") -> None:
        pushed = self.rt.hub.push(sid, frame) > 0
        if not pushed:
            log.info("a nudge for sid=%s arrived after its socket closed here", sid)
        if reply_to:
            await self.rt.engine.ack(reply_to, sid, ref, pushed)

    def on_ack(self, sid: str, ref: str, pushed: bool) -> None:
        waiting = self._acks.get((sid, ref))
        if waiting is not None and not waiting.done():
            waiting.set_result(pushed)

    async def forward(self, state: SessionState, frame: bytes, ref: str) -> bool:
        """Hand a nudge to the process holding the session's socket; whether a socket there took it."""
        key = (state.sid, ref)
        self._acks[key] = answer = asyncio.get_running_loop().create_future()
        try:
            if not await self.rt.engine.publish(state.node, state.sid, frame, self.rt.node_id, ref):
                return False  # nobody listens on its channel: it died
            return await asyncio.wait_for(answer, FORWARD_ACK_S)
        except asyncio.TimeoutError:
            log.info("no word from process %s on a nudge for sid=%s", state.node, state.sid)
            return False
        finally:
            self._acks.pop(key, None)

    # --- the loop -------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not self.rt.engine.fault(exc):  # a Redis outage is logged once, as a whole
                    log.exception("timer loop fault; retrying in 1 s")
                await asyncio.sleep(1.0)

    async def tick(self) -> None:
        """Fire what is due, then sleep until the next timer (or a wake-up)."""
        self._wake.clear()  # before looking: an arm from now on wakes the sleep below
        due = await self.rt.engine.claim_due(now_ms(), CLAIM_BATCH, self.rt.node_id)
        if due:
            results = await asyncio.gather(*(self.fire(t) for t in due), return_exceptions=True)
            for t, result in zip(due, results):
                if not isinstance(result, Exception):
                    continue
                if self.rt.engine.fault(result):
                    # Redis away mid-fire (on a cluster, the session's master failing over):
                    # handed back, due again shortly, rather than left to its lease (30 s).
                    with contextlib.suppress(Exception):
                        await self.rt.engine.defer_timer(t, now_ms() + OUTAGE_RETRY_MS, waited=False)
                else:
                    log.error("timer %s failed: %r", t.key, result)
            if len(due) >= CLAIM_BATCH:  # (on Redis Cluster, each shard gives its share: a little more)
                return  # more may be due already
        self._next_ms = await self.rt.engine.next_due_ms()
        delay_s = MAX_SLEEP_S if self._next_ms is None else (self._next_ms - now_ms()) / 1000
        if delay_s > 0:
            try:
                await asyncio.wait_for(self._wake.wait(), min(delay_s, MAX_SLEEP_S))
            except asyncio.TimeoutError:
                pass

    async def fire(self, t: Timer) -> str:
        """Deliver one claimed timer; returns what became of it (for logs, metrics and tests)."""
        rt, now = self.rt, now_ms()
        if not t.waits:  # once per timer, not at each look while it waits for its page
            rt.metrics.timer_lateness.observe(max(0, now - t.due_ms) / 1000)
        outcome = await self._fire(t, now)
        if outcome != "waiting":  # not an outcome yet: it comes back
            rt.metrics.timers.labels(outcome=outcome).inc()
        log.debug("timer %s due %d fired %d ms late: %s", t.key, t.due_ms, now - t.due_ms, outcome)
        return outcome

    async def _fire(self, t: Timer, now: int) -> str:
        # Every outcome is written to the session's timeline (rules.delayed.outcome_line)
        # in the engine call that takes the timer off the queue (finish_timer): until
        # then it is leased, and fired again if this process dies.
        rt = self.rt
        rule = rt.rules.rule(t.rule)
        if rule is None or rule.after is None:
            await rt.engine.finish_timer(t, [outcome_line(t, "rule_gone", now)], now)
            return "rule_gone"
        state = await rt.engine.session(t.sid)
        if state is None or not state.vid:
            # Its log expired with it (or was erased with it): written only if one is left.
            await rt.engine.finish_timer(t, [outcome_line(t, "session_gone", now)], now)
            return "session_gone"
        state.models = rt.rules.models  # an `unless` condition may read a model's score
        outcome, why, where, frame = await self._decide(rule, t, state, now)
        if frame is not None and where is not None:
            # The push latency runs from the due time: the due time on the monotonic clock.
            due_s = time.perf_counter() - (now_ms() - t.due_ms) / 1000
            if where == "here":
                delivered = rt.hub.push(state.sid, frame, rt.metrics.pushed("timer", due_s)) > 0
            else:
                delivered = await self.forward(state, frame, t.oid)
            if not delivered:
                # The socket closed as the nudge went out (the page reloading, its process
                # dying): the show stays claimed under the timer's oid, sent when it is back.
                outcome, why = "wait", None
        if outcome == "wait":
            if now - t.due_ms < rt.settings.reconnect_grace_s * 1000:
                if await rt.engine.defer_timer(t, now + RECONNECT_POLL_MS):
                    return "waiting"
                outcome, why = "replaced", None  # armed again meanwhile: the new timer carries on
            else:
                outcome, why = ("kept", None) if rule.offline == "next_page" else ("dropped", "no page open")
        if outcome == "kept":
            # Kept for the visitor, not the session: closing the tab ends the session.
            # Before the timer is finished: a second keep, should this process die now, is the same.
            await rt.engine.keep_for_next_page(state.vid, rule.id, now)
        line = outcome_line(t, outcome, now, **({"why": why} if why else {}))
        recorded, state_after = await rt.engine.finish_timer(t, [line], now, count=f"x:{rule.id}")
        if state_after is not None:
            rt.feed.touch(t.sid, state_after)
        if outcome == "fired":
            return "forwarded" if where == "elsewhere" else "shown"
        return outcome

    async def _decide(self, rule: Rule, t: Timer, state: SessionState,
                      now: int) -> tuple[str, str | None, str | None, bytes | None]:
        """What becomes of a due timer and why; when it fires, where the page is open and the show claimed.

        "wait": no page is open, but one was open on a process that died: it is
        reconnecting to another. (A page whose socket a live process saw close has
        left, or will say hello as a new page view: its rule's `offline` decides now.)
        """
        claimed = state.overlays.get(t.oid)  # an attempt before this one claimed its show, then died
        if claimed is None:
            if (why := cancelled_by(rule, t, state, now)) is not None:
                return "cancelled", why, None, None
            if (why := spent(rule, state)) is not None:
                return "capped", why, None, None
        elif claimed.status != "sent":
            return "fired", None, None, None  # the page has it, and answered it
        where = await where_open(self.rt, state)
        if where is None:
            if state.lost_sockets:
                return "wait", None, None, None
            return ("kept", None, None, None) if rule.offline == "next_page" else ("dropped", "no page open", None, None)
        frame, verdict = await claim_nudge_or_why(self.rt, rule, state, now, oid=t.oid)
        if frame is None:
            if verdict == "held":  # claimed as a nudge is, and not sent: the visitor is held out
                return "held", None, None, None
            return ("fired", None, None, None) if verdict == "seen" else ("capped", verdict, None, None)
        return "fired", None, where, frame

"""The timer loop of one process: delayed nudges come due, are claimed once, and are delivered.

Every process runs one. It sleeps until the earliest queued timer is due (at
most MAX_SLEEP_S, in case a wake-up was missed), or until a sooner timer is
armed — here (`arm`) or in another process (a wake-up on the engine's bus;
BullMQ's design, not a 0.5-5 s poll). It claims due timers atomically, so
each fires in exactly one process, re-checks the rule's cancel conditions
against the session as it is now, and delivers the nudge: to the socket here,
to the process holding the socket, to the next page view, or nowhere.
"""

from __future__ import annotations

import asyncio
import logging
import time

from .engine.base import Bus
from .nudge import claim_nudge_or_why, deliver, where_open
from .rules.delayed import Timer, cancelled_by, outcome_line, spent
from .rules import Rule
from .runtime import Runtime, now_ms
from .session import SessionState

log = logging.getLogger("kairos.timers")

MAX_SLEEP_S = 1.0
CLAIM_BATCH = 200


class TimerService(Bus):
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self._wake = asyncio.Event()
        self._next_ms: int | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self.rt.engine.listen(self.rt.node_id, self), name="kairos-bus")]
        if self.rt.settings.timers:
            self._tasks.append(asyncio.create_task(self._run(), name="kairos-timers"))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # --- wake-ups ---------------------------------------------------------------

    def arm(self, earliest_ms: int | None) -> None:
        """A timer was armed here; wake the loop if it is due sooner than the loop planned."""
        if earliest_ms is not None and (self._next_ms is None or earliest_ms < self._next_ms):
            self._wake.set()

    def on_wake(self, due_ms: int) -> None:
        self.arm(due_ms)

    def on_feed(self, text: str) -> None:
        self.rt.feed.deliver(text)

    async def on_push(self, sid: str, frame: bytes) -> None:
        if not self.rt.hub.push(sid, frame):
            log.info("a nudge for sid=%s arrived after its socket closed here", sid)

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
        due = await self.rt.engine.claim_due(now_ms(), CLAIM_BATCH)
        if due:
            results = await asyncio.gather(*(self.fire(t) for t in due), return_exceptions=True)
            for t, result in zip(due, results):
                if isinstance(result, Exception) and not self.rt.engine.fault(result):
                    log.error("timer %s failed: %r", t.key, result)
            if len(due) == CLAIM_BATCH:
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
        rt.metrics.timer_lateness.observe(max(0, now - t.due_ms) / 1000)
        outcome = await self._fire(t, now)
        rt.metrics.timers.labels(outcome=outcome).inc()
        log.debug("timer %s due %d fired %d ms late: %s", t.key, t.due_ms, now - t.due_ms, outcome)
        return outcome

    async def _fire(self, t: Timer, now: int) -> str:
        # Every outcome is written to the session's timeline (rules.delayed.outcome_line),
        # in the engine call that records it where there is one.
        rt = self.rt
        rule = rt.rules.rule(t.rule)
        if rule is None or rule.after is None:
            await rt.engine.append_log(t.sid, [outcome_line(t, "rule_gone", now)], now)
            return "rule_gone"
        state = await rt.engine.session(t.sid)
        if state is None or not state.vid:
            # Its log expired with it (or was erased with it): written only if one is left.
            await rt.engine.append_log(t.sid, [outcome_line(t, "session_gone", now)], now)
            return "session_gone"
        state.models = rt.rules.models  # an `unless` condition may read a model's score
        outcome, why, where, frame = await self._decide(rule, t, state, now)
        # The timer's count and its line, once its outcome is known.
        state = await rt.engine.apply(t.sid, [("incr", f"x:{rule.id}", "1")],
                                     [outcome_line(t, outcome, now, **({"why": why} if why else {}))], now)
        rt.feed.touch(t.sid, state)
        if outcome == "kept":
            # Kept for the visitor, not the session: closing the tab ends the session.
            await rt.engine.keep_for_next_page(state.vid, rule.id, now)
        if frame is None or where is None:
            return outcome
        # The push latency runs from the due time: the due time on the monotonic clock.
        due_s = time.perf_counter() - (now_ms() - t.due_ms) / 1000
        # The socket may have closed while the show was claimed: rare, and logged.
        delivered = await deliver(rt, state, frame, where, rt.metrics.pushed("timer", due_s))
        return "forwarded" if where == "elsewhere" else "shown" if delivered else "no_socket"

    async def _decide(self, rule: Rule, t: Timer, state: SessionState,
                      now: int) -> tuple[str, str | None, str | None, bytes | None]:
        """What becomes of a due timer and why; when it fires, where the page is open and the show claimed."""
        if (why := cancelled_by(rule, t, state, now)) is not None:
            return "cancelled", why, None, None
        if (why := spent(rule, state)) is not None:
            return "capped", why, None, None
        where = await where_open(self.rt, state)
        if where is None:
            return ("kept", None, None, None) if rule.offline == "next_page" else ("dropped", "no page open", None, None)
        frame, verdict = await claim_nudge_or_why(self.rt, rule, state, now)
        if frame is None:
            return "capped", verdict, None, None
        return "fired", None, where, frame

"""Showing a rule's nudge to a session: render, check the caps atomically, build the frame."""

from __future__ import annotations

import logging
import secrets
from typing import Callable

from . import wire
from .moment import placed
from .engine.base import Show
from .rules import Rule
from . import runtime
from .runtime import Runtime
from .session import SessionState, log_entry

log = logging.getLogger("kairos.nudge")


async def where_open(rt: Runtime, state: SessionState) -> str | None:
    """Where the session has a page open: "here", "elsewhere" (the process of its latest socket,
    alive: its heartbeat has not lapsed), or None."""
    if rt.hub.connected(state.sid):
        return "here"
    node = state.node
    if node not in ("", rt.node_id) and state.sockets.get(node, 0) > 0 and node in await rt.engine.alive_nodes(runtime.now_ms()):
        return "elsewhere"
    return None


async def deliver(rt: Runtime, state: SessionState, frame: bytes, where: str,
                  on_sent: Callable[[], None] | None = None) -> bool:
    """Push a claimed nudge to the session's page(s), here or through the process that holds them.

    `on_sent` (see `Metrics.pushed`) is called as a socket here writes it; a
    nudge forwarded to another process is not timed, its writing is not seen here.
    """
    if where == "elsewhere":
        return await rt.engine.publish(state.node, state.sid, frame) > 0
    return rt.hub.push(state.sid, frame, on_sent) > 0


async def claim_nudge(rt: Runtime, rule: Rule, state: SessionState, now_ms: int) -> bytes | None:
    """The `show` frame for a rule's nudge if the engine's caps let it through, else None."""
    frame, _ = await claim_nudge_or_why(rt, rule, state, now_ms)
    return frame


def plan_show(rt: Runtime, rule: Rule, state: SessionState, now_ms: int,
              by: str | None = None, oid: str | None = None) -> Show:
    """A rule's nudge made ready to claim for the session: rendered, its overlay id, caps,
    log line, where it lives and the `show` frame to push once the caps let it through.

    `by`: who sent it, when a person did (the log says so). `oid`: the overlay's id
    when the caller names it (a timer's, the same at every attempt).
    """
    html, css = rt.renderer.render(rule.then, state)
    oid = oid or f"{rule.id}.{secrets.token_hex(4)}"
    then = rule.then
    ttl_ms = int(then.ttl_s * 1000)
    return Show(
        rule.id, oid, rule.caps(rt.rules.caps),
        log_entry("show", now_ms, oid=oid, rule=rule.id, **({"by": by} if by else {})),
        placed(then.lives, state, ttl_ms, now_ms).pack(),
        wire.show(oid, then.show, html, css, then.where, ttl_ms, rule.id, then.lives),
    )


def note_shown(rt: Runtime, sid: str, rule: str) -> None:
    """A show the engine claimed: counted for /metrics, and the dashboard told."""
    rt.metrics.shows.labels(rule=rule).inc()
    rt.feed.touch(sid)


async def claim_nudge_or_why(rt: Runtime, rule: Rule, state: SessionState, now_ms: int,
                             by: str | None = None, oid: str | None = None) -> tuple[bytes | None, str]:
    """The `show` frame and "ok" if the engine's caps let the nudge through, else None and which cap stopped it.

    The caps are checked and the show recorded in one atomic engine call, so
    two processes deciding at once cannot both show a capped nudge. `by` and
    `oid` as `plan_show`: a show already claimed under that oid comes back as the
    frame and "again", or None and "seen" once answered.
    """
    show = plan_show(rt, rule, state, now_ms, by, oid)
    verdict = await rt.engine.claim_show(state.sid, state.vid, show.rule, show.oid, show.caps, show.log, now_ms,
                                         show.placed)
    if verdict not in ("ok", "again"):
        log.debug("rule %s not shown to sid=%s: %s", rule.id, state.sid, verdict)
        return None, verdict
    if verdict == "ok":
        note_shown(rt, state.sid, rule.id)
    return show.frame, verdict


async def take_down(rt: Runtime, state: SessionState, oid: str, why: str, now_ms: int) -> bool:
    """Take an overlay off the session's screen: recorded as `hidden` with why, then a `hide` to its page.

    False when it is not on screen (already closed, replaced, or never shown),
    so one overlay is taken down once. A ttl that passed is only recorded: the
    snippet has taken it down by itself.
    """
    line = log_entry("feedback", now_ms, oid=oid, act="hidden", why=why)
    if state.onscreen != oid or not await rt.engine.record_feedback(state.sid, oid, "hidden", line, now_ms):
        return False
    state.onscreen, state.onscreen_at = None, ""
    rt.metrics.feedback.labels(act="hidden").inc()
    rt.feed.touch(state.sid)
    if why != "ttl" and (where := await where_open(rt, state)):
        await deliver(rt, state, wire.hide(oid, why), where)
    return True

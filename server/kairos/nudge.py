"""Showing a rule's nudge to a session: render, check the caps atomically, build the frame."""

from __future__ import annotations

import logging
import secrets
from typing import Callable

from . import wire
from .rules import Rule
from .runtime import Runtime
from .session import SessionState, log_entry

log = logging.getLogger("kairos.nudge")


async def where_open(rt: Runtime, state: SessionState) -> str | None:
    """Where the session has a page open: "here", "elsewhere" (another process, alive), or None."""
    if rt.hub.connected(state.sid):
        return "here"
    if state.connected > 0 and state.node not in ("", rt.node_id) and await rt.engine.node_alive(state.node):
        return "elsewhere"
    return None


async def deliver(rt: Runtime, state: SessionState, frame: bytes, where: str,
                  on_sent: Callable[[], None] | None = None) -> bool:
    """Push a claimed nudge to the session's page(s), here or through the process that holds them.

    `on_sent` (see `Metrics.pushed`) is called as a socket here writes it; a
    nudge forwarded to another process is not timed, its writing is not seen here.
    """
    if where == "elsewhere":
        await rt.engine.publish(state.node, state.sid, frame)
        return True
    return rt.hub.push(state.sid, frame, on_sent) > 0


async def claim_nudge(rt: Runtime, rule: Rule, state: SessionState, now_ms: int) -> bytes | None:
    """The `show` frame for a rule's nudge if the engine's caps let it through, else None."""
    frame, _ = await claim_nudge_or_why(rt, rule, state, now_ms)
    return frame


async def claim_nudge_or_why(rt: Runtime, rule: Rule, state: SessionState, now_ms: int,
                             by: str | None = None) -> tuple[bytes | None, str]:
    """The `show` frame and "ok" if the engine's caps let the nudge through, else None and which cap stopped it.

    The caps are checked and the show recorded in one atomic engine call, so
    two processes deciding at once cannot both show a capped nudge. `by`: who
    sent it, when a person did (the log says so).
    """
    html, css = rt.renderer.render(rule.then, state)
    oid = f"{rule.id}.{secrets.token_hex(4)}"
    line = log_entry("show", now_ms, oid=oid, rule=rule.id, **({"by": by} if by else {}))
    caps = rule.caps(rt.rules.caps)
    verdict = await rt.engine.claim_show(state.sid, state.vid, rule.id, oid, caps, line, now_ms)
    if verdict != "ok":
        log.debug("rule %s not shown to sid=%s: %s", rule.id, state.sid, verdict)
        return None, verdict
    then = rule.then
    rt.metrics.shows.labels(rule=rule.id).inc()
    rt.feed.touch(state.sid)
    return wire.show(oid, then.show, html, css, then.where, int(then.ttl_s * 1000), rule.id), verdict

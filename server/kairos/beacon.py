"""The beacon endpoint, `POST /b`: a page's last batch, or a visitor withdrawing consent.

A page being hidden cannot wait for a websocket to open, so the snippet hands
its last batch to `navigator.sendBeacon`, which delivers it after the page is
gone and never reads the answer. The body is one MessagePack frame, decoded
and validated by `wire.decode_beacon` exactly as the websocket's frames are;
its events go through the same path (batch.py). `kairos.consent(false)` sends
a `forget` frame the same way. Docs: docs/protocol.md, "Beacons".
"""

from __future__ import annotations

import logging
import time

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from . import bodies, wire
from .batch import apply_events, arm_delayed, keep_for_training
from .engine.base import SessionGone
from .rules import evaluate
from .runtime import Runtime, now_ms
from .session import VisitorInfo
from .wire import BeaconEvents, Forget, WireError

log = logging.getLogger("kairos.beacon")

# Refusals, by code: what the HTTP status says about them.
_STATUS = {"too_large": 413, "rate_limited": 429, "unknown_session": 404, "origin": 403, "no_consent": 403}


def refuse(rt: Runtime, err: WireError, sid: str | None = None) -> Response:
    """Answer a refused beacon with its status and a short JSON reason; log it and count it.

    The log line names the code and the session (when known), never the address
    the beacon came from.
    """
    log.info("refused beacon sid=%s code=%s: %s", sid, err.code, err.msg)
    rt.metrics.refused.labels(code=err.code).inc()
    return JSONResponse({"error": err.code, "msg": err.msg}, status_code=_STATUS.get(err.code, 400))


async def beacon_endpoint(request: Request) -> Response:
    rt: Runtime = request.app.state.kairos
    origin = request.headers.get("origin")
    # sendBeacon sends an Origin; a request without one is not from a page, and
    # carries nothing a page could not send over the websocket.
    if origin is not None and rt.settings.allowed_origins and origin not in rt.settings.allowed_origins:
        return refuse(rt, WireError("origin", f"origin {origin!r} is not allowed"))
    max_bytes = rt.settings.max_frame_bytes  # a beacon is one frame: the websocket's limit (bodies.py)
    try:
        body = await bodies.read(request, max_bytes)
    except bodies.TooLarge:
        return refuse(rt, WireError("too_large", f"a beacon is at most {max_bytes} bytes"))
    except bodies.BadLength as exc:
        return refuse(rt, WireError("bad_frame", str(exc)))
    beacon = wire.decode_beacon(body, max_bytes=max_bytes, max_events=rt.settings.max_events)
    if isinstance(beacon, WireError):
        return refuse(rt, beacon)
    if not rt.beacon_limits.allow(beacon.vid, time.monotonic()):
        return refuse(rt, WireError("rate_limited", "too many beacons from this visitor; this one was dropped"), beacon.sid)
    rt.metrics.beacons.labels(type="forget" if isinstance(beacon, Forget) else "events").inc()
    try:
        if isinstance(beacon, Forget):
            return await _forget(rt, beacon)  # erasing is always allowed
        if wire.privacy_signal(request.headers):
            return refuse(rt, WireError("no_consent", "Do-Not-Track / Global Privacy Control is on: nothing is kept"), beacon.sid)
        return await _events(rt, beacon)
    except SessionGone:  # it expired between the check and the write
        return refuse(rt, WireError("unknown_session", "no such session for this visitor"), beacon.sid)
    except Exception as exc:
        if not rt.engine.fault(exc):  # a Redis outage is logged once, as a whole
            log.exception("fault handling a beacon of sid=%s", beacon.sid)
        rt.metrics.refused.labels(code="server_error").inc()
        return JSONResponse({"error": "server_error", "msg": "the server failed to handle this beacon"}, status_code=500)


async def _events(rt: Runtime, b: BeaconEvents) -> Response:
    """Apply a page's last batch to its session, as the websocket would have; nothing is pushed."""
    state = await rt.engine.session(b.sid)
    if state is None or state.vid != b.vid or (state.site and state.site != b.site):
        return refuse(rt, WireError("unknown_session", "no such session for this visitor"), b.sid)
    batch = b.batch
    for problem in batch.problems:
        refuse(rt, problem, b.sid)  # the rest of the batch is applied, as on the websocket
    if not batch.events and not batch.lost:
        return Response(status_code=204)
    rules, now = rt.rules, now_ms()
    visitor = VisitorInfo()
    if not any(e.type == "page_view" for e in batch.events):
        # What the rules know of the visitor, without counting a page view.
        visitor = await rt.engine.visit(b.vid, b.sid, state.path, state.page_type, False, now)
    state = (await apply_events(rt, rules, b.sid, b.vid, b.site, batch, visitor, now, last=True)).state
    await keep_for_training(rt, rules, state, now)  # a beacon is a page's last word
    if batch.events:
        # Delayed rules arm as usual: their timers deliver, or keep, the nudge later.
        await arm_delayed(rt, rules, state, batch.events, now)
        # A nudge earned now has no page to go to: it is neither shown nor counted
        # against the caps (a timer's `offline: next_page` is what keeps one).
        for decision in evaluate(rules, state, batch.events, now):
            log.debug("rule %s fired for sid=%s on a beacon: no page open, not shown", decision.rule.id, b.sid)
    return Response(status_code=204)


async def _forget(rt: Runtime, f: Forget) -> Response:
    """Erase the visitor and their sessions; close their sockets, here and on every other process
    (1000: no reconnection)."""
    erased = await rt.engine.forget(f.vid, f.sid)
    rt.let_go(erased)
    if erased:  # a page of theirs open on another process closes too
        await rt.engine.publish_forgotten(f.vid, erased)
    # Not even the ids: the log must not keep what was just erased.
    log.info("forgot a visitor on request: %d session(s) erased", len(erased))
    return Response(status_code=204)

"""The staff dashboard: its pages, its live feed and the JSON API behind them.

Staff only: kairos.staff guards every route here (pages, API, the feed socket)
and asks changes for CSRF proof. Pages are Jinja2 templates in
templates/dashboard/; the script that fills them is static/dashboard/dashboard.js.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from pathlib import Path
from typing import Any, Mapping

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from . import bodies, rules_history, stats
from .experiments.assign import NUDGED, PROGRAM, arm_of, held_from_all
from .feed import DASHBOARD, Watcher, row
from .nudge import claim_nudge_or_why, deliver, take_down, where_open
from .push import Connection
from .reload import not_text, parse, problems_json, put_in_force, read_body, rules_document
from .rules import Rule, RulesError, Ruleset
from .rules.model import HOLDOUT
from .rules.describe import summaries
from .rules.evaluate import explain
from .runtime import Runtime, now_ms

log = logging.getLogger("kairos.dashboard")

# The live page starts from this many of the most recent sessions.
SNAPSHOT_MAX = 5000
# The counts at the top of the live page are sent this often.
SUMMARY_EVERY_S = 5.0
# A message staff type for a chat invitation.
MAX_MESSAGE = 280
# The rule id nudges sent by hand are counted, capped and logged under.
STAFF_RULE = "staff"
# Why a nudge was not shown, in words for the person who asked for it.
REFUSALS = {
    "paused": "the rule is paused",
    "dismissed": "the visitor dismissed this nudge in this session",
    "capped": "this nudge has been shown as often as a session allows",
    "history_lost": "the store lost what this session was shown, so a once-per-session nudge is held back",
    "busy": "a nudge of equal or higher priority is on the visitor's screen",
    "cooldown": "the rule's cooldown for this visitor has not passed",
    "visitor_capped": "the rule's cap for this visitor is spent",
    "globally_capped": "the visitor has had as many nudges as the global cap allows",
    "rule_capped": "the rule's cap for all visitors is spent for now",
    "gone": "the session is over",
}


def _rt(request: Request | WebSocket) -> Runtime:
    return request.app.state.kairos


def _page(request: Request, template: str, **context: Any) -> Response:
    rt = _rt(request)
    return request.app.state.templates.TemplateResponse(
        request, f"dashboard/{template}",
        {"engine": rt.engine.name, "csrf": request.state.kairos_csrf, **context},
    )


# --- pages -----------------------------------------------------------------------


async def live_page(request: Request) -> Response:
    rt = _rt(request)
    return _page(request, "index.html", page="live", rules=summaries(rt.rules), demo=rt.settings.demo)


async def session_page(request: Request) -> Response:
    rt = _rt(request)
    nudges = [{"id": r.id, "show": r.then.show} for r in rt.rules.rules]
    return _page(request, "session.html", page="session", sid=request.path_params["sid"], nudges=nudges)


async def rules_page(request: Request) -> Response:
    return _page(request, "rules.html", page="rules", rules=summaries(_rt(request).rules))


# --- the live feed ------------------------------------------------------------------


async def feed_endpoint(ws: WebSocket) -> None:
    """Staff's live feed: a snapshot of the recent sessions, then their changes as they happen."""
    rt = _rt(ws)
    await ws.accept()
    try:
        day_ms = int(ws.query_params.get("day", "0"))
    except ValueError:
        day_ms = 0
    conn = Connection(ws, DASHBOARD, who="dashboard")
    watcher = Watcher(conn)
    await rt.feed.add(watcher)
    summary_task: asyncio.Task[None] | None = None
    try:
        now = now_ms()
        states, paused, summary = await asyncio.gather(
            rt.engine.sessions(now, limit=SNAPSHOT_MAX), rt.engine.paused(), _summary(rt, now, day_ms))
        watcher.ready(json.dumps({
            "t": "snapshot", "rows": [row(s, now, rt.rules.models) for s in states], "paused": paused,
            "rules": [r.id for r in rt.rules.rules], "version": rt.rules_version, "summary": summary,
            "session_ttl_s": rt.settings.session_ttl_s,
        }, separators=(",", ":")))
        summary_task = asyncio.create_task(_send_summaries(rt, conn, day_ms))
        while not conn.closing:
            msg = await ws.receive()  # the page sends nothing; this is how a close is heard
            if msg["type"] == "websocket.disconnect":
                break
    except WebSocketDisconnect:
        pass
    finally:
        rt.feed.remove(watcher)
        if summary_task is not None:
            summary_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await summary_task
        await conn.finish()


async def _send_summaries(rt: Runtime, conn: Connection, day_ms: int) -> None:
    while not conn.closing:
        await asyncio.sleep(SUMMARY_EVERY_S)
        summary = await _summary(rt, now_ms(), day_ms)
        conn.send(json.dumps({"t": "summary", "summary": summary}, separators=(",", ":")))


async def _summary(rt: Runtime, now: int, day_ms: int) -> dict[str, int]:
    """Nudges shown in the last hour and conversions since the dashboard's midnight."""
    day_ms = day_ms if now - 24 * 3600 * 1000 < day_ms <= now else now - 24 * 3600 * 1000
    buckets = await rt.engine.stats(min(day_ms, now - 3600 * 1000), now)
    return stats.summary(buckets, now, day_ms)


# --- sessions -------------------------------------------------------------------------


async def list_sessions(request: Request) -> Response:
    rt = _rt(request)
    states = await rt.engine.sessions(now_ms())
    for s in states:
        s.models = rt.rules.models
    return JSONResponse({"sessions": [s.to_json() for s in states]})


async def get_session(request: Request) -> Response:
    rt = _rt(request)
    sid = request.path_params["sid"]
    state = await rt.engine.session(sid)
    if state is None:
        return JSONResponse({"error": "no such session", "sid": sid}, status_code=404)
    state.models = rt.rules.models
    now = now_ms()
    pending, log_lines, paused, recorded = await asyncio.gather(
        rt.engine.pending_for(state.vid), rt.engine.log(sid), rt.engine.paused(), rt.engine.arms(state.vid))
    rules = [explain(r, state, now, r.id in paused) for r in rt.rules.rules]
    return JSONResponse({**state.to_json(now), "pending": pending, "log": log_lines, "rules": rules,
                         "experiments": visitor_arms(rt.rules, state.vid, rt.arm_salt, recorded),
                         "open": await where_open(rt, state) is not None})


def visitor_arms(rules: Ruleset, vid: str, salt: bytes, recorded: Mapping[str, str]) -> list[dict[str, Any]]:
    """The visitor's arm in each running experiment: the one recorded at their first exposure
    (`exposed`), else the one they would be drawn into at the moment (as kairos.nudge draws it).

    A visitor in the whole program's holdout is in no rule's experiment (`held_by_program`).
    """
    out: list[dict[str, Any]] = []
    held = False
    if rules.holdout:
        held = held_from_all(rules.holdout, vid, salt, recorded)
        out.append({"id": PROGRAM, "rule": "", "arm": HOLDOUT if held else NUDGED, "exposed": PROGRAM in recorded})
    for rule in rules.rules:
        x, exp = rule.experiment, rule.experiment_id
        if x is None or exp is None or not x.running:
            continue
        out.append({"id": exp, "rule": rule.id, "arm": arm_of(rule, vid, salt, recorded), "exposed": exp in recorded,
                    **({"held_by_program": True} if held else {})})
    return out


async def nudge_session(request: Request) -> Response:
    """Send a nudge by hand: a rule's nudge, or a chat invitation with staff's own message.

    It goes through the same caps as a rule's (the rule's, or for a chat the
    global cap) and is logged in the session's timeline as shown by staff.
    """
    started_s = time.perf_counter()  # the push latency of a staff nudge starts with the request
    rt = _rt(request)
    sid = request.path_params["sid"]
    body = await _json_body(request)
    if isinstance(body, Response):
        return body
    if not isinstance(body, dict):
        return _problem(400, "send a JSON object: {\"rule\": ID} or {\"chat\": MESSAGE}")
    rule = _hand_rule(rt, body)
    if isinstance(rule, str):
        return _problem(400, rule)
    state = await rt.engine.session(sid)
    if state is None:
        return _problem(404, "the session is over")
    where = await where_open(rt, state)
    if where is None:
        return _problem(409, "the visitor has no page open", why="offline")
    now = now_ms()
    frame, why = await claim_nudge_or_why(rt, rule, state, now, by="staff")
    if frame is None:
        return _problem(409, f"not sent: {REFUSALS.get(why, why)}", why=why)
    delivered = await deliver(rt, state, frame, where, rt.metrics.pushed("staff", started_s))
    log.info("staff sent %s to sid=%s", rule.id, sid)
    return JSONResponse({"ok": True, "rule": rule.id, "delivered": delivered})


async def hide_overlay(request: Request) -> Response:
    """Take the overlay on a session's screen down by hand (the session page's "Take down").

    The body names the overlay staff saw, {"oid": OID}, so a newer one that
    replaced it meanwhile stays. Recorded as hidden, why staff, and sent as a
    `hide` to the visitor's page.
    """
    rt = _rt(request)
    sid = request.path_params["sid"]
    body = await _json_body(request)
    if isinstance(body, Response):
        return body
    oid = body.get("oid") if isinstance(body, dict) else None
    if not isinstance(oid, str) or not oid:
        return _problem(400, "say which overlay to take down: {\"oid\": OID}")
    state = await rt.engine.session(sid)
    if state is None:
        return _problem(404, "the session is over")
    if state.onscreen != oid or not await take_down(rt, state, oid, "staff", now_ms()):
        return _problem(409, "it is no longer on the visitor's screen", why="gone")
    log.info("staff took %s down on sid=%s", oid, sid)
    return JSONResponse({"ok": True, "oid": oid})


def _hand_rule(rt: Runtime, body: dict[str, Any]) -> Rule | str:
    """The rule a hand-sent nudge is shown as, or what is wrong with the request."""
    if "rule" in body:
        rule = rt.rules.rule(str(body["rule"]))
        return rule if rule is not None else f"no rule {body['rule']!r} in the rules in force"
    message = body.get("chat")
    if not isinstance(message, str) or not message.strip():
        return "say which rule's nudge to send ({\"rule\": ID}) or the chat message ({\"chat\": MESSAGE})"
    if len(message) > MAX_MESSAGE:
        return f"a chat message is at most {MAX_MESSAGE} characters"
    agent = body.get("agent")
    params = {"message": message.strip(), **({"agent": agent.strip()[:60]} if isinstance(agent, str) and agent.strip() else {})}
    # A person asked for it: it replaces any rule's nudge on screen, and only the
    # global cap (and the visitor's dismissal) can stop it.
    return Rule.model_validate({
        "id": STAFF_RULE, "when": "page_view", "priority": 1000, "limit": {"per_session": None},
        "then": {"show": "chat", "template": "chat.html", "params": params},
    })


# --- rules ------------------------------------------------------------------------------


async def rules_state(request: Request) -> Response:
    """The rules in force, which are paused, and the document they came from (for the editor)."""
    rt = _rt(request)
    path = rt.settings.rules
    return JSONResponse({
        "version": rt.rules_version, "source": rt.rules.source, "rules": summaries(rt.rules),
        "paused": await rt.engine.paused(), "text": rules_document(rt),
        # Absolute: the editor tells staff where Apply writes, and they know no working directory.
        "file": str(Path(path).resolve()) if path is not None else None,
        "last_refusal": None if rt.last_refusal is None else
        {"at_ms": rt.last_refusal.at_ms, "source": rt.last_refusal.source, "message": rt.last_refusal.message},
    })


async def pause_rule(request: Request) -> Response:
    rt = _rt(request)
    rule = request.path_params["rule"]
    body = await _json_body(request)
    if isinstance(body, Response):
        return body
    paused = body.get("paused") if isinstance(body, dict) else None
    if not isinstance(paused, bool):
        return _problem(400, "send {\"paused\": true} or {\"paused\": false}")
    if rt.rules.rule(rule) is None:
        return _problem(404, f"no rule {rule!r} in the rules in force")
    await rt.engine.set_paused(rule, paused, now_ms())
    log.info("staff %s rule %s", "paused" if paused else "resumed", rule)
    all_paused = await rt.engine.paused()
    rt.feed.announce("paused", paused=all_paused)
    return JSONResponse({"ok": True, "rule": rule, "paused": paused, "all": all_paused})


async def check_rules(request: Request) -> Response:
    """Validate a rules document as `kairos check` does; nothing changes."""
    rt = _rt(request)
    text = await _body_text(request)
    if isinstance(text, Response):
        return text
    try:
        ruleset = await asyncio.to_thread(parse, rt, text, "editor")
    except RulesError as exc:
        return JSONResponse({"ok": False, "problems": problems_json(exc)})
    return JSONResponse({"ok": True, "rules": summaries(ruleset)})


async def apply_rules(request: Request) -> Response:
    """Put an edited rules document in force, or refuse it whole (422) and change nothing.

    With a rules file, the file is replaced (atomically) so the edit survives a
    restart and reaches every process watching the same file (kairos.reload.put_in_force).
    """
    text = await _body_text(request)
    if isinstance(text, Response):
        return text
    return await put_in_force(_rt(request), lambda _: text, "edited in the rules editor")


async def rules_history_list(request: Request) -> Response:
    """The latest changes staff put in force, newest first (kairos.rules_history)."""
    rt = _rt(request)
    return JSONResponse({"history": await asyncio.to_thread(rules_history.recent, rt.settings.state_dir)})


async def rule_stats(request: Request) -> Response:
    """Each rule's counters over a period (24h, 7d or 30d), in bins for a chart.

    `tz`: the viewer's offset from UTC in minutes (east positive), so bins start on their clock's round times.
    """
    rt = _rt(request)
    period = request.query_params.get("period", "24h")
    if period not in stats.PERIODS:
        return _problem(400, f"period is one of {', '.join(stats.PERIODS)}")
    try:
        offset_min = int(request.query_params.get("tz", "0"))
    except ValueError:
        offset_min = 0
    now = now_ms()
    span_ms = stats.PERIODS[period]
    buckets = await rt.engine.stats(now - span_ms, now)
    offset_ms = max(-14 * 60, min(14 * 60, offset_min)) * 60 * 1000  # the world's offsets run from -12 h to +14 h
    return JSONResponse({"period": period, **stats.bins(buckets, now, span_ms, offset_ms),
                         "rules": [r.id for r in rt.rules.rules], "paused": await rt.engine.paused(),
                         "attribution_s": rt.settings.attribution_s})


# --- helpers -----------------------------------------------------------------------------


def _problem(status: int, message: str, **more: Any) -> Response:
    return JSONResponse({"ok": False, "error": message, **more}, status_code=status)


async def _json_body(request: Request) -> Any:
    """The JSON a dashboard request sends, or the answer to one too big (413) or not JSON (400)."""
    try:
        return bodies.parse_json(await bodies.read(request, bodies.STAFF_JSON_BYTES))
    except bodies.TooLarge:
        return _problem(413, f"a dashboard request is at most {bodies.STAFF_JSON_BYTES} bytes")
    except ValueError as exc:
        return _problem(400, f"send a JSON object: {exc}")


async def _body_text(request: Request) -> str | Response:
    body = await read_body(request)
    if isinstance(body, Response):
        return body
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return JSONResponse({"ok": False, "problems": problems_json(not_text("editor", exc))}, status_code=422)


async def export_sessions(request: Request) -> Response:
    """Ended sessions' feature rows and outcomes as CSV (`kairos export-sessions`).

    Ended: quiet for a session TTL, so the row is the session's last. `?all=1`
    adds sessions that may still go on (and may still order).
    """
    from .intent.sessions import to_csv

    rt = _rt(request)
    now = now_ms()
    before = now + 1 if request.query_params.get("all") == "1" else now - rt.settings.session_ttl_s * 1000
    rows = await rt.engine.archived(before)
    return PlainTextResponse(to_csv(rows), media_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": 'attachment; filename="sessions.csv"'})


routes = [
    Route("/dashboard", live_page),
    Route("/dashboard/sessions/{sid}", session_page),
    Route("/dashboard/rules", rules_page),
    WebSocketRoute("/dashboard/feed", feed_endpoint),
    Route("/api/export/sessions.csv", export_sessions),
    Route("/api/sessions", list_sessions),
    Route("/api/sessions/{sid}", get_session),
    Route("/api/sessions/{sid}/nudge", nudge_session, methods=["POST"]),
    Route("/api/sessions/{sid}/hide", hide_overlay, methods=["POST"]),
    Route("/api/rules", rules_state),
    Route("/api/rules/check", check_rules, methods=["POST"]),
    Route("/api/rules/apply", apply_rules, methods=["POST"]),
    Route("/api/rules/history", rules_history_list),
    Route("/api/rules/{rule}/pause", pause_rule, methods=["POST"]),
    Route("/api/stats", rule_stats),
]

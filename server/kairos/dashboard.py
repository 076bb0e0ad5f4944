"""The staff dashboard page and the JSON it reads (staff only: kairos.staff guards both)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from .rules.describe import describe
from .runtime import Runtime, now_ms


def _rt(request: Request) -> Runtime:
    return request.app.state.kairos


async def dashboard_page(request: Request) -> Response:
    rt = _rt(request)
    rules = [{"id": r.id, "summary": describe(r, rt.rules.page_types)} for r in rt.rules.rules]
    return request.app.state.templates.TemplateResponse(
        request, "dashboard/index.html",
        {"engine": rt.engine.name, "rules": rules, "csrf": request.state.kairos_csrf},
    )


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
    pending = await rt.engine.pending_for(state.vid) if state.vid else []
    return JSONResponse({**state.to_json(), "pending": pending, "log": await rt.engine.log(sid)})


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
    Route("/api/export/sessions.csv", export_sessions),
    Route("/dashboard", dashboard_page),
    Route("/api/sessions", list_sessions),
    Route("/api/sessions/{sid}", get_session),
]

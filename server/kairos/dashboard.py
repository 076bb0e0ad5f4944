"""The staff dashboard page and the JSON it reads (staff only: kairos.staff guards both)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
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
    return JSONResponse({"sessions": [s.to_json() for s in states]})


async def get_session(request: Request) -> Response:
    rt = _rt(request)
    sid = request.path_params["sid"]
    state = await rt.engine.session(sid)
    if state is None:
        return JSONResponse({"error": "no such session", "sid": sid}, status_code=404)
    pending = await rt.engine.pending_for(state.vid) if state.vid else []
    return JSONResponse({**state.to_json(), "pending": pending, "log": await rt.engine.log(sid)})


routes = [
    Route("/dashboard", dashboard_page),
    Route("/api/sessions", list_sessions),
    Route("/api/sessions/{sid}", get_session),
]

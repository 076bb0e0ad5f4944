"""`GET /metrics`: who may scrape it, and on which address.

The main address has to be reachable from every visitor's browser (the
snippet, /ws, /b live there), so whatever it serves openly is public. There,
/metrics is staff-only like /api: the admin token as a bearer, or a dashboard
login (kairos.staff's guard, with its limit on wrong tokens). A Prometheus
that should not hold the admin token scrapes a second address instead
(`--metrics-port`, on `--metrics-host`, 127.0.0.1 unless told otherwise),
which answers /metrics to anyone who can reach it and nothing else.
Docs: docs/operations.md, "Who may scrape".
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

PATH = "/metrics"


async def metrics(request: Request) -> Response:
    """The Prometheus text of this process's counters, gauges and histograms."""
    rt = request.app.state.kairos
    # Read from the engine (the queue is shared with other processes on Redis),
    # so set here, at scrape time, rather than kept up to date on every arm.
    rt.metrics.timers_pending.set(await rt.engine.pending_timers())
    return Response(rt.metrics.render(), media_type=CONTENT_TYPE_LATEST)


class MetricsAddress:
    """Pure-ASGI middleware: a request that came in on the metrics port gets /metrics, without a token, or 404.

    The listening socket is known by the local port of the connection
    (`scope["server"]`); `kairos serve` refuses a metrics port equal to the
    main one, so the port alone tells the two apart.
    """

    def __init__(self, app: ASGIApp, port: int) -> None:
        self.app = app
        self.port = port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        server = scope.get("server") or (None, None)
        if scope["type"] not in ("http", "websocket") or server[1] != self.port:
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 4004, "reason": "metrics only here"})
            return
        response: Response
        if scope["path"] == PATH and scope["method"] in ("GET", "HEAD"):
            response = await metrics(Request(scope, receive))
        else:
            response = PlainTextResponse(f"this address serves {PATH} only\n", status_code=404)
        await response(scope, receive, send)

"""The ASGI application: routes and start-up, nothing else."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from . import bodies, dashboard, dashboard_experiments, gcpolicy, login, reload, scrape, staff
from .assets import NoSniff, Precompressed
from .beacon import beacon_endpoint
from .runtime import Runtime
from .settings import Settings
from .ws import visitor_endpoint

STATIC = Path(__file__).parent / "static"


def _script(request: Request, asset: Precompressed) -> Response:
    response = asset.response(request.headers)
    if response is None:
        return PlainTextResponse(f"the snippet is not built: run `make build` ({asset.path} is missing)\n",
                                 status_code=503, headers={"Vary": "Accept-Encoding", "X-Content-Type-Options": "nosniff"})
    return response


def _snippet_file(path: Path) -> Precompressed:
    # A stable URL stores embed for good: let browsers revalidate every 5 minutes
    # so a new snippet reaches visitors the same day.
    return Precompressed(path, "text/javascript; charset=utf-8", "public, max-age=300")


async def snippet(request: Request) -> Response:
    return _script(request, request.app.state.snippet)


async def snippet_overlay(request: Request) -> Response:
    return _script(request, request.app.state.snippet_overlay)


async def health(request: Request) -> Response:
    rt = request.app.state.kairos
    ok = await rt.engine.ping()
    # `node`: which process answered (one of `--workers`, or of several on one Redis); random, per process.
    return JSONResponse({"ok": ok, "engine": rt.engine.name, "rules": len(rt.rules.rules), "node": rt.node_id},
                        status_code=200 if ok else 503)


async def index(request: Request) -> Response:
    return RedirectResponse("/demo/" if request.app.state.kairos.settings.demo else "/dashboard")


def create_app(settings: Settings, runtime: Runtime | None = None) -> Starlette:
    """Build the app; `runtime` lets tests bring their own engine."""
    rt = runtime or Runtime(settings)
    templates = Jinja2Templates(directory=str(settings.templates_dir))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await rt.start()
        # Watch the rules file; each new valid version is put in force (kairos.reload).
        watch: asyncio.Task[None] | None = None
        if rt.settings.rules is not None and rt.settings.rules_poll_s > 0:
            rt.rules_watcher = reload.RulesWatcher(rt, rt.settings.rules, rt.settings.rules_poll_s, rt.rules_file_seen)
            watch = asyncio.create_task(rt.rules_watcher.run(), name="kairos-rules-watcher")
        # What start-up built, and then what lives on (open sessions), is kept out of the
        # collector's full passes, which otherwise pause every visitor at once.
        collector = gcpolicy.Collector(lambda: len(rt.hub))
        collector.start()
        collecting = asyncio.create_task(collector.run(), name="kairos-gc")
        try:
            yield
        finally:
            for task in (watch, collecting):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            collector.stop()
            await rt.close()

    routes = [
        Route("/", index),
        Route("/k.js", snippet),
        Route("/k-overlay.js", snippet_overlay),
        Route("/healthz", health),
        Route(scrape.PATH, scrape.metrics),
        WebSocketRoute("/ws", visitor_endpoint),
        Route("/b", beacon_endpoint, methods=["POST"]),
        *login.routes,
        *dashboard.routes,
        *dashboard_experiments.routes,
        *reload.admin_routes,
        Mount("/static/dashboard", NoSniff(StaticFiles(directory=STATIC / "dashboard")), name="dashboard-static"),
    ]
    if settings.demo:
        from .demo import demo_routes

        routes += demo_routes(templates)
    # Settings without an admin token lock the staff paths: nobody can log in.
    guard = staff.Staff(settings.admin_token, rt.engine)
    middleware = [
        # Before the guard: an answer given before a body was read closes the connection, the guard's too.
        Middleware(bodies.CloseUnread),
        Middleware(staff.StaffGuard, staff=guard),
    ]
    if settings.metrics_port:
        middleware.insert(0, Middleware(scrape.MetricsAddress, port=settings.metrics_port))
    app = Starlette(routes=routes, lifespan=lifespan, middleware=middleware)
    app.state.kairos = rt
    app.state.snippet = _snippet_file(rt.settings.snippet_path)
    # k.js fetches it on the first overlay, from beside itself (client-js/src/lazy.js)
    app.state.snippet_overlay = _snippet_file(rt.settings.snippet_path.with_name("k-overlay.js"))
    app.state.staff = guard
    app.state.templates = templates
    return app

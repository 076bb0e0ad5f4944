"""Running the app under uvicorn: one process, or `--workers N` sharing the listening socket.

Each worker is a whole Kairos — its own runtime, timers, dashboard feed and
Redis subscriptions — built in its process from the settings (`worker_app`), so
workers share nothing but Redis and the socket, as separate `kairos serve`
processes on one Redis do. uvicorn's supervisor (uvicorn.supervisors.Multiprocess)
starts them, checks they answer, restarts one that dies, and stops them all on
SIGINT/SIGTERM: one shutdown path, each worker's graceful one.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import uvicorn
from uvicorn.supervisors import multiprocess

from . import push
from .settings import Settings

# This process's runtime, once its app is built: the server tells it when a shutdown begins.
_runtime: Any = None


def build_app(settings: Settings) -> Any:
    """The ASGI app `kairos serve` runs: Kairos, its websockets able to reach their sockets
    (kairos.push: to bound them and release a client too slow to read)."""
    global _runtime
    from .app import create_app

    app = create_app(settings)
    _runtime = app.state.kairos
    metrics = _runtime.metrics
    return push.with_sockets(app, settings.send_timeout_s, settings.close_grace_s,
                             lambda why: metrics.child(metrics.released, why).inc())


def configure_logging(settings: Settings) -> None:
    """Kairos's own log lines, as `kairos serve` writes them (uvicorn configures only its own loggers)."""
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def worker_app(settings: Settings) -> Callable[..., Any]:
    """A worker's app, built in the worker (uvicorn's factory: `Config(..., factory=True)`)."""
    configure_logging(settings)  # a spawned worker starts with none
    return build_app(settings)


class Server(uvicorn.Server):
    """uvicorn's server, telling the runtime a shutdown has begun before it closes the sockets."""

    async def shutdown(self, sockets: Any = None) -> None:
        # Sockets closed with 1012 by a restart belong to pages that come straight back
        # (to this process restarted, or another one): counting 10,000 of them out
        # in Redis one by one outlived the graceful-shutdown timeout, and a timer
        # due meanwhile must wait for the page rather than follow `offline`.
        if _runtime is not None:
            _runtime.stopping = True
        await super().shutdown(sockets)


class Worker(multiprocess.Process):
    """uvicorn's worker process, running our Server (uvicorn's builds its own)."""

    @property
    def server(self) -> uvicorn.Server:
        if self._server is None:
            self._server = Server(config=self.config)
        return self._server


def run_workers(config: uvicorn.Config) -> None:
    """Run `config.workers` workers on one socket bound here, until SIGINT or SIGTERM."""
    # The supervisor makes its workers by this module-level name (at start and at each
    # restart of one that died): ours, so each runs our Server.
    multiprocess.Process = Worker  # type: ignore[misc]
    sock = config.bind_socket()
    try:
        multiprocess.Multiprocess(config, sockets=[sock]).run()
    finally:
        sock.close()

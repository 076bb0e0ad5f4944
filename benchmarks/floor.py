"""The floor: a bare server on Kairos's stack, doing the least a personalization server must (issue 16).

    python benchmarks/floor.py --port 8081 --redis-url redis://127.0.0.1:6379/10
    python benchmarks/floor.py --port 8081 --redis-url redis+cluster://127.0.0.1:7000,127.0.0.1:7001

What it costs to serve the benchmark's visitors is the cost of the stack
itself: Starlette on uvicorn with the settings `kairos serve` uses (uvloop,
httptools, websockets sans-I/O, no per-message deflate, no access log, logging
at warning), the same MessagePack frames (docs/protocol.md), one EVALSHA per
frame that counts a few things in the session's hash and renews its TTL, and a
`show` when a batch holds the benchmark rule's trigger (a click on the element
marked "bench", benchmarks/bench-rules.yaml). It validates nothing, renders
nothing, logs nothing and keeps no history: what Kairos spends beyond it is
Kairos's own, which `benchmarks/compare.py` measures by running both under the
same load.

It is meant to be honest, not a strawman: a hello is one round trip (a new
session's hash), a batch one round trip, feedback one round trip, each with the
same Redis connection pool Kairos uses (8 connections, blocking), and what was
built at start-up is frozen out of the collector's full passes as Kairos does.

On a Redis Cluster (a redis+cluster:// URL, as `kairos serve` takes) it does the
same work: the same EVALSHA on the same one key, which names its session in a
hash tag (floor:{sid}), so the script runs on the master serving that slot.
redis-py's cluster client routes it (RedisCluster, with Kairos's pool size per
node); as its pools do not wait for a free connection but fail, a semaphore per
node makes them wait, as the blocking pool does on one Redis, and the script is
loaded on every master at start-up.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import msgpack
import redis.asyncio as aioredis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

# A session idles out after 30 minutes, as Kairos's do (docs/protocol.md).
SESSION_TTL_S = 1800
# Kairos's defaults (kairos.settings: redis_pool_size 8; kairos.wire.HARD_MAX_FRAME_BYTES).
POOL_SIZE = 8
MAX_FRAME_BYTES = 64 * 1024

# ARGV: TTL, then field/increment pairs. Returns the first field's new value.
COUNT = """
local key = KEYS[1]
local first = redis.call('HINCRBY', key, ARGV[2], ARGV[3])
for i = 4, #ARGV, 2 do
  redis.call('HINCRBY', key, ARGV[i], ARGV[i + 1])
end
redis.call('EXPIRE', key, ARGV[1])
return first
"""

# What the snippet is told to measure: Kairos's defaults (docs/protocol.md, the `track` map).
TRACK = {"batch_ms": 1000, "dwell_ms": 5000, "scroll_step": 10, "idle_ms": 30000, "exit": True,
         "exit_min_ms": 3000, "exit_gap_ms": 10000, "exit_scroll": True, "exit_back": False, "exit_hidden": True,
         "clicks": True, "click_text": True, "rage_n": 4, "rage_ms": 1000, "hes_ms": 15000, "copy": False, "spa": True}

# The benchmark rule's overlay as Kairos sends it: the same stylesheets (read once,
# not rendered) and HTML of the same length, so both servers put the same bytes on the wire.
OVERLAYS = Path(__file__).resolve().parent.parent / "templates" / "overlays"
SHOW_HTML = ('<dialog class="k-card k-center" aria-labelledby="k-title"><button class="k-x" data-k-close '
             'aria-label="Close">&times;</button><div class="k-offer"><h2 id="k-title">Benchmark</h2>'
             '<p class="k-body">One push per trigger.</p><p class="k-code"><span>Your code</span> '
             '<strong>BENCH</strong></p><p class="k-actions"><button class="k-cta" data-k-click="close">'
             'Use the code</button> <button class="k-later" data-k-close>Not now</button></p></div></dialog>')


def session_key(sid: str) -> str:
    return f"floor:{{{sid}}}"


def is_trigger(event: object) -> bool:
    return isinstance(event, dict) and event.get("e") == "click" and event.get("k") == "bench"


def is_cluster_url(url: str) -> bool:
    return url.startswith("redis+cluster://")


def connect(redis_url: str) -> tuple[Any, Callable[..., Awaitable[Any]]]:
    """The client, and the COUNT script to call as `count(keys=[key], args=[...])`: one EVALSHA."""
    if not is_cluster_url(redis_url):
        pool = aioredis.BlockingConnectionPool.from_url(redis_url, max_connections=POOL_SIZE, timeout=5)
        r = aioredis.Redis(connection_pool=pool)
        return r, r.register_script(COUNT)
    from redis.asyncio.cluster import RedisCluster

    from kairos.engine.cluster import startup_nodes

    nodes, auth = startup_nodes(redis_url)
    rc = RedisCluster(startup_nodes=nodes, decode_responses=False, max_connections=POOL_SIZE, **auth)
    script = rc.register_script(COUNT)
    # RedisCluster raises MaxConnectionsError when a node's pool is used up; one
    # Redis's blocking pool waits instead. So does this, per node.
    free: dict[str, asyncio.Semaphore] = {}

    async def count(keys: list[str], args: list[Any]) -> Any:
        node = rc.get_node_from_key(keys[0]).name
        slots = free.get(node) or free.setdefault(node, asyncio.Semaphore(POOL_SIZE))
        async with slots:
            return await script(keys=keys, args=args)

    return rc, count


def create_app(redis_url: str) -> Starlette:
    """The floor's app: /ws for visitors, /healthz for the benchmark to wait on."""
    r, count = connect(redis_url)
    css = (OVERLAYS / "_base.css").read_text(encoding="utf-8") + (OVERLAYS / "offer.css").read_text(encoding="utf-8")

    async def visitor(ws: WebSocket) -> None:
        await ws.accept()
        try:
            hello = msgpack.unpackb(await ws.receive_bytes())
            if not isinstance(hello, dict) or hello.get("t") != "hello":
                await ws.close(4000)
                return
            sid = hello.get("sid") or secrets.token_urlsafe(12)
            key = session_key(sid)
            await count(keys=[key], args=[SESSION_TTL_S, "page_views", 1, "visits", 1])
            await ws.send_bytes(msgpack.packb({"v": 1, "t": "welcome", "sid": sid, "track": TRACK,
                                               "max_frame": MAX_FRAME_BYTES, "max_events": 50}))
            shows = 0
            while True:
                frame = msgpack.unpackb(await ws.receive_bytes())
                kind = frame.get("t")
                if kind == "events":
                    events = frame.get("ev") or []
                    trigger = any(is_trigger(e) for e in events)
                    clicks = sum(1 for e in events if isinstance(e, dict) and e.get("e") == "click")
                    await count(keys=[key], args=[SESSION_TTL_S, "batches", 1, "events", len(events),
                                                  "clicks", clicks, "shows", int(trigger)])
                    if trigger:
                        shows += 1
                        await ws.send_bytes(msgpack.packb({
                            "v": 1, "t": "show", "oid": f"{sid}.{shows}", "kind": "offer", "html": SHOW_HTML,
                            "css": css, "place": "center", "ttl_ms": 0, "rule": "bench-offer",
                            "scope": "page"}))
                elif kind == "feedback":
                    await count(keys=[key], args=[SESSION_TTL_S, f"fb:{frame.get('act')}", 1])
        except WebSocketDisconnect:
            pass

    async def health(request: Request) -> Response:
        return JSONResponse({"ok": bool(await r.ping())})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await r.ping()
        if is_cluster_url(redis_url):
            # On every master now: loaded at a first NOSCRIPT instead, SCRIPT LOAD would want a
            # connection of every master's pool at once, under the load (MaxConnectionsError).
            await r.script_load(COUNT)
        # As kairos.app does: what start-up built stays out of the full collections.
        gc.freeze()
        yield
        await r.aclose()

    return Starlette(routes=[Route("/healthz", health), WebSocketRoute("/ws", visitor)], lifespan=lifespan)


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8081)
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/10")
    p.add_argument("--log-level", default="warning")
    args = p.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper())
    # The settings `kairos serve` runs uvicorn with (kairos.cli._serve).
    uvicorn.run(create_app(args.redis_url), host=args.host, port=args.port, loop="uvloop", http="httptools",
                ws="websockets-sansio", ws_per_message_deflate=False, ws_max_size=MAX_FRAME_BYTES,
                access_log=False, log_level=args.log_level, timeout_graceful_shutdown=5)


if __name__ == "__main__":
    main()

"""`kairos serve --workers N`: processes sharing one port, each a whole Kairos, on one Redis."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
import redis

from conftest import ROOT, free_port
from wsclient import Visitor

RULES = """
version: 1
page_types: {product: /demo/products/*, cart: /demo/cart}
rules:
  - id: later
    when: add_to_cart
    after: 1s
    then: {show: bar, template: bar.html, params: {message: Still deciding}}
"""


def both_up(server, workers: int = 2) -> None:
    """Wait until each worker has answered /healthz (each says which it is)."""
    seen: set[str] = set()
    deadline = time.monotonic() + 20
    while len(seen) < workers and time.monotonic() < deadline:
        seen.add(httpx.get(f"{server.base}/healthz", timeout=5, headers={"Connection": "close"}).json()["node"])
    assert len(seen) == workers, f"{len(seen)} of {workers} workers answered"


def refused(*flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kairos", "serve", "--port", str(free_port()), *flags],
                          cwd=ROOT, capture_output=True, text=True, timeout=30)


def test_more_than_one_worker_needs_the_redis_engine():
    out = refused("--engine", "memory", "--workers", "2")
    assert out.returncode == 2
    assert "--workers 2 needs --engine redis" in out.stderr


def test_workers_and_a_metrics_port_are_refused_together(redis_url):
    out = refused("--engine", "redis", "--redis-url", redis_url, "--workers", "2", "--metrics-port", str(free_port()))
    assert out.returncode == 2 and "--metrics-port serves one process's metrics" in out.stderr


@pytest.mark.parametrize("value, said", [("0", "expected 1 to 256"), ("many", "expected a number of processes or auto")])
def test_a_worker_count_that_is_not_one_is_refused(value, said):
    out = refused("--workers", value)
    assert out.returncode == 2 and said in out.stderr


async def test_two_workers_share_the_sessions_and_reach_each_others_pages(serve, tmp_path: Path, redis_url):
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    server = serve("redis", rules=rules, extra=["--workers", "2"])
    both_up(server)
    # Arrivals at once, as a store's come: the kernel hands each to a worker that is free.
    everyone = await asyncio.gather(*(Visitor.arrive(server.ws_url, path="/demo/cart") for _ in range(200)))
    nodes = Counter(server.session(v.sid)["node"] for v in everyone)
    print(f"200 sessions over the workers: {sorted(nodes.values())}")
    assert len(nodes) == 2, f"200 sessions over one worker only: {nodes}"
    visitors = everyone[:40]
    # A nudge staff send reaches the page whichever worker takes the request.
    async with httpx.AsyncClient(base_url=server.base, headers=server.auth, timeout=5) as c:
        for v in visitors[:10]:
            r = await c.post(f"/api/sessions/{v.sid}/nudge", json={"chat": "Need a hand?"})
            assert r.status_code == 200 and r.json()["delivered"], r.text
    for v in visitors[:10]:
        assert (await v.expect("show"))["kind"] == "chat"
    # 30 timers due within the same second, armed on both workers: each fires once.
    for v in visitors[10:]:
        await v.events({"e": "add_to_cart", "sku": "linen", "qty": 1, "price": 49.0})
    got = await asyncio.gather(*(v.expect("show", timeout=10) for v in visitors[10:]))
    assert all(f["rule"] == "later" for f in got)
    await asyncio.sleep(1.5)
    for v in visitors[10:]:
        with pytest.raises(asyncio.TimeoutError):
            await v.recv(0.05)  # no second show of the same timer
    fired = [server.session(v.sid)["fired"] for v in visitors[10:]]
    assert all(f == {"later": 1} for f in fired), fired
    for v in everyone:
        await v.leave()


def test_a_worker_killed_is_replaced_and_serving_goes_on(serve, tmp_path: Path):
    import psutil

    server = serve("redis", extra=["--workers", "2"])
    parent = psutil.Process(server.proc.pid)
    workers = [p for p in parent.children() if p.cmdline() and "spawn_main" in " ".join(p.cmdline())]
    assert len(workers) == 2, [p.cmdline() for p in parent.children()]
    workers[0].kill()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        alive = [p for p in parent.children() if p.is_running() and p.status() != psutil.STATUS_ZOMBIE
                 and p.pid != workers[0].pid and "spawn_main" in " ".join(p.cmdline())]
        if len(alive) == 2:
            break
        time.sleep(0.2)
    assert len(alive) == 2, "the supervisor starts another worker"
    for _ in range(10):
        assert httpx.get(f"{server.base}/healthz", timeout=5).status_code == 200

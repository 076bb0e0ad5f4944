"""benchmarks/floor.py, the bare server `make bench` measures Kairos against: it speaks the same frames."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import httpx
import pytest
import redis

from conftest import ROOT, free_port
from wsclient import Visitor


@pytest.fixture
def floor(clean_redis: str):
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(ROOT / "benchmarks" / "floor.py"), "--port", str(port),
                             "--redis-url", clean_redis], cwd=ROOT)
    deadline = time.monotonic() + 20
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail("benchmarks/floor.py did not start")
        time.sleep(0.1)
    try:
        yield f"ws://127.0.0.1:{port}/ws"
    finally:
        proc.terminate()
        proc.wait(10)


async def test_the_floor_welcomes_a_visitor_and_answers_the_bench_click_with_a_show_and_nothing_else(floor, clean_redis):
    v = await Visitor.arrive(floor)
    await v.events({"e": "dwell", "ms": 1000}, {"e": "click", "tag": "button", "k": "other"})
    with pytest.raises(asyncio.TimeoutError):
        await v.recv(timeout=0.5)
    await v.events({"e": "scroll", "pct": 40}, {"e": "click", "tag": "button", "k": "bench"})
    show = await v.expect("show")
    assert show["rule"] == "bench-offer" and show["html"] and show["css"]
    await v.send({"v": 1, "t": "feedback", "oid": show["oid"], "act": "clicked", "ts": 0})
    await v.leave()

    r = redis.Redis.from_url(clean_redis, decode_responses=True)
    deadline = time.monotonic() + 5
    while r.hget(f"floor:{{{v.sid}}}", "fb:clicked") != "1" and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    session = r.hgetall(f"floor:{{{v.sid}}}")
    assert session == {"page_views": "1", "visits": "1", "batches": "2", "events": "4", "clicks": "2", "shows": "1",
                       "fb:clicked": "1"}
    assert 0 < r.ttl(f"floor:{{{v.sid}}}") <= 1800

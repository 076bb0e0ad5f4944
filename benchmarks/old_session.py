"""A batch's cost for a fresh session and for one that has seen 3,000 shows (issue 15, finding 4).

    python benchmarks/old_session.py [--redis-url redis://127.0.0.1:6379/15] [--batches 2000]

Times RedisEngine.apply — the Lua call, the state it returns and its parse into
a SessionState — one batch at a time, for three sessions: a fresh one, one
that went through 3,000 shows (claim and feedback, as the server records
them), and one that holds 3,000 shows' fields the way the engines kept them
before issue 15 (every overlay's four fields forever), for comparison. Prints the
median and p90 per batch and the old-to-fresh ratio. It writes only its own
sessions' keys, under ids of its own, and erases them after (the
rules' shown counters it adds to the current stats bucket expire with it).
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import time

import msgpack

from kairos.caps import Caps
from kairos.engine import keys
from kairos.engine.redis import RedisEngine
from kairos.session import hello_ops
from kairos.wire import Hello, Page

SHOWS = 3000
BATCH = [("incr", "n:click", "1"), ("incr", "clicks", "1"), ("max", "scroll", "50"), ("incr", "dwell_ms", "1000")]


def now_ms() -> int:
    return int(time.time() * 1000)


async def open_session(engine: RedisEngine, sid: str, vid: str) -> None:
    page = Page(url="https://shop.example/demo/products/linen-shirt", path="/demo/products/linen-shirt",
                title="Linen shirt", prod={"name": "Linen shirt", "price": 59.9})
    hello = Hello(site="demo", vid=vid, sid=sid, page=page, consent=True, dnt=False, gpc=False, tz=0, lang="en")
    await engine.apply(sid, hello_ops(hello, "product", now_ms()), [], now_ms())


async def time_batches(engine: RedisEngine, sid: str, n: int) -> list[float]:
    out = []
    for _ in range(n):
        started = time.perf_counter()
        await engine.apply(sid, BATCH, [], now_ms())
        out.append((time.perf_counter() - started) * 1000)
    return out


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379/15")
    ap.add_argument("--batches", type=int, default=2000)
    args = ap.parse_args()
    engine = RedisEngine(args.redis_url)
    await engine.start()
    tag = secrets.token_hex(4)
    vid = f"v_bench{tag}"
    fresh, old, unbounded = f"s_fresh{tag}", f"s_old{tag}", f"s_unbounded{tag}"
    try:
        for sid in (fresh, old, unbounded):
            await open_session(engine, sid, vid)
        for i in range(SHOWS):
            rule = f"rule{i % 3}"
            await engine.claim_show(old, vid, rule, f"{rule}.{i}", Caps(0, 1), "{}", now_ms())
            await engine.record_feedback(old, f"{rule}.{i}", "expired", "{}", now_ms())
        fields = {}
        for i in range(SHOWS):
            oid = f"rule{i % 3}.{i}"
            fields.update({f"o:{oid}": "expired", f"r:{oid}": f"rule{i % 3}", f"p:{oid}": "1", f"w:{oid}": "x" * 40})
        h = await engine._read(unbounded)
        await engine.r.set(keys.session(unbounded), msgpack.packb({**h, **fields}), ex=engine.session_ttl_s)
        sizes = {sid: len(await engine._read(sid)) for sid in (fresh, old, unbounded)}
        await time_batches(engine, fresh, 200)  # warm the connection and the script cache
        times = {}
        for _ in range(3):  # interleaved rounds, so a neighbour's load falls on all three alike
            for sid in (fresh, old, unbounded):
                times.setdefault(sid, []).extend(await time_batches(engine, sid, args.batches // 3))
        med = {sid: statistics.median(t) for sid, t in times.items()}
        for label, sid in (("fresh session", fresh), (f"after {SHOWS:,} shows", old),
                           (f"{SHOWS:,} shows kept whole (before)", unbounded)):
            p90 = statistics.quantiles(times[sid], n=10)[-1]
            print(f"{label:<34} {sizes[sid]:>6} fields  median {med[sid]:.3f} ms  p90 {p90:.3f} ms per batch")
        print(f"after {SHOWS:,} shows / fresh: {med[old] / med[fresh]:.2f}x   "
              f"kept whole / fresh: {med[unbounded] / med[fresh]:.2f}x")
    finally:
        async for key in engine.r.scan_iter(match=f"*{tag}*"):  # its sessions, their logs, the visitor's shows
            await engine.r.delete(key)
        await engine.close()


if __name__ == "__main__":
    asyncio.run(main())

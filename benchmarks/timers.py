"""Timer lateness: how late delayed nudges arrive, with a queue of pending timers behind them.

    python benchmarks/timers.py --engine redis

Starts a real `kairos serve` with benchmarks/bench-timers.yaml, whose rule
`bench-timer` answers a click with an offer `after: 2s`. First it puts
`--background` timers in the queue that come due only an hour later (a store's
backlog of delayed nudges), then opens `--sessions` visitors over real
websockets. Each visitor clicks, which arms a timer; waits for the `show`;
answers `clicked` (one overlay at a time), pauses at random and clicks again,
so arms spread over time and many timers come due every second.

Lateness = (the show frame arrives) - (the arming click was sent + the rule's
delay): end to end, websocket round trip included. Every timer armed during the
measured window counts; the run waits for their pushes after the window closes,
so the slow ones are not cut off. The server's own figure (due -> the timer
loop fires it, from the `timer` entries of the session logs) is printed beside
it, so the two can be told apart.

Background timers: with `--engine redis` they are written to the queue
directly (RedisEngine.arm_timers) and counted with pending_timers(). The memory
engine's queue lives inside the server process, so there visitors arm them
instead (`--inject visitors`: 10,000 short visits, each clicking the rule
`bench-background`, `after: 1h`); its queue size cannot be read from outside.
The background sessions need not exist: when their timers come due, long after
the run, they are dropped as `session_gone`.

The Redis database (default redis://127.0.0.1:6379/14, as load.py uses) is
flushed at the start; a database another client is connected to (a server or
benchmark running on it) or that holds keys not Kairos's is refused. The timer
queue is deleted at the end. Client and server share this machine: compare
runs on one machine, not across machines; `other_cpu_share` (Redis and whatever
else ran meanwhile) and `cpu_steal_share` (a virtual machine's host) show a
disturbed run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import msgpack
import psutil
import yaml
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect

from common import free_port, hello, percentile, report

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RULES = HERE / "bench-timers.yaml"
RULE_ID = "bench-timer"
BACKGROUND_RULE_ID = "bench-background"
BACKGROUND_DUE_S = 3600.0  # background timers come due between 1 h and 2 h from now
# The servers' admin token, for reading session logs from /api (staff only).
ADMIN_TOKEN = secrets.token_hex(16)


def rule_delay_s(path: Path, rule_id: str) -> float:
    from kairos.rules.model import parse_duration

    doc = yaml.safe_load(path.read_text())
    for rule in doc["rules"]:
        if rule["id"] == rule_id:
            return parse_duration(rule["after"])
    raise SystemExit(f"{path}: no rule {rule_id!r}")


def timer_outcomes(base: str) -> dict[str, int]:
    text = httpx.get(f"{base}/metrics", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=10).text
    samples = (s for f in text_string_to_metric_families(text) for s in f.samples)
    # Every outcome is listed from the start: keep those that happened.
    return {s.labels["outcome"]: int(s.value) for s in samples if s.name == "kairos_timers_total" and s.value}


def click(seq: int, target: str) -> bytes:
    ts = int(time.time() * 1000)
    return msgpack.packb({"v": 1, "t": "events", "seq": seq, "ev": [{"e": "click", "ts": ts, "tag": "button", "k": target}]})


# --- Redis: the database, the queue ----------------------------------------------------


async def redis_prepare(url: str) -> None:
    """Flush the benchmark's database, unless another client uses it or it holds keys not Kairos's."""
    import redis.asyncio as aioredis

    r = aioredis.from_url(url, decode_responses=True)
    try:
        # Another server or benchmark on this database would lose its sessions to the
        # flush, and its timer loop would claim this run's timers.
        db = r.connection_pool.connection_kwargs.get("db", 0)
        try:
            me, clients = await r.client_id(), await r.client_list()
        except aioredis.ResponseError:  # CLIENT may be forbidden (ACLs): no check then
            me, clients = None, []
        others = [c for c in clients if str(c.get("db")) == str(db) and str(c.get("id")) != str(me)]
        if others:
            raise SystemExit(f"{url}: {len(others)} other client(s) use this database (e.g. {others[0].get('addr')}, "
                             f"last command {others[0].get('cmd')}): another server or benchmark runs on it. "
                             "Wait for it, or pass another --redis-url.")
        async for key in r.scan_iter(count=1000):
            if not key.startswith("kairos:"):
                raise SystemExit(f"{url} holds {key!r}, not a Kairos key: refusing to flush it; pass another --redis-url")
        await r.flushdb()
    finally:
        await r.aclose()


async def redis_queue(url: str, action: str, timers: list | None = None) -> int:
    """'arm' the given timers, 'count' the pending ones, or 'drop' the queue; returns the pending count."""
    from kairos.engine import create_engine, keys
    from kairos.engine.cluster import is_cluster_url

    engine = create_engine("redis", redis_url=url, session_ttl_s=1800)
    await engine.start()
    try:
        if action == "arm":
            for i in range(0, len(timers or []), 1000):
                await engine.arm_timers(timers[i:i + 1000])
        elif action == "drop" and not is_cluster_url(url):  # (a cluster of the run's own goes with it)
            await engine.r.delete(keys.TIMERS_DUE, keys.TIMERS_DATA)
        return await engine.pending_timers()
    finally:
        await engine.close()


def background_timers(n: int) -> list:
    from kairos.rules.delayed import Timer

    now = int(time.time() * 1000)
    span = BACKGROUND_DUE_S * 1000
    # Sessions that need not exist; due times spread over the hour after the next.
    return [Timer(f"s_bgtimer{i:08d}", RULE_ID, now + int(span + span * i / max(1, n)), now, {"purchase": 0})
            for i in range(n)]


async def inject_by_visitors(ws_url: str, n: int, concurrency: int = 50) -> int:
    """Arm `n` one-hour timers the way a browser would: a short visit with one click each."""
    done = [0]
    counter = iter(range(n))

    async def worker() -> None:
        for i in counter:
            try:
                async with connect(ws_url, compression=None, open_timeout=30, ping_interval=None) as ws:
                    await ws.send(hello(f"v_tbg{i:08d}"))
                    assert msgpack.unpackb(await ws.recv())["t"] == "welcome"
                    await ws.send(click(1, "bench-background"))
                    # Frames are handled in order: the refusal of this feedback means the click was applied.
                    await ws.send(msgpack.packb({"v": 1, "t": "feedback", "oid": "bench-ack", "act": "shown", "ts": 0}))
                    while msgpack.unpackb(await ws.recv()).get("code") != "unknown_overlay":
                        pass
                    done[0] += 1
            except Exception as exc:
                print(f"background visitor {i}: {type(exc).__name__}: {exc}", file=sys.stderr)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done[0]


def node_cpu_s(cluster) -> dict[tuple[str, int], float]:
    """Each cluster node's CPU seconds so far (used_cpu_user + used_cpu_sys), by (master/replica, port)."""
    if cluster is None:
        return {}
    masters = {port for _, port in cluster.masters()}
    return {("master" if port in masters else "replica", port): cpu_s for port, cpu_s in cluster.node_cpu_s().items()}


# --- visitors ------------------------------------------------------------------------------


class Stats:
    def __init__(self) -> None:
        self.lateness_ms: list[float] = []
        self.armed = 0  # arms sent during the measured window
        self.missed = 0  # of those, no show within the timeout
        self.errors: dict[str, int] = {}
        self.disconnects = 0
        self.measuring = False
        self.sids: list[str] = []


async def visitor(
    n: int, ws_url: str, args: argparse.Namespace, delay_s: float, stats: Stats,
    go: asyncio.Event, stop: asyncio.Event, ready: list[int],
) -> None:
    shows: asyncio.Queue[tuple[float, dict]] = asyncio.Queue()
    try:
        async with connect(ws_url, compression=None, open_timeout=30, ping_interval=None) as ws:
            await ws.send(hello(f"v_tbench{n:07d}"))
            welcome = msgpack.unpackb(await ws.recv())
            assert welcome["t"] == "welcome", welcome
            stats.sids.append(welcome["sid"])
            ready[0] += 1

            async def reader() -> None:
                async for raw in ws:
                    arrived = time.perf_counter()
                    frame = msgpack.unpackb(raw)
                    if frame["t"] == "show":
                        shows.put_nowait((arrived, frame))
                    elif frame["t"] == "error":
                        stats.errors[frame["code"]] = stats.errors.get(frame["code"], 0) + 1

            read_task = asyncio.create_task(reader())
            await go.wait()
            # Start spread over one cycle, so arms (and dues) do not come in lockstep.
            await asyncio.sleep(random.random() * (delay_s + args.pause))
            seq = 0
            while not stop.is_set():
                seq += 1
                counted = stats.measuring
                sent = time.perf_counter()
                await ws.send(click(seq, RULE_ID))
                stats.armed += counted
                try:
                    arrived, frame = await asyncio.wait_for(shows.get(), delay_s + args.timeout)
                except asyncio.TimeoutError:
                    stats.missed += counted
                    continue
                if counted:
                    stats.lateness_ms.append((arrived - sent - delay_s) * 1000)
                await ws.send(msgpack.packb({"v": 1, "t": "feedback", "oid": frame["oid"], "act": "clicked",
                                             "ts": int(time.time() * 1000)}))
                try:
                    await asyncio.wait_for(stop.wait(), random.random() * args.pause)
                except asyncio.TimeoutError:
                    pass
            read_task.cancel()
    except Exception as exc:  # a visitor that fails is counted, not fatal to the run
        stats.disconnects += 1
        if stats.disconnects <= 3:
            print(f"visitor {n}: {type(exc).__name__}: {exc}", file=sys.stderr)


async def server_lateness(base: str, sids: list[str], armed_from_ms: int, armed_to_ms: int, delay_s: float) -> list[int]:
    """The server's own figure: due -> fired, from the `timer` entries of the session logs.

    A session log keeps its last 50 entries, so the oldest of a long run may be gone.
    """
    out: list[int] = []
    sem = asyncio.Semaphore(20)
    async with httpx.AsyncClient(base_url=base, timeout=30, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as client:

        async def one(sid: str) -> None:
            async with sem:
                body = (await client.get(f"/api/sessions/{sid}")).json()
            for entry in body.get("log", []):
                if entry.get("kind") == "timer" and entry.get("rule") == RULE_ID:
                    armed = entry["ts"] - entry["late_ms"] - delay_s * 1000
                    if armed_from_ms <= armed <= armed_to_ms:
                        out.append(entry["late_ms"])

        await asyncio.gather(*(one(sid) for sid in sids), return_exceptions=True)
    return out


async def start_server(args: argparse.Namespace, extra: list[str]) -> tuple[str, subprocess.Popen]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "kairos", "serve", "--engine", args.engine, "--redis-url", args.redis_url,
           "--rules", str(RULES), "--port", str(port), "--log-level", "warning", "--no-demo", *extra]
    env = {"KAIROS_FRAMES_PER_S": "50", "KAIROS_FRAMES_BURST": "50", **os.environ, "KAIROS_ADMIN_TOKEN": ADMIN_TOKEN}
    server = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=sys.stderr)
    for _ in range(200):
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            await asyncio.sleep(0.1)
    else:
        server.terminate()
        raise SystemExit(f"the server on {base} did not answer /healthz")
    return base, server


# --- the run -------------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> dict:
    delay_s = rule_delay_s(RULES, RULE_ID)
    redis = args.engine == "redis"
    if args.split and not redis:
        raise SystemExit("--split needs --engine redis: two processes share timers through Redis")
    if args.inject == "engine" and not redis:
        raise SystemExit("--inject engine needs --engine redis: the memory engine's queue is inside the server")
    cluster = None
    if args.cluster:
        # A 3-master, 3-replica cluster of the run's own (the tests' launcher: run from a checkout).
        import tempfile

        sys.path.insert(0, str(ROOT / "tests"))
        from redis_cluster import LocalCluster

        cluster = LocalCluster(Path(tempfile.mkdtemp(prefix="kairos-bench-timers-")), masters=3,
                               replicas_per_master=1, node_timeout_ms=15_000).start()
        args.redis_url = cluster.url
    elif redis:
        await redis_prepare(args.redis_url)
    servers: list[subprocess.Popen] = []
    notes: list[str] = []
    try:
        # The visitors' server; with --split it leaves the timers to a second process.
        base, server = await start_server(args, [] if not args.split else ["--no-timers"])
        servers.append(server)
        ws_url = base.replace("http://", "ws://") + "/ws"
        timer_base = base  # where the timer loop runs, and counts its outcomes
        if args.split:
            timer_base, loop_server = await start_server(args, [])
            servers.append(loop_server)
        procs = [psutil.Process(s.pid) for s in servers]

        # 1. The background: timers that do not come due during the run.
        pending_start: int | None = None
        t_inject = time.perf_counter()
        if args.background and args.inject == "engine":
            pending_start = await redis_queue(args.redis_url, "arm", background_timers(args.background))
            if pending_start != args.background:
                raise SystemExit(f"the queue holds {pending_start} timers, expected {args.background}")
        elif args.background:
            armed = await inject_by_visitors(ws_url, args.background)
            if armed != args.background:
                notes.append(f"only {armed} of {args.background} background visitors armed their timer")
            if redis:
                pending_start = await redis_queue(args.redis_url, "count")
            else:
                notes.append("memory engine: the background queue is inside the server; its size is not read")
        elif redis:
            pending_start = await redis_queue(args.redis_url, "count")
        inject_s = time.perf_counter() - t_inject
        print(f"background: {args.background} timers armed ({args.inject}) in {inject_s:.1f} s; "
              f"the queue holds {pending_start if pending_start is not None else 'n/a (memory engine)'}", flush=True)

        # 2. The visitors.
        stats, go, stop, ready = Stats(), asyncio.Event(), asyncio.Event(), [0]
        tasks = []
        for n in range(args.sessions):
            tasks.append(asyncio.create_task(visitor(n, ws_url, args, delay_s, stats, go, stop, ready)))
            if n % 100 == 99:
                await asyncio.sleep(0.1)  # ramp up: 1,000 visitors/s, not all at once
        while ready[0] + stats.disconnects < args.sessions:
            await asyncio.sleep(0.1)
        go.set()
        await asyncio.sleep(args.warmup)

        # 3. The measured window: timers armed in it are the ones measured.
        outcomes_before = timer_outcomes(timer_base)
        cpu_before, me_before, all_before = [p.cpu_times() for p in procs], psutil.Process().cpu_times(), psutil.cpu_times()
        shards_before = node_cpu_s(cluster)
        wall_from, t0 = int(time.time() * 1000), time.perf_counter()
        stats.measuring = True
        await asyncio.sleep(args.duration)
        stats.measuring = False
        elapsed = time.perf_counter() - t0
        wall_to = int(time.time() * 1000)
        cpu_after, me_after, all_after = [p.cpu_times() for p in procs], psutil.Process().cpu_times(), psutil.cpu_times()
        shards_after = node_cpu_s(cluster)
        pending_window_end = await redis_queue(args.redis_url, "count") if redis else None
        # No new arms from here; the visitors wait for the pushes still due, then leave.
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.sleep(0.2)
        outcomes_after = timer_outcomes(timer_base)
        pending_end = await redis_queue(args.redis_url, "count") if redis else None
        server_late = await server_lateness(base, stats.sids, wall_from, wall_to, delay_s)
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            server.wait(10)
        if redis:
            await redis_queue(args.redis_url, "drop")
        if cluster is not None:
            cluster.stop()
    lat = stats.lateness_ms
    cpu_s = [(a.user + a.system) - (b.user + b.system) for a, b in zip(cpu_after, cpu_before)]
    gen_cpu_s = (me_after.user + me_after.system) - (me_before.user + me_before.system)
    # CPU the rest of the machine used meanwhile: Redis, and whatever else runs here (a disturbed run shows).
    busy = lambda t: sum(getattr(t, f) for f in ("user", "nice", "system", "irq", "softirq") if hasattr(t, f))
    other_cpu_s = busy(all_after) - busy(all_before) - sum(cpu_s) - gen_cpu_s
    outcomes = {k: outcomes_after.get(k, 0) - outcomes_before.get(k, 0) for k in outcomes_after}
    return {
        "engine": args.engine,
        "background_timers": args.background,
        "background_injected_by": args.inject if args.background else None,
        "pending_timers_start": pending_start,
        "sessions": args.sessions,
        "connected": ready[0],
        "failed_sessions": stats.disconnects,
        "timer_delay_s": delay_s,
        "measured_s": round(elapsed, 1),
        "timers_armed": stats.armed,
        "timers_fired": len(lat),
        "timers_missed": stats.missed,
        "timers_per_s": round(len(lat) / elapsed, 1),
        "lateness_p50_ms": round(percentile(lat, 50), 1),
        "lateness_p90_ms": round(percentile(lat, 90), 1),
        "lateness_p99_ms": round(percentile(lat, 99), 1),
        "lateness_max_ms": round(max(lat), 1) if lat else None,
        "lateness_mean_ms": round(statistics.fmean(lat), 1) if lat else None,
        "server_late_timers": len(server_late),
        "server_late_p50_ms": percentile(server_late, 50),
        "server_late_p99_ms": percentile(server_late, 99),
        "server_late_max_ms": max(server_late) if server_late else None,
        "server_timer_outcomes": outcomes,
        "server_processes": "visitors' (--no-timers) + timer loop's" if args.split else "one",
        "server_cpu_share": round(sum(cpu_s) / elapsed, 2),
        **({"server_cpu_share_each": [round(c / elapsed, 2) for c in cpu_s]} if args.split else {}),
        "generator_cpu_share": round(gen_cpu_s / elapsed, 2),
        "other_cpu_share": round(other_cpu_s / elapsed, 2),
        # Time the hypervisor gave this machine's CPUs to others: a virtual machine's own disturbance.
        "cpu_steal_share": round((getattr(all_after, "steal", 0) - getattr(all_before, "steal", 0)) / elapsed, 2),
        "cpus": psutil.cpu_count(),
        # On a cluster: each master's own CPU share (INFO cpu), replicas apart.
        **({"redis_cpu_share_by_node": {f"{role} :{port}": round((shards_after[role, port] - shards_before[role, port])
                                                                 / elapsed, 3) for role, port in sorted(shards_after)}}
           if cluster is not None else {}),
        "pending_timers_window_end": pending_window_end,
        "pending_timers_end": pending_end,
        "errors": stats.errors,
        "notes": notes,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--engine", choices=["memory", "redis"], default="redis")
    p.add_argument("--redis-url", default=os.environ.get("KAIROS_REDIS_URL", "redis://127.0.0.1:6379/14"),
                   help="a database of the benchmark's own: it is flushed")
    p.add_argument("--background", type=int, default=10_000, help="pending timers not due during the run")
    p.add_argument("--inject", choices=["engine", "visitors"], default=None,
                   help="how background timers are armed: straight into the Redis queue (redis default), "
                        "or by short visits (memory engine)")
    p.add_argument("--sessions", type=int, default=500)
    p.add_argument("--duration", type=float, default=20.0, help="measured seconds")
    p.add_argument("--warmup", type=float, default=5.0, help="seconds of arming before the measured window")
    p.add_argument("--pause", type=float, default=1.0, help="most seconds a visitor waits before arming again")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds past due after which a push counts missed")
    p.add_argument("--split", action="store_true",
                   help="two server processes: the visitors' with --no-timers, and one running the timer loop "
                        "(arming wakes the loop across processes; pushes are forwarded over Redis)")
    p.add_argument("--cluster", action="store_true",
                   help="a 3-master, 3-replica Redis Cluster started for the run instead of --redis-url; "
                        "prints each node's CPU share")
    p.add_argument("--json", type=Path, help="also write the result here")
    args = p.parse_args()
    if args.cluster and args.engine != "redis":
        raise SystemExit("--cluster needs --engine redis")
    if args.inject is None:
        args.inject = "engine" if args.engine == "redis" else "visitors"
    import uvloop

    report(uvloop.run(run(args)), args.json)


if __name__ == "__main__":
    main()

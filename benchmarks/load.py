"""Load generator: N simulated visitors over real websockets against a real `kairos serve`.

    python benchmarks/load.py --engine redis --sessions 1000

Each visitor says hello, then sends an event batch every `1/--rate` seconds; a
share of the batches (`--trigger-share`) ends with the click the benchmark rule
answers with an overlay. The time from sending such a batch to receiving its
`show` frame is the event->push latency. Throughput is what the server itself
counted (`kairos_events_total` on /metrics) over the measured window. Memory is
the server process's RSS growth divided by the sessions it holds.

Client and server share this machine, so the figures include the generator's
own CPU use; compare runs on the same machine, not against other hardware.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import redis
from prometheus_client.parser import text_string_to_metric_families

from common import free_port, percentile, report
from visitors import Load, Stats, open_visitors

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RULES = HERE / "bench-rules.yaml"


def events_total(base: str, token: str) -> int:
    text = httpx.get(f"{base}/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=10).text
    samples = (s for f in text_string_to_metric_families(text) for s in f.samples)
    return next((int(s.value) for s in samples if s.name == "kairos_events_total"), 0)


def redis_cpu_s(args: argparse.Namespace) -> float:
    """CPU seconds the Redis server has used (INFO cpu), or 0 with the memory engine."""
    if args.engine != "redis":
        return 0.0
    info = redis.Redis.from_url(args.redis_url).info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def run(args: argparse.Namespace) -> dict:
    port = free_port()
    base, ws_url = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}/ws"
    token = secrets.token_hex(16)
    cmd = [sys.executable, "-m", "kairos", "serve", "--engine", args.engine, "--redis-url", args.redis_url,
           "--rules", str(args.rules), "--port", str(port), "--log-level", "warning", "--no-demo",
           "--admin-token", token]
    env = {**os.environ, "KAIROS_FRAMES_PER_S": "50", "KAIROS_FRAMES_BURST": "50"}
    server = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=sys.stderr)
    try:
        for _ in range(200):
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                await asyncio.sleep(0.1)
        proc = psutil.Process(server.pid)
        rss_idle = proc.memory_info().rss
        stats, stop = Stats(), asyncio.Event()
        tasks = await open_visitors(ws_url, args.sessions, Load(args.rate, args.batch, args.trigger_share), stats, stop)
        await asyncio.sleep(args.warmup)
        dashboard = None
        if args.dashboard:
            from dashboard import Dashboard

            dashboard = Dashboard(base, token)
            await dashboard.open(expect_live=stats.ready)
        rss_loaded = proc.memory_info().rss
        events_before, t0 = events_total(base, token), time.perf_counter()
        cpu_before, me_before = proc.cpu_times(), psutil.Process().cpu_times()
        redis_before = redis_cpu_s(args)
        stats.measuring = True
        seen = await dashboard.measure(args.duration) if dashboard else await asyncio.sleep(args.duration) or {}
        stats.measuring = False
        elapsed = time.perf_counter() - t0
        events_after = events_total(base, token)
        cpu_after, me_after = proc.cpu_times(), psutil.Process().cpu_times()
        redis_after = redis_cpu_s(args)
        rss_end = proc.memory_info().rss
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        if dashboard:
            await dashboard.close()
    finally:
        server.terminate()
        server.wait(10)
    lat = stats.latencies_ms
    cpu_s = (cpu_after.user + cpu_after.system) - (cpu_before.user + cpu_before.system)
    gen_cpu_s = (me_after.user + me_after.system) - (me_before.user + me_before.system)
    return {
        "engine": args.engine,
        "sessions": args.sessions,
        "connected": stats.ready,
        "failed_sessions": stats.disconnects,
        "batch_rate_per_session": args.rate,
        "events_per_batch": args.batch,
        "measured_s": round(elapsed, 1),
        "throughput_events_per_s": round((events_after - events_before) / elapsed),
        "throughput_batches_per_s": round(stats.batches / elapsed),
        "pushes_measured": len(lat),
        "latency_p50_ms": round(percentile(lat, 50), 2),
        "latency_p99_ms": round(percentile(lat, 99), 2),
        "latency_max_ms": round(max(lat), 2) if lat else None,
        "latency_mean_ms": round(statistics.fmean(lat), 2) if lat else None,
        "server_cpu_share": round(cpu_s / elapsed, 2),
        "server_cpu_ms_per_batch": round(cpu_s * 1000 / max(1, stats.batches), 3),
        # Redis runs the Lua scripts: its CPU is part of a batch's cost (0 with the memory engine)
        "redis_cpu_ms_per_batch": round((redis_after - redis_before) * 1000 / max(1, stats.batches), 3),
        "generator_cpu_share": round(gen_cpu_s / elapsed, 2),
        "server_rss_idle_mib": round(rss_idle / 2**20, 1),
        "server_rss_loaded_mib": round(rss_loaded / 2**20, 1),
        "server_rss_end_mib": round(rss_end / 2**20, 1),
        "rss_per_session_kib": round((rss_loaded - rss_idle) / max(1, stats.ready) / 1024, 1),
        "errors": stats.errors,
        **seen,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--engine", choices=["memory", "redis"], default="redis")
    p.add_argument("--redis-url", default=os.environ.get("KAIROS_REDIS_URL", "redis://127.0.0.1:6379/14"))
    p.add_argument("--sessions", type=int, default=1000)
    p.add_argument("--rate", type=float, default=1.0, help="event batches per second per session")
    p.add_argument("--batch", type=int, default=5, help="events per batch")
    p.add_argument("--trigger-share", type=float, default=0.25, help="share of batches that earn an overlay")
    p.add_argument("--duration", type=float, default=20.0, help="measured seconds")
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument("--json", type=Path, help="also write the result here")
    p.add_argument("--dashboard", action="store_true",
                   help="watch the live page in headless Chromium during the window (feed rate, long tasks)")
    p.add_argument("--rules", type=Path, default=RULES,
                   help="rules file (bench-rules-scores.yaml adds two intent scores, to measure what scoring costs)")
    args = p.parse_args()
    import uvloop

    report(uvloop.run(run(args)), args.json)


if __name__ == "__main__":
    main()

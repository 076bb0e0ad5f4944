"""Kairos next to the floor (benchmarks/floor.py), under the same load, in one run (issue 16).

    python benchmarks/compare.py                    # 1,000 sessions x 2 batches/s, 20 s, floor/Kairos x 2
    python benchmarks/compare.py --max              # most batches/s each sustains with p99 <= 250 ms
    python benchmarks/compare.py --idle             # RSS per idle session, 5,000 sessions
    python benchmarks/compare.py --shape store      # 10,000 shoppers coming and going as a store's do
    python benchmarks/compare.py --experiment       # Kairos, its rule plain and running an experiment (issue 17)
    python benchmarks/compare.py --cluster          # both on a Redis Cluster: 3 masters, a replica each (issue 18)

The floor is a bare server on Kairos's stack (uvicorn, uvloop, httptools,
websockets sans-I/O, Starlette, redis-py, one EVALSHA a batch); Kairos is
`kairos serve --engine redis --rules benchmarks/bench-rules.yaml`. The same
visitors (benchmarks/visitors.py) drive both, one server at a time, runs
interleaved and their order turned at each run (floor, Kairos, Kairos, floor,
…), each on a freshly flushed database. Per run and as medians over the runs it prints:

- batches/s: batches the visitors sent in the measured window, per second;
- p50 / p99 / max event->push: from sending a batch that holds the trigger to
  receiving its `show`, as the visitor sees it;
- server CPU s per 1,000 batches: user+system CPU of the server process over the
  window (psutil), per 1,000 batches sent in it;
- batches per server CPU-second: the same figure turned round, the batches/s
  one core would serve if nothing else ran on it: a ceiling;
- Redis CPU s per 1,000 batches: used_cpu_user+used_cpu_sys deltas of INFO cpu;
- with --idle, server and Redis CPU per session opened: the websocket
  handshake and the hello (the visitors send nothing else); the server's CPU
  per websocket opened with no hello sent (1,000 of them, closed before the
  visitors come), and the difference: what a hello costs;
- RSS per session: the server's RSS with every session open (after the warm-up)
  minus before the first one, per session; Redis memory per session likewise
  from INFO memory used_memory;
- gen-2 GCs and the longest pause: full collections that started in the window,
  timed inside the server by benchmarks/gc_probe.py, which runs both servers;
  the same for the young (gen-0 and gen-1) collections, and all the collections'
  pauses together per 1,000 batches;
- the generator's own CPU share (it shares the machine with the servers);
  with --shape store also hellos/s and the sessions open at the end,
and the ratio Kairos/floor of each median. Ratios, and CPU per batch, survive a
busy machine far better than latency and throughput do.

With --experiment the two servers are both Kairos: the benchmark's rule as it is,
and the same rule running an experiment (benchmarks/bench-rules-experiment.yaml:
two variants and a 10% holdout), so the last column is what the experiment's
path costs.

Redis: by default a redis-server of the benchmark's own on a free port (no
persistence), so INFO cpu counts only this benchmark; `--redis-url` uses a
database of another Redis instead, flushed before each run (refused if another
client uses it or it holds keys neither server writes) — its Redis figures then
include whatever else that Redis serves, and Kairos hears every other Kairos on
that Redis: pub/sub channels are not per database (a dashboard open on any of
them makes this one build and publish its feed, ~6 % of its CPU in a profile).

With --cluster, a Redis Cluster of the benchmark's own instead (tests/redis_cluster.py's
LocalCluster: --cluster-masters masters, default 3, one replica each, no
persistence, in a temporary folder), both servers given its redis+cluster://
URL, every master flushed before each run. The table is the same: Redis CPU is
the sum over the masters (INFO cpu of each), Redis memory the sum of the
masters' used_memory less their replication buffers (which grow with the
writes, not the sessions; the connections' buffers are counted, as on one
Redis, and a cluster has more connections: a pool per master). Below the Redis
CPU line come each shard's master, then the replicas' CPU per 1,000 batches
(replication costs CPU too; not in the masters' sum).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import redis
from websockets.asyncio.client import connect

import gc_probe
from common import free_port, percentile
from visitors import Load, Shape, Stats, open_visitors, visitor

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# --cluster starts its cluster with the tests' launcher (tests/redis_cluster.py): the
# benchmark runs from a checkout of the repository, where tests/ is beside benchmarks/.
sys.path.insert(0, str(ROOT / "tests"))
RULES = HERE / "bench-rules.yaml"
TARGETS = ("floor", "kairos")
# --experiment: Kairos against itself, its rule plain and running an experiment.
EXPERIMENT_TARGETS = ("kairos", "experiment")
EXPERIMENT_RULES = HERE / "bench-rules-experiment.yaml"
# The acceptance line of --max (issue 16): a rate is sustained while p99 event->push stays within it.
MAX_P99_MS = 250.0


# --- Redis ----------------------------------------------------------------------------


class BenchRedis:
    """The Redis both servers use: our own redis-server, or a database of one given by URL."""

    def __init__(self, url: str | None) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        if url is None:
            binary = shutil.which("redis-server")
            if binary is None:
                raise SystemExit("redis-server is not installed (make system-deps), or pass --redis-url")
            port = free_port()
            url = f"redis://127.0.0.1:{port}/0"
            self.proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                          "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = url
        self.r = redis.Redis.from_url(url, decode_responses=True)
        for _ in range(100):
            try:
                self.r.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)

    def flush(self) -> None:
        """Empty the database for the next run, if only the benchmark's servers have been writing it."""
        if self.proc is None:
            db = str(self.r.connection_pool.connection_kwargs.get("db", 0))
            me = self.r.client_id()
            others = [c for c in self.r.client_list() if str(c.get("db")) == db and str(c.get("id")) != str(me)]
            if others:
                raise SystemExit(f"{self.url}: another client uses this database ({others[0].get('addr')}, "
                                 f"last command {others[0].get('cmd')}); pass another --redis-url")
            for key in self.r.scan_iter(count=1000):
                if not key.startswith(("kairos:", "floor:")):
                    raise SystemExit(f"{self.url} holds {key!r}, which neither server writes: refusing to flush it")
        self.r.flushdb()

    def cpu_s(self) -> float:
        info = self.r.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])

    def memory_b(self) -> int:
        return int(self.r.info("memory")["used_memory"])

    def cpu_read(self) -> tuple[float, dict[int, float]]:
        """CPU seconds so far, and per node (none: one Redis)."""
        return self.cpu_s(), {}

    def shard_figures(self, nodes0: dict[int, float], nodes1: dict[int, float], per_k: float) -> dict[str, float]:
        return {}

    def shard_rows(self) -> list[tuple[str, str, str]]:
        return []

    def close(self) -> None:
        self.r.close()
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(5)


class BenchCluster:
    """A Redis Cluster of the benchmark's own (LocalCluster), in the interface of BenchRedis.

    Its Redis figures are the masters' summed (what serves the commands); each shard's
    master, and the replicas, are also given apart (shard_figures, shard_rows).
    """

    def __init__(self, masters: int, workdir: Path | None) -> None:
        from redis_cluster import LocalCluster, command, fields

        self._command, self._fields = command, fields
        self.folder = Path(tempfile.mkdtemp(prefix="kairos-bench-cluster-", dir=workdir))
        # Redis's default node timeout (15 s), not the tests' 2 s: a node starved of the CPU
        # for a moment by the load on a small machine must not be failed over mid-run.
        self.cluster = LocalCluster(self.folder, masters=masters, replicas_per_master=1, node_timeout_ms=15_000)
        self.keep = workdir is not None
        try:
            self.cluster.start()
        except BaseException:
            self._remove()
            raise
        self.url = self.cluster.url
        self.shards = self._layout()
        self.first = self.shards

    def _layout(self) -> list[tuple[int, list[int]]]:
        """(master port, its replicas' ports) for each shard, in the order of their first slot."""
        view = self.cluster.view()
        masters = sorted((e for e in view if e.is_master and e.slots and not e.failing), key=lambda e: e.slots[0])
        return [(m.port, sorted(e.port for e in view if e.master_id == m.id and not e.failing)) for m in masters]

    def flush(self) -> None:
        self.cluster.flush()
        shards = self._layout()
        if shards != self.shards:
            print(f"warning: the cluster's shards changed (a failover?): {self.shards} -> {shards} "
                  f"(master port, replica ports); each shard's figures are its master's now", file=sys.stderr)
        self.shards = shards

    def _info(self, port: int, section: str) -> dict[str, str]:
        return self._fields(self._command(port, "INFO", section))

    def cpu_read(self) -> tuple[float, dict[int, float]]:
        nodes = self.cluster.node_cpu_s()
        return sum(nodes.get(m, 0.0) for m, _ in self.shards), nodes

    def cpu_s(self) -> float:
        return self.cpu_read()[0]

    def memory_b(self) -> int:
        """The masters' used_memory, less their replication buffers: one Redis with no replica has
        none, and the backlog grows with the writes (up to repl-backlog-size, 1 MB), not with the
        sessions: counted, it made a floor session's ~1 KB some 5 KB."""
        total = 0
        for master, _ in self.shards:
            info = self._info(master, "memory")
            # Redis 7 shares one buffer between the backlog and the replicas' output; before, apart.
            buffers = info.get("mem_total_replication_buffers")
            replication = int(buffers) if buffers is not None else (
                int(info.get("mem_replication_backlog", 0)) + int(info.get("mem_clients_slaves", 0)))
            total += int(info["used_memory"]) - replication
        return total

    def shard_figures(self, nodes0: dict[int, float], nodes1: dict[int, float], per_k: float) -> dict[str, float]:
        def spent(port: int) -> float:
            return (nodes1[port] - nodes0[port]) * per_k if port in nodes0 and port in nodes1 else float("nan")

        out = {}
        for i, (master, replicas) in enumerate(self.shards, 1):
            out[f"redis_shard{i}_cpu_s_per_1k"] = spent(master)
            out[f"redis_shard{i}_replica_cpu_s_per_1k"] = sum(spent(p) for p in replicas)
        out["redis_replicas_cpu_s_per_1k"] = sum(v for k, v in out.items() if k.endswith("_replica_cpu_s_per_1k"))
        return out

    def shard_rows(self) -> list[tuple[str, str, str]]:
        """The table's lines for the shards, below Redis CPU (the masters' sum), labelled with the first ports."""
        rows = [(f"redis_shard{i}_cpu_s_per_1k", f"  shard {i} master :{master}", "{:.3f}")
                for i, (master, _) in enumerate(self.first, 1)]
        rows.append(("redis_replicas_cpu_s_per_1k", "Redis replicas' CPU s / 1,000 batches", "{:.3f}"))
        for i, (_, replicas) in enumerate(self.first, 1):
            label = f"  shard {i} replica{'s' if len(replicas) != 1 else ''} :{','.join(map(str, replicas))}"
            rows.append((f"redis_shard{i}_replica_cpu_s_per_1k", label, "{:.3f}"))
        return rows

    def _remove(self) -> None:
        if not self.keep:
            shutil.rmtree(self.folder, ignore_errors=True)

    def close(self) -> None:
        self.cluster.stop()
        self._remove()


Database = BenchRedis | BenchCluster


# --- servers --------------------------------------------------------------------------


def server_command(target: str, port: int, redis_url: str, gc_log: Path, rules: Path) -> list[str]:
    probe = [sys.executable, str(HERE / "gc_probe.py"), "--out", str(gc_log)]
    if target == "floor":
        return [*probe, str(HERE / "floor.py"), "--port", str(port), "--redis-url", redis_url]
    if target == "experiment":
        rules = EXPERIMENT_RULES
    return [*probe, "-m", "kairos", "serve", "--engine", "redis", "--redis-url", redis_url, "--rules", str(rules),
            "--port", str(port), "--log-level", "warning", "--no-demo", "--admin-token", secrets.token_hex(16)]


class Server:
    """One server process under gc_probe, started and waited for; killed on exit."""

    def __init__(self, target: str, redis_url: str, rules: Path, workdir: Path) -> None:
        self.target = target
        self.port = free_port()
        self.gc_log = workdir / f"gc-{target}-{self.port}.log"
        # The benchmark's visitors send up to --max's rates: Kairos's per-connection frame limit must not be what stops them.
        env = {**os.environ, "KAIROS_FRAMES_PER_S": "1000", "KAIROS_FRAMES_BURST": "1000"}
        # Its output goes to a file, shown if it fails to start: a server stopped under load may log a lot.
        self.log = workdir / f"{target}-{self.port}.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(server_command(target, self.port, redis_url, self.gc_log, rules), cwd=ROOT,
                                         env=env, stdout=out, stderr=subprocess.STDOUT)
        self.ps = psutil.Process(self.proc.pid)
        self.ws_url = f"ws://127.0.0.1:{self.port}/ws"

    async def ready(self) -> None:
        async with httpx.AsyncClient() as client:
            for _ in range(300):
                if self.proc.poll() is not None:
                    raise SystemExit(f"{self.target} exited with status {self.proc.returncode} at start-up:\n"
                                     + self.log.read_text(errors="replace")[-4000:])
                try:
                    if (await client.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1)).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
        raise SystemExit(f"{self.target} did not answer /healthz within 30 s")

    def cpu_s(self) -> float:
        t = self.ps.cpu_times()
        return t.user + t.system

    def rss_b(self) -> int:
        return self.ps.memory_info().rss

    def stop(self) -> None:
        """Stop the server once it has done what the visitors' departures gave it (Kairos keeps each session's row)."""
        deadline, last = time.monotonic() + 30, self.cpu_s() if self.proc.poll() is None else 0.0
        while self.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
            now = self.cpu_s()
            if now - last < 0.02:  # quiet
                break
            last = now
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


class Window:
    """The counters read at the start and at the end of a measured window."""

    def __init__(self, server: Server, db: Database, stats: Stats) -> None:
        self.server, self.db, self.stats = server, db, stats
        self.me = psutil.Process()

    def __enter__(self) -> "Window":
        self.stats.latencies_ms.clear()
        self.batches0 = self.stats.batches
        self.t0, self.wall0 = time.perf_counter(), time.time()
        self.cpu0, (self.redis0, self.nodes0), self.gen0 = self.server.cpu_s(), self.db.cpu_read(), self._gen_cpu()
        self.stats.measuring = True
        return self

    def __exit__(self, *exc: object) -> None:
        self.stats.measuring = False
        self.elapsed = time.perf_counter() - self.t0
        self.wall1 = time.time()
        self.cpu1, (self.redis1, self.nodes1), self.gen1 = self.server.cpu_s(), self.db.cpu_read(), self._gen_cpu()
        self.latencies = list(self.stats.latencies_ms)

    def _gen_cpu(self) -> float:
        t = self.me.cpu_times()
        return t.user + t.system

    def figures(self) -> dict[str, Any]:
        batches = self.stats.batches - self.batches0
        per_k = 1000 / max(1, batches)
        pauses = gc_probe.read(str(self.server.gc_log), self.wall0, self.wall1)
        young = gc_probe.read(str(self.server.gc_log), self.wall0, self.wall1, (0, 1))
        return {
            "batches_per_s": batches / self.elapsed,
            "p50_ms": percentile(self.latencies, 50),
            "p99_ms": percentile(self.latencies, 99),
            "max_ms": max(self.latencies, default=float("nan")),
            "server_cpu_s_per_1k": (self.cpu1 - self.cpu0) * per_k,
            # What one core would serve if the server's CPU were all a batch needs: a ceiling that a
            # busy machine moves far less than the measured maximum.
            "batches_per_core_s": batches / max(1e-9, self.cpu1 - self.cpu0),
            "redis_cpu_s_per_1k": (self.redis1 - self.redis0) * per_k,
            **self.db.shard_figures(self.nodes0, self.nodes1, per_k),  # a cluster's: each shard's, the replicas'
            "server_cpu_share": (self.cpu1 - self.cpu0) / self.elapsed,
            "generator_cpu_share": (self.gen1 - self.gen0) / self.elapsed,
            "gen2_gcs": len(pauses),
            "gen2_longest_ms": max(pauses, default=0.0),
            "young_gcs": len(young),
            "young_longest_ms": max(young, default=0.0),
            "gc_ms_per_1k": (sum(young) + sum(pauses)) * per_k,
            "pushes": len(self.latencies),
        }


# --- one run --------------------------------------------------------------------------


async def steady_run(target: str, args: argparse.Namespace, db: Database, workdir: Path) -> dict[str, Any]:
    """One server under `args.sessions` visitors at `args.rate`: the window's figures."""
    db.flush()
    server = Server(target, db.url, args.rules, workdir)
    stats, stop = Stats(), asyncio.Event()
    tasks: list[asyncio.Task] = []
    try:
        await server.ready()
        # Before the memory is read: the sockets' memory, freed, may stay with the process.
        handshake = await handshake_cpu_ms(server) if args.rate <= 0 else None
        rss0, mem0 = server.rss_b(), db.memory_b()
        cpu0, redis0 = server.cpu_s(), db.cpu_s()
        load = Load(args.rate, args.batch, args.trigger_share)
        tasks = await open_visitors(server.ws_url, args.sessions, load, stats, stop)
        cpu1, redis1 = server.cpu_s(), db.cpu_s()
        await asyncio.sleep(args.warmup)
        rss1, mem1 = server.rss_b(), db.memory_b()
        with Window(server, db, stats) as window:
            await asyncio.sleep(args.duration)
        result = window.figures()
        if args.rate <= 0:
            # Idle visitors send nothing after their hello: what the opening cost is all the opening's.
            result["open_cpu_ms"] = (cpu1 - cpu0) * 1000 / max(1, stats.ready)
            result["open_redis_cpu_ms"] = (redis1 - redis0) * 1000 / max(1, stats.ready)
            result["handshake_cpu_ms"] = handshake
            result["hello_cpu_ms"] = result["open_cpu_ms"] - handshake
        result["rss_per_session_kib"] = (rss1 - rss0) / max(1, stats.ready) / 1024
        result["redis_mem_per_session_b"] = (mem1 - mem0) / max(1, stats.ready)
        result["failed_sessions"] = stats.disconnects
        result["errors"] = sum(stats.errors.values())
        return result
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        server.stop()


async def handshake_cpu_ms(server: Server, sockets: int = 1000) -> float:
    """The server's CPU per websocket opened without a hello: the stack's handshake, which
    the floor pays as Kairos does; what a session opened costs beyond it is its hello's."""
    cpu0, opened = server.cpu_s(), []
    try:
        for _ in range(0, sockets, 100):  # the visitors' ramp: 100 at a time, 1,000 a second
            opened += await asyncio.gather(*(connect(server.ws_url, compression=None, ping_interval=None)
                                             for _ in range(100)))
            await asyncio.sleep(0.1)
        return (server.cpu_s() - cpu0) * 1000 / len(opened)
    finally:
        await asyncio.gather(*(ws.close() for ws in opened), return_exceptions=True)
        await asyncio.sleep(1.0)  # the closes settle before the sessions' window opens


async def max_run(target: str, args: argparse.Namespace, db: Database, workdir: Path) -> dict[str, Any]:
    """Step the rate up under one server until p99 event->push passes 250 ms or the batches sent fall short."""
    db.flush()
    server = Server(target, db.url, args.rules, workdir)
    stats, stop = Stats(), asyncio.Event()
    load = Load(args.rate, args.batch, args.trigger_share)
    tasks: list[asyncio.Task] = []
    best: dict[str, Any] = {"batches_per_s": 0.0}
    try:
        await server.ready()
        tasks = await open_visitors(server.ws_url, args.sessions, load, stats, stop)
        await asyncio.sleep(args.warmup)
        rate, retried = args.rate, False
        for _ in range(args.max_steps):
            load.rate = rate
            await asyncio.sleep(args.step_settle)
            with Window(server, db, stats) as window:
                await asyncio.sleep(args.step_duration)
            step = window.figures()
            offered = rate * stats.ready
            sustained = step["p99_ms"] <= MAX_P99_MS and step["batches_per_s"] >= 0.9 * offered
            print(f"  {target:6} offered {offered:8,.0f}/s  sent {step['batches_per_s']:8,.0f}/s  "
                  f"p99 {step['p99_ms']:7.1f} ms  server CPU {step['server_cpu_share']:.2f}  "
                  f"generator CPU {step['generator_cpu_share']:.2f}  {'ok' if sustained else 'over'}",
                  file=sys.stderr, flush=True)
            if not sustained:
                # Other work on a shared machine can spoil one step: a rate fails only when it fails twice.
                if retried:
                    break
                retried = True
                continue
            retried = False
            best = {**step, "offered_per_s": offered}
            rate *= args.step_factor
        best["generator_bound"] = best.get("generator_cpu_share", 0) >= 0.9
        return best
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        server.stop()


async def store_run(target: str, args: argparse.Namespace, db: Database, workdir: Path) -> dict[str, Any]:
    """One server under a store's shape: `args.sessions` open at once, shoppers arriving and leaving (Shape)."""
    db.flush()
    server = Server(target, db.url, args.rules, workdir)
    stats, stop, shape = Stats(), asyncio.Event(), Shape()
    load = Load(0.0, args.batch, args.trigger_share)
    # Arrivals that keep `sessions` open: each visit lasts its batches' gaps (Little's law).
    arrivals_per_s = args.sessions / shape.visit_s
    tasks: set[asyncio.Task] = set()
    count = 0

    def arrive(gaps_s: list[float]) -> None:
        nonlocal count
        task = asyncio.create_task(visitor(count, server.ws_url, load, stats, stop, gaps_s))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        count += 1

    async def arrivals() -> None:
        while not stop.is_set():
            await asyncio.sleep(random.expovariate(arrivals_per_s))
            arrive(shape.visit())

    arriving: asyncio.Task | None = None
    try:
        await server.ready()
        rss0, mem0 = server.rss_b(), db.memory_b()
        # The sessions a store has open at any moment, each caught part-way through its visit.
        already = shape.open_now(args.sessions)
        for n, gaps_s in enumerate(already):
            arrive(gaps_s)
            if n % 100 == 99:
                await asyncio.sleep(0.1)
        arriving = asyncio.create_task(arrivals())
        while stats.ready + stats.disconnects < len(already):
            await asyncio.sleep(0.1)
        await asyncio.sleep(args.warmup)
        rss1, mem1, open1 = server.rss_b(), db.memory_b(), stats.open
        with Window(server, db, stats) as window:
            hellos0 = stats.hellos
            await asyncio.sleep(args.duration)
        result = window.figures()
        result["hellos_per_s"] = (stats.hellos - hellos0) / window.elapsed
        result["open_sessions"] = stats.open
        result["rss_per_session_kib"] = (rss1 - rss0) / max(1, open1) / 1024
        result["redis_mem_per_session_b"] = (mem1 - mem0) / max(1, open1)
        result["failed_sessions"] = stats.disconnects
        result["errors"] = sum(stats.errors.values())
        return result
    finally:
        stop.set()
        if arriving is not None:
            arriving.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        server.stop()


# --- the table --------------------------------------------------------------------------


ROWS = [  # key, label, format
    ("batches_per_s", "batches/s", "{:,.0f}"),
    ("p50_ms", "p50 event->push, ms", "{:.1f}"),
    ("p99_ms", "p99 event->push, ms", "{:.1f}"),
    ("max_ms", "max event->push, ms", "{:.1f}"),
    ("server_cpu_s_per_1k", "server CPU s / 1,000 batches", "{:.3f}"),
    ("batches_per_core_s", "batches per server CPU-second", "{:,.0f}"),
    ("redis_cpu_s_per_1k", "Redis CPU s / 1,000 batches", "{:.3f}"),
    ("hellos_per_s", "hellos/s", "{:.1f}"),
    ("open_cpu_ms", "server CPU ms per session opened", "{:.2f}"),
    ("open_redis_cpu_ms", "Redis CPU ms per session opened", "{:.3f}"),
    ("handshake_cpu_ms", "server CPU ms per handshake alone", "{:.2f}"),
    ("hello_cpu_ms", "server CPU ms per hello (opened - handshake)", "{:.2f}"),
    ("open_sessions", "sessions open at the end", "{:,.0f}"),
    ("rss_per_session_kib", "RSS per session, KiB", "{:.1f}"),
    ("redis_mem_per_session_b", "Redis memory per session, B", "{:,.0f}"),
    ("gen2_gcs", "gen-2 GCs in the window", "{:.0f}"),
    ("gen2_longest_ms", "longest gen-2 pause, ms", "{:.1f}"),
    ("young_gcs", "gen-0/1 GCs in the window", "{:,.0f}"),
    ("young_longest_ms", "longest gen-0/1 pause, ms", "{:.1f}"),
    ("gc_ms_per_1k", "GC pauses, ms / 1,000 batches", "{:.1f}"),
    ("server_cpu_share", "server CPU share (cores)", "{:.2f}"),
    ("generator_cpu_share", "generator CPU share (cores)", "{:.2f}"),
    ("pushes", "pushes timed", "{:,.0f}"),
    ("failed_sessions", "failed sessions", "{:.0f}"),
    ("errors", "error frames", "{:.0f}"),
]


def median(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in runs if r.get(key) is not None and r[key] == r[key]]  # NaN: no pushes timed
    return statistics.median(values) if values else None


# What an idle run measures: no batches, so nothing per batch.
IDLE_ROWS = {"open_cpu_ms", "open_redis_cpu_ms", "handshake_cpu_ms", "hello_cpu_ms", "rss_per_session_kib",
             "redis_mem_per_session_b", "gen2_gcs", "gen2_longest_ms", "young_gcs", "young_longest_ms",
             "server_cpu_share", "generator_cpu_share", "failed_sessions"}


def table(results: dict[str, list[dict[str, Any]]], idle: bool = False,
          shard_rows: list[tuple[str, str, str]] = ()) -> str:
    """Per-run columns, the medians, and Kairos/floor (or experiment/plain) of the medians, as aligned text.

    `shard_rows` (a cluster's) go below the Redis CPU line."""
    n = max(len(v) for v in results.values())
    targets = tuple(results)
    a, b = ("floor", "Kairos") if targets == TARGETS else ("plain", "experiment")
    head = ["measure", *(f"{a} {i + 1}" for i in range(n)), *(f"{b} {i + 1}" for i in range(n)),
            f"{a} med", f"{b} med", f"{b}/{a}"]
    lines = [head]
    at = next(i for i, row in enumerate(ROWS) if row[0] == "redis_cpu_s_per_1k") + 1
    for key, label, fmt in [*ROWS[:at], *shard_rows, *ROWS[at:]]:
        if idle and key not in IDLE_ROWS or not any(key in r for runs in results.values() for r in runs):
            continue
        cells = [label]
        for target in targets:
            runs = results[target]
            cells += [fmt.format(r[key]) if key in r and r[key] == r[key] else "-" for r in runs]
            cells += [""] * (n - len(runs))
        meds = [median(results[t], key) for t in targets]
        cells += [fmt.format(m) if m is not None else "-" for m in meds]
        ratio = "-" if None in meds or not meds[0] else f"{meds[1] / meds[0]:.2f}x"
        cells.append(ratio)
        lines.append(cells)
    widths = [max(len(row[i]) for row in lines) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
                     for row in lines)


# --- main -----------------------------------------------------------------------------------


def raise_fd_limit(sessions: int) -> None:
    """Each visitor holds a socket here and one in the server: lift the soft limit to the hard one if need be."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, 2 * sessions + 1024)) if hard != resource.RLIM_INFINITY else max(soft, 2 * sessions + 1024)
    if want > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))  # inherited by the servers we start
    if want < sessions + 256:
        raise SystemExit(f"{sessions} sessions need ~{sessions + 256} file descriptors; the hard limit is {hard}")


async def run(args: argparse.Namespace) -> tuple[dict[str, list[dict[str, Any]]], list[tuple[str, str, str]]]:
    """Each target's runs' figures, and the table's lines for a cluster's shards (none on one Redis)."""
    # A TERM (a CI's timeout, kill) cancels the runs: their `finally` stop the server and the
    # Redis (or the cluster's six) started for them, which would otherwise outlive the benchmark.
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, asyncio.current_task().cancel)
    if args.cluster:
        print(f"starting a Redis Cluster: {args.cluster_masters} masters, a replica each", file=sys.stderr,
              flush=True)
        db: Database = BenchCluster(args.cluster_masters, args.workdir)
        print(f"cluster {db.url}: shards (master, replicas) {db.shards}", file=sys.stderr, flush=True)
    else:
        db = BenchRedis(args.redis_url)
    targets = EXPERIMENT_TARGETS if args.experiment else TARGETS
    results: dict[str, list[dict[str, Any]]] = {t: [] for t in targets}
    one = max_run if args.max else store_run if args.shape == "store" else steady_run
    try:
        with tempfile.TemporaryDirectory(prefix="kairos-bench-") as tmp:
            workdir = args.workdir or Path(tmp)
            for i in range(args.runs):
                # Interleaved, so a slow spell on the machine falls on both; the order turns at
                # each run, as the second of a pair measured ~6% more CPU than the first with the
                # same server twice (an A/A run, 2026-12-06).
                for target in targets if i % 2 == 0 else reversed(targets):
                    print(f"run {i + 1}/{args.runs}: {target}", file=sys.stderr, flush=True)
                    results[target].append(await one(target, args, db, workdir))
                    report_log_errors(workdir, target, kept=args.workdir is not None)
    finally:
        db.close()
    return results, db.shard_rows()


def report_log_errors(workdir: Path, target: str, kept: bool) -> None:
    """Say so when the server just run logged errors or Redis trouble (its log is kept with --workdir)."""
    logs = sorted(workdir.glob(f"{target}-*.log"), key=lambda p: p.stat().st_mtime)
    if not logs:
        return
    lines = logs[-1].read_text(errors="replace").splitlines()
    marks = ("Traceback", " ERROR ", " CRITICAL ", " WARNING kairos.redis")
    bad = [line for line in lines if any(m in line for m in marks) or line.startswith(("ERROR", "CRITICAL"))]
    if bad:
        print(f"  {target} logged {len(bad)} error or Redis warning line(s) of {len(lines)}, first: {bad[0][:200]}"
              + (f" ({logs[-1]})" if kept else " (--workdir DIR keeps the logs)"), file=sys.stderr, flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sessions", type=int, help="visitors (default 1,000; 5,000 with --idle)")
    p.add_argument("--rate", type=float, help="batches a second per visitor (default 2; --max: the first step, 0.5)")
    p.add_argument("--batch", type=int, default=5, help="events per batch")
    p.add_argument("--trigger-share", type=float, default=0.25, help="share of batches that earn an overlay")
    p.add_argument("--duration", type=float, default=20.0, help="measured seconds per run")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds between the last welcome and the window")
    p.add_argument("--runs", type=int, help="runs of each server, interleaved (default 2; 1 with --max)")
    p.add_argument("--redis-url", help="a database to use (flushed before each run) instead of our own redis-server")
    p.add_argument("--cluster", action="store_true",
                   help="a Redis Cluster of our own (tests/redis_cluster.py) instead of one redis-server: "
                        "the masters' Redis figures summed, and each shard's")
    p.add_argument("--cluster-masters", type=int, default=3, help="--cluster: masters (each with one replica)")
    p.add_argument("--workdir", type=Path,
                   help="keep the servers' logs (and with --cluster the nodes' data and logs) here, not in a "
                        "temporary folder")
    p.add_argument("--rules", type=Path, default=RULES, help="Kairos's rules file")
    p.add_argument("--max", action="store_true",
                   help=f"step the rate up until p99 event->push passes {MAX_P99_MS:g} ms; print the most sustained")
    p.add_argument("--step-factor", type=float, default=1.5, help="--max: rate multiplier per step")
    p.add_argument("--step-duration", type=float, default=5.0, help="--max: measured seconds per step")
    p.add_argument("--step-settle", type=float, default=2.0, help="--max: seconds at a new rate before measuring")
    p.add_argument("--max-steps", type=int, default=10, help="--max: most steps (bounds the run's time)")
    p.add_argument("--shape", choices=["steady", "store"], default="steady",
                   help="store: shoppers arriving and leaving, lognormal gaps (median 56 s, p90 299 s), ~5 batches "
                        "a visit, --sessions open at once (default 10,000), 10%% of batches triggering")
    p.add_argument("--idle", action="store_true", help="idle visitors (hello, then nothing): memory per session")
    p.add_argument("--experiment", action="store_true",
                   help="Kairos against itself: the rule plain, and running an experiment (no floor)")
    p.add_argument("--json", type=Path, help="also write the per-run figures here")
    args = p.parse_args()
    if args.cluster and args.redis_url:
        p.error("--cluster starts a cluster of its own: it takes no --redis-url")
    if args.cluster_masters < 3:
        p.error("--cluster-masters: a Redis Cluster needs 3 masters at least")
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        args.workdir = args.workdir.resolve()
    if args.idle:
        args.rate = 0.0
        args.runs = args.runs or 1
        args.sessions = args.sessions or 5000
        args.duration = min(args.duration, 5.0)
    if args.shape == "store":
        args.sessions = args.sessions or 10_000
        args.runs = args.runs or 1
        if "--trigger-share" not in sys.argv:
            args.trigger_share = 0.10
        if "--duration" not in sys.argv:
            args.duration = 60.0
        if "--warmup" not in sys.argv:
            args.warmup = 10.0
    args.sessions = args.sessions or 1000
    args.rate = args.rate if args.rate is not None else 0.5 if args.max else 2.0
    args.runs = args.runs or (1 if args.max else 2)
    raise_fd_limit(args.sessions)
    import uvloop

    mode = "idle" if args.idle else "max" if args.max else args.shape
    if args.experiment:
        mode += " (experiment)"
    if args.cluster:
        mode += f" (Redis Cluster, {args.cluster_masters} masters + {args.cluster_masters} replicas)"
    if mode.startswith("store"):
        shape = Shape()
        load_text = (f"{args.sessions:,} sessions open, {args.sessions / shape.visit_s:.1f} arrivals/s, "
                     f"{args.sessions / shape.mean_gap_s:.0f} batches/s (gaps median {shape.gap_median_s:g} s, p90 "
                     f"{shape.gap_p90_s:g} s; {shape.batches:g} batches a visit)")
    else:
        load_text = f"{args.sessions:,} sessions x {args.rate:g} batches/s"
    print(f"{mode}: {load_text}, {args.batch} events a batch, {args.trigger_share:.0%} triggering; "
          f"{args.duration:g} s measured; {args.runs} run(s) each, interleaved", flush=True)
    try:
        results, shard_rows = uvloop.run(run(args))
    except asyncio.CancelledError:
        raise SystemExit("stopped (SIGTERM)") from None
    print(table(results, idle=args.idle, shard_rows=shard_rows))
    if args.json:
        import json

        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"mode": mode, "sessions": args.sessions, "rate": args.rate,
                                         "results": results}, indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()

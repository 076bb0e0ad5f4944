"""The Redis engine on Redis Cluster (issue 18): the same sessions, scripts and caps, over many masters.

What a batch, a claim or a feedback touches is in its visitor's hash slot
(kairos.engine.keys), so those scripts run unchanged on the master that serves
the slot. What differs is here:

- commands go to the master serving their key's slot, each master through an
  auto-pipeline of its own (ClusterPipe); a redirect (MOVED, ASK) or a cluster
  that is re-forming is retried by redis-py's cluster client, which follows
  redirects and refreshes its map of the slots;
- the timer queue is sharded over TIMER_SHARDS hash tags ({timers:k}), and the
  steps that wrote the queue and a session's timeline in one script are two
  calls: queue first, then timeline (see each method); so are the dashboard's
  list of live sessions ({live:k}) and the rows kept for training ({archive:k});
- pub/sub is sharded (SPUBLISH/SSUBSCRIBE): a message goes to the master of its
  channel's slot only, not to every node of the cluster;
- a master away (a failover) fails its own visitors' calls and nobody else's, and
  is logged as one outage (docs/scaling.md, "What a failover costs").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, Awaitable, Sequence
from urllib.parse import unquote, urlsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.crc import key_slot
from redis.exceptions import AskError, ClusterDownError, MovedError, RedisClusterException, RedisError, TryAgainError

from ..rules.delayed import Timer, armed_line
from ..session import SessionState, log_entry
from . import keys
from .autopipe import AutoPipeline, PipelineCalls
from .base import LOG_MAX, TIMER_LEASE_MS, Bus
from .outage import Outage
from .redis import TIMERS_TTL_S, RedisEngine, _pairs, _scored, _script, _stored

log = logging.getLogger("kairos.redis")

SCHEME = "redis+cluster"
# How long a sharded subscription waits before subscribing again at its channel's
# master, after the connection to the old one failed (a failover takes the cluster's
# node timeout, and seconds more to elect a replica: docs/scaling.md).
RESUBSCRIBE_S = 0.5
# A map of the slots refreshed at most this often when commands keep failing over.
REFRESH_EVERY_S = 0.5
# Connections per master of the cluster client (beside the pipelines' own): redis-py's
# cluster pool raises when they are all busy instead of waiting.
CLIENT_CONNECTIONS = 32


def is_cluster_url(url: str) -> bool:
    """Whether a --redis-url names a Redis Cluster (redis+cluster://host:port[,host:port...])."""
    return url.startswith(SCHEME + "://")


def startup_nodes(url: str) -> tuple[list[ClusterNode], dict[str, Any]]:
    """The nodes a cluster URL names, and its credentials: where the client learns the cluster's map."""
    parts = urlsplit(url)
    netloc = parts.netloc
    auth: dict[str, Any] = {}
    if "@" in netloc:
        userinfo, _, netloc = netloc.rpartition("@")
        user, _, password = userinfo.partition(":")
        auth = {"username": unquote(user) or None, "password": unquote(password) or None}
    nodes = []
    for hostport in filter(None, netloc.split(",")):
        host, _, port = hostport.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"{url!r}: expected {SCHEME}://host:port[,host:port...], got {hostport!r}")
        nodes.append(ClusterNode(host.strip("[]"), int(port)))
    if not nodes:
        raise ValueError(f"{url!r} names no node; expected {SCHEME}://host:port[,host:port...]")
    if parts.path not in ("", "/", "/0"):
        raise ValueError(f"{url!r}: Redis Cluster has database 0 only")
    return nodes, auth


def _key_of(args: Sequence[Any]) -> Any:
    # EVALSHA sha numkeys key...: the scripts' first key; every other command the engine
    # pipelines takes its key (or its channel, SPUBLISH) first.
    return args[3] if args[0] == "EVALSHA" else args[1]


# What a cluster answers while its map is changing: the command did not run, so it is
# sent again, by redis-py's cluster client (which follows the redirect).
_REDIRECTS = (MovedError, AskError, TryAgainError, ClusterDownError)


class ClusterPipe(PipelineCalls):
    """Auto-pipelining over a cluster: one AutoPipeline per master, each command to its slot's master.

    The interface of AutoPipeline (execute, post, evalsha), so the engine's calls are
    the same on one Redis and on a cluster.
    """

    def __init__(self, rc: RedisCluster, workers: int, outage: Outage, auth: dict[str, Any]) -> None:
        self.rc = rc
        self.workers = workers
        self.outage = outage
        self.auth = auth
        self._pipes: dict[str, AutoPipeline] = {}
        self._refreshing: asyncio.Task[None] | None = None
        self._refreshed_s = 0.0
        self._retries: set[asyncio.Task[None]] = set()
        self.timeout_s: float | None = None
        # Commands sent again because their slot had moved (or was moving): a count that
        # grows only while the cluster's map changes (a failover, a reshard).
        self.redirects = 0
        # Masters whose connection failed and that have not answered since. The outage
        # (logged once, engine.fault) ends when none is left: a healthy master answering
        # meanwhile does not end it (which logged ~1,500 unreachable/back pairs a failover).
        self._failing: set[str] = set()
        # One SCRIPT LOAD at a time for each script, however many calls met NOSCRIPT.
        self._loads: dict[str, asyncio.Task[str]] = {}

    @property
    def batches(self) -> int:
        return sum(p.batches for p in self._pipes.values())

    @property
    def commands(self) -> int:
        return sum(p.commands for p in self._pipes.values())

    def start(self) -> None:
        """Nothing to start: a master's pipeline starts with its first command."""

    async def close(self) -> None:
        for task in (self._refreshing, *self._retries):
            if task is not None:
                task.cancel()
        for pipe in self._pipes.values():
            await pipe.close()
            await pipe.r.aclose()
        self._pipes.clear()

    def _pipe_for(self, key: Any) -> tuple[str, AutoPipeline]:
        node = self.rc.nodes_manager.get_node_from_slot(key_slot(self.rc.encoder.encode(key)))
        pipe = self._pipes.get(node.name)
        if pipe is None:
            # An outage of its own, not the engine's: whether the cluster is back is decided here (_failing).
            pipe = AutoPipeline(aioredis.Redis(host=node.host, port=node.port, decode_responses=True, **self.auth),
                                workers=self.workers, outage=Outage())
            pipe.start()
            self._pipes[node.name] = pipe
        return node.name, pipe

    def execute(self, *args: Any, **options: Any) -> asyncio.Future[Any]:
        """Queue one command on its slot's master: a future of its reply (AutoPipeline.execute)."""
        fut = asyncio.get_running_loop().create_future()
        try:
            name, pipe = self._pipe_for(_key_of(args))
            first = pipe.execute(*args, **options)
        except (RedisClusterException, RedisError):  # no master known for the slot now: ask the cluster client
            self._retry(fut, args, options)
            return fut
        first.add_done_callback(lambda done: self._settle(done, fut, name, args, options))
        return fut

    def _settle(self, first: asyncio.Future[Any], fut: asyncio.Future[Any], name: str, args: tuple[Any, ...],
                options: dict[str, Any]) -> None:
        if fut.done():
            return
        if first.cancelled():
            fut.cancel()
            return
        exc = first.exception()
        if exc is None:
            if self._failing:
                self._failing.discard(name)
                self._refresh()  # is the master that failed replaced by now? (then the outage ends)
            self._maybe_back()  # (also ends one that a call outside the pipelines met)
            fut.set_result(first.result())
        elif isinstance(exc, _REDIRECTS):
            self.redirects += 1
            self._refresh()
            self._retry(fut, args, options)
        else:
            if isinstance(exc, (ConnectionError, OSError, RedisError)) and not isinstance(exc, aioredis.ResponseError):
                # The master is gone (a failover is under way): not sent again, as on one
                # Redis (it may have run), but the next commands learn the new map.
                self._failing.add(name)
                self._refresh()
            fut.set_exception(exc)

    def _retry(self, fut: asyncio.Future[Any], args: tuple[Any, ...], options: dict[str, Any]) -> None:
        async def again() -> None:
            try:
                reply = await self.rc.execute_command(*args, **options)
            except BaseException as exc:  # the caller hears of it, cancel included
                if not fut.done():
                    fut.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
            else:
                if not fut.done():
                    fut.set_result(reply)

        task = asyncio.create_task(again())
        self._retries.add(task)
        task.add_done_callback(self._retries.discard)

    def _refresh(self) -> None:
        """Read the cluster's map of slots again, in the background, at most every REFRESH_EVERY_S."""
        now = time.monotonic()
        if (self._refreshing is not None and not self._refreshing.done()) or now - self._refreshed_s < REFRESH_EVERY_S:
            return
        self._refreshed_s = now

        async def refresh() -> None:
            with contextlib.suppress(RedisError, RedisClusterException, OSError):
                await self.rc.nodes_manager.initialize()
                # A master that is no longer one (failed over, removed) keeps no pipeline:
                # its workers would wait on a dead address for good.
                masters = {node.name for node in self.rc.get_primaries()}
                for name in [n for n in self._pipes if n not in masters]:
                    pipe = self._pipes.pop(name)
                    await pipe.close()
                    await pipe.r.aclose()
                self._failing &= masters  # a master replaced is no longer waited for
                self._maybe_back()

        self._refreshing = asyncio.create_task(refresh())

    def _maybe_back(self) -> None:
        if not self._failing and self.outage.down and (line := self.outage.answered(time.monotonic())):
            log.warning(line)

    async def _load(self, script: Any) -> str:
        # A replica promoted since the scripts were loaded has none (Redis does not
        # replicate SCRIPT LOAD), and some scripts load on first use: loaded on every
        # master, once for all the calls that met NOSCRIPT together.
        load = self._loads.get(script.sha)
        if load is None or load.done():  # none in flight: this call loads it (a later failover loads it again)
            load = self._loads[script.sha] = asyncio.ensure_future(self.rc.script_load(script.script))
        return await asyncio.shield(load)


class _WaitingCluster(RedisCluster):
    """redis-py's cluster client, whose commands wait their turn rather than fail when its pool is full.

    Its pool raises MaxConnectionsError at once (one Redis's BlockingConnectionPool
    waits): a dashboard reading 300 timelines at once would see a Redis "outage". At
    most half the connections run single commands; the rest is left to pipelines.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._turns = asyncio.Semaphore(max(1, kwargs.get("max_connections", CLIENT_CONNECTIONS) // 2))

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        async with self._turns:
            return await super().execute_command(*args, **kwargs)


class RedisClusterEngine(RedisEngine):
    """The Redis engine on a Redis Cluster: --redis-url redis+cluster://host:port[,host:port...]."""

    # The live processes as last read (node, alive until ms, ...): what a claim of
    # timers passes in when their master is away.
    _nodes_seen: list[Any] | None = None

    def _connect(self, url: str, pool_size: int) -> tuple[Any, Any, int]:
        nodes, self._auth = startup_nodes(url)
        # The batches go through ClusterPipe's own connections; this client serves the rest
        # (the dashboard, forget, the counters). Its pool refuses a command when it is full
        # (MaxConnectionsError), where one Redis's pool waits: room for a burst of those.
        rc = _WaitingCluster(startup_nodes=nodes, decode_responses=True,
                             max_connections=max(pool_size, CLIENT_CONNECTIONS), **self._auth)
        return rc, None, 0

    def _pipeline(self, workers: int) -> Any:
        return ClusterPipe(self.r, workers=workers, outage=self.outage, auth=self._auth)

    async def _register(self) -> None:
        await self.r.initialize()
        self._arm_queue = self.r.register_script(_script("arm_queue.lua"))
        self._timer_lines = self.r.register_script(_script("timer_lines.lua"))
        self._drop_timer = self.r.register_script(_script("drop_timer.lua"))
        for script in (self._arm_queue, self._timer_lines, self._drop_timer):
            script.sha = await self.r.script_load(script.script)

    async def _is_cluster(self) -> bool:
        return True

    async def _close_clients(self) -> None:
        await self.r.aclose()

    # --- the dashboard's list of live sessions: TIMER_SHARDS lists ----------------
    # Written at every page load: one list would put every hello's ZADD on one master.

    def _live_key(self, sid: str) -> str:
        return keys.live(keys.timer_shard(sid))

    def _live_keys(self) -> list[str]:
        return [keys.live(shard) for shard in range(keys.TIMER_SHARDS)]

    # --- the rows kept for training: TIMER_SHARDS archives -----------------------
    # Written when each page load ends: one archive would put all of them on one master.

    def _archive_keys(self, sid: str) -> tuple[str, str]:
        return keys.archive(keys.timer_shard(sid))

    def _archives(self) -> list[tuple[str, str]]:
        return [keys.archive(shard) for shard in range(keys.TIMER_SHARDS)]

    # --- timers: TIMER_SHARDS queues ---------------------------------------------

    def _timer_queue(self, sid: str) -> tuple[str, ...]:
        return keys.timer_keys(keys.timer_shard(sid))

    async def arm_timers(self, timers) -> int | None:
        if not timers:
            return await self.next_due_ms()
        by_queue: dict[tuple[str, ...], list[Timer]] = {}
        for t in timers:
            by_queue.setdefault(self._timer_queue(t.sid), []).append(t)
        replies = await asyncio.gather(*(
            self._eval("arm_timers", self._arm_queue, list(queue),
                       [TIMERS_TTL_S, *(v for t in ts for v in (t.key, t.due_ms, t.payload()))])
            for queue, ts in by_queue.items()))
        # Then each session's timeline: the timer it supersedes, then the one armed.
        lines: dict[str, list[str]] = {}
        firsts = []
        for ts, (first, *olds) in zip(by_queue.values(), replies):
            firsts.append(int(float(first)))
            for t, old in zip(ts, olds):
                own = lines.setdefault(t.sid, [])
                if old:
                    was = Timer.from_payload(t.key, old)
                    own.append(log_entry("timer", t.armed_ms, rule=t.rule, outcome="replaced", due_ms=was.due_ms,
                                         late_ms=max(0, t.armed_ms - was.due_ms)))
                own.append(armed_line(t))
        await asyncio.gather(*(self._eval("timer_lines", self._timer_lines, [keys.session(sid), keys.log(sid)],
                                          [LOG_MAX, *own]) for sid, own in lines.items()))
        if any(t.due_ms in firsts for t in timers):
            # A new earliest timer in its shard: the other processes' loops may sleep past it.
            await self._publish(self.wake_channel, min(firsts))
        return min(firsts)  # no later than the earliest timer: what wakes this process's loop

    async def _each_shard(self, calls: Sequence[Awaitable[Any]]) -> list[Any]:
        """The replies of one call per shard; None for a shard whose master is away (a failover).

        One master away must not hold back the others' timers: a claim on the shards that
        answered has leased their timers already, and dropping them with the error left
        them to wait out their lease (30 s late, measured). Raises only if none answered.
        """
        replies = await asyncio.gather(*calls, return_exceptions=True)
        failed = [r for r in replies if isinstance(r, BaseException)]
        for exc in failed:
            if isinstance(exc, asyncio.CancelledError) or not self.fault(exc, refused=False):
                raise exc
        if failed and len(failed) == len(replies):
            raise failed[0]
        return [None if isinstance(r, BaseException) else r for r in replies]

    async def claim_due(self, now_ms: int, limit: int = 200, node: str = "",
                        lease_ms: int = TIMER_LEASE_MS) -> list[Timer]:
        # The claim cannot read the live nodes (another slot): they go in as arguments,
        # as last read if their master is away.
        try:
            nodes = await self.pipe.execute("ZRANGE", keys.NODES, 0, -1, "WITHSCORES")
            self._nodes_seen = [v for n, ms in nodes for v in (n, int(float(ms)))]
        except Exception as exc:
            if not self.fault(exc, refused=False) or self._nodes_seen is None:
                raise
        # A share of `limit` from each shard: a burst due at once is spread over the
        # processes (each claims a part, fires it, comes back for more) instead of going
        # whole to the first to look. What is left stays due for the next claim.
        share = max(1, -(-limit // keys.TIMER_SHARDS))
        flats = await self._each_shard([
            self._eval("claim_timers", self._claim_timers, list(keys.timer_keys(shard)),
                       [now_ms, share, node, lease_ms, TIMERS_TTL_S, *self._nodes_seen])
            for shard in range(keys.TIMER_SHARDS)])
        due = [Timer.from_payload(k, p) for flat in flats if flat for k, p in _pairs(flat).items()]
        return sorted(due, key=lambda t: t.due_ms)

    async def finish_timer(self, t: Timer, lines: Sequence[str], now_ms: int,
                           count: str = "") -> tuple[bool, SessionState | None]:
        # Off the queue first, then recorded on the session (drop_timer.lua says why).
        dropped = int(await self._eval("finish_timer", self._drop_timer, list(self._timer_queue(t.sid)),
                                       [t.key, t.payload()]))
        if dropped == 0:
            return False, None
        _, raw = await self._eval("finish_timer", self._finish_timer, [keys.session(t.sid), keys.log(t.sid)],
                                  [t.key, t.payload(), self.session_ttl_s, LOG_MAX, count, *lines], raw=True)
        h = _stored(raw)
        return True, SessionState.from_hash(t.sid, h) if h else None

    async def next_due_ms(self) -> int | None:
        firsts = await self._each_shard([self.pipe.execute("ZRANGE", keys.timer_keys(shard)[0], 0, 0, "WITHSCORES")
                                         for shard in range(keys.TIMER_SHARDS)])
        scores = [int(float(score)) for f in firsts if f for _, score in _scored(f)]
        return min(scores, default=None)

    async def pending_timers(self) -> int:
        counts = await self._each_shard([self.pipe.execute("ZCARD", keys.timer_keys(shard)[0])
                                         for shard in range(keys.TIMER_SHARDS)])
        return sum(int(c) for c in counts if c is not None)

    # --- sharded pub/sub -------------------------------------------------------------

    async def _publish(self, channel: str, message: Any) -> int:
        return int(await self.pipe.execute("SPUBLISH", channel, message))

    async def listen(self, node: str, bus: Bus) -> None:
        # One subscription per channel, each at its slot's master: a message on one
        # waits for no other (redis-py's ClusterPubSub reads its nodes in turn).
        channels = (self.node_channel(node), self.wake_channel, self.feed_channel, self.forgotten_channel)
        await asyncio.gather(*(self._listen_one(channel, bus) for channel in channels))

    async def _listen_one(self, channel: str, bus: Bus) -> None:
        while True:
            try:
                node = self.r.nodes_manager.get_node_from_slot(key_slot(channel.encode()))
                client = aioredis.Redis(host=node.host, port=node.port, decode_responses=True, **self._auth)
            except (RedisClusterException, RedisError) as exc:
                log.debug("no master for %s now: %s", channel, exc)
                await self._resubscribe_later()
                continue
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.ssubscribe(channel)
                while True:
                    msg = await pubsub.get_sharded_message(timeout=5.0)
                    if msg is not None:
                        await self.heard(msg["channel"], msg["data"], bus)
            except (RedisError, OSError) as exc:
                # The master went away, or its slot moved (MOVED on the subscription): the
                # map is read again and the channel subscribed at its master now. Not an
                # outage of its own: the commands' failures say it (and end it), once.
                log.debug("subscription to %s lost (%s); subscribing again at its master", channel, exc)
                await self._resubscribe_later()
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()
                with contextlib.suppress(RedisError, OSError):
                    await client.aclose()

    async def _resubscribe_later(self) -> None:
        await asyncio.sleep(RESUBSCRIBE_S)
        with contextlib.suppress(RedisError, RedisClusterException, OSError):
            await self.r.nodes_manager.initialize()

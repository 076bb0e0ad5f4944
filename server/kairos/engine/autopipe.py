"""Auto-pipelining: the commands many tasks issue at once go to Redis as one pipeline.

With a plain pool every command holds a connection for its round trip, and a
thousand sessions queue for a few dozen connections (redis-py issue 2228: pools
degrade badly under thousands of waiting tasks). Here a few workers each own one
connection; a worker takes every command queued since it last looked and sends
them in one write, one read loop. Idle, a command goes out on the next pass of
the event loop; busy, the batches grow instead of the queue of waiters.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Any, Awaitable

import redis.asyncio as aioredis
from hiredis import pack_command
from redis.client import NEVER_DECODE
from redis.exceptions import DataError, NoScriptError, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeout

from .outage import Outage

log = logging.getLogger("kairos.redis")

# Commands sent in one pipeline at most; a larger backlog is split so one
# reply stream does not hold every caller back.
MAX_BATCH = 256


class PipelineCalls:
    """What the engine calls on a pipeline beside `execute`: `post` and `evalsha`.

    Shared by AutoPipeline (one Redis) and engine.cluster.ClusterPipe (a master
    each); they differ in `execute` and in how a script Redis forgot is loaded (`_load`).
    """

    def execute(self, *args: Any, **options: Any) -> asyncio.Future[Any]:
        raise NotImplementedError

    async def _load(self, script: Any) -> str:
        """Load a script where it is not known; its sha."""
        raise NotImplementedError

    def post(self, *args: Any) -> None:
        """Queue a command nobody waits for (a statistic): it joins the next pipeline, and an
        error it meets is dropped (a Redis outage is logged by the calls that wait)."""
        self.execute(*args).add_done_callback(_dropped)

    def evalsha(self, script: Any, keys: list[str], args: list[Any], options: dict[str, Any] | None = None) -> Awaitable[Any]:
        """EVALSHA a registered script, loading it again if Redis forgot it (restart, SCRIPT FLUSH, a promoted replica).

        Queued now, like `execute`: what the caller queues next joins the same pipeline.
        """
        first = self.execute("EVALSHA", script.sha, len(keys), *keys, *args, **(options or {}))
        return self._reloading(first, script, keys, args, options or {})

    async def _reloading(self, first: asyncio.Future[Any], script: Any, keys: list[str], args: list[Any],
                         options: dict[str, Any]) -> Any:
        try:
            return await first
        except NoScriptError:
            script.sha = await self._load(script)
            return await self.execute("EVALSHA", script.sha, len(keys), *keys, *args, **options)


class AutoPipeline(PipelineCalls):
    def __init__(self, r: aioredis.Redis, workers: int = 4, outage: Outage | None = None) -> None:
        self.r = r
        self.outage = outage or Outage()
        self.workers = workers
        self._queue: deque[tuple[tuple[Any, ...], dict[str, Any], asyncio.Future[Any]]] = deque()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.batches = 0
        self.commands = 0
        self._closing = False
        self.timeout_s: float | None = None

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._work(), name=f"kairos-redis-{i}") for i in range(self.workers)]

    async def close(self) -> None:
        # A cancel alone is not enough: redis-py can swallow the CancelledError of a
        # worker cancelled mid-pipeline, which then waits for work forever and the
        # server never exits. The flag ends the loop whatever became of the cancel.
        self._closing = True
        self._wake.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        while self._queue:
            _, _, fut = self._queue.popleft()
            if not fut.done():
                fut.set_exception(ConnectionError("the Redis engine is closing"))

    def execute(self, *args: Any, **options: Any) -> asyncio.Future[Any]:
        """Queue one command for the next pipeline: a future of its reply (awaiting it raises its error).

        A future, not a coroutine: gathering several costs no task each.
        `options` are redis-py's for the command (NEVER_DECODE: its reply as bytes).
        """
        fut = asyncio.get_running_loop().create_future()
        self._queue.append((args, options, fut))
        self._wake.set()
        return fut

    async def _load(self, script: Any) -> str:
        return await self.r.script_load(script.script)

    def _connection(self) -> Any:
        # A connection of the worker's own, beside the pool: held for the worker's life,
        # it is never waited for, and the pool stays whole for the dashboard and pub/sub.
        pool = self.r.connection_pool
        conn = pool.connection_class(**pool.connection_kwargs)
        # One timeout for a whole batch (_send) instead of one per reply: redis-py enters an
        # asyncio timeout for every read, ~4 % of the server's CPU under load (py-spy).
        self.timeout_s = conn.socket_timeout
        conn.socket_timeout = None
        return conn

    async def _work(self) -> None:
        conn = self._connection()
        try:
            while not self._closing:
                await self._wake.wait()
                if not self._queue:
                    self._wake.clear()
                    continue
                batch = [self._queue.popleft() for _ in range(min(MAX_BATCH, len(self._queue)))]
                if not self._queue:
                    self._wake.clear()
                live = [item for item in batch if not item[2].done()]  # callers may have gone
                if live:
                    await self._send(conn, live)
        finally:
            await conn.disconnect(nowait=True)

    async def _send(self, conn: Any, live: list[tuple[tuple[Any, ...], dict[str, Any], asyncio.Future[Any]]]) -> None:
        """One write for every command, then their replies in order.

        Not redis-py's Pipeline: per batch it builds a pipeline object, takes a pool
        connection and wraps the call in its retry, and it encodes every argument in
        Python; that machinery was ~10 % of the server's CPU under load (py-spy under
        benchmarks/load.py). hiredis packs the commands, the connection reads the
        replies, and redis-py's own response callbacks shape them as its client would.
        """
        packed = []
        for item in live:
            try:
                packed.append(pack_command(item[0]))
            except TypeError as exc:  # an argument Redis cannot take fails its own caller, not the batch
                item[2].set_exception(DataError(str(exc)))
        live = [item for item in live if not item[2].done()]
        if not live:
            return
        self.batches += 1
        self.commands += len(live)
        callbacks = self.r.response_callbacks
        if conn.is_connected:
            # What the pool checks before lending a connection: one the server closed while
            # it idled (a restart) would take the write and fail the read, the batch lost.
            try:
                stale = await conn.can_read()
            except (ConnectionError, OSError, RedisError):
                stale = True
            if stale:
                await conn.disconnect(nowait=True)
        try:
            try:
                async with asyncio.timeout(self.timeout_s):  # the connection's socket_timeout, for the batch
                    await conn.send_packed_command(packed, check_health=False)
                    for args, options, fut in live:
                        try:
                            reply = await conn.read_response(disable_decoding=NEVER_DECODE in options)
                        except ResponseError as exc:  # the command's own error: the others' replies follow
                            if not fut.done():
                                fut.set_exception(exc)
                            continue
                        callback = callbacks.get(args[0])
                        if callback is not None:
                            reply = callback(reply, **{k: v for k, v in options.items() if k != NEVER_DECODE})
                        if not fut.done():
                            fut.set_result(reply)
            except TimeoutError:
                raise RedisTimeout(f"Redis did not answer {len(live)} commands within {self.timeout_s} s") from None
        except asyncio.CancelledError:
            await conn.disconnect(nowait=True)
            for _, _, fut in live:
                if not fut.done():
                    fut.set_exception(ConnectionError("the Redis engine is closing"))
            raise
        except Exception as exc:  # connection lost: every caller still waiting hears of it, the outage is logged once
            # A reply stream cut mid-way cannot be resumed: the next batch connects afresh.
            await conn.disconnect(nowait=True)
            for _, _, fut in live:
                if not fut.done():
                    fut.set_exception(exc)
            return
        if self.outage.down and (line := self.outage.answered(time.monotonic())):
            log.warning(line)


def _dropped(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()  # retrieved, so asyncio does not log it as never retrieved

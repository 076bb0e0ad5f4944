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
from collections import deque
from typing import Any

import time

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

from .outage import Outage

log = logging.getLogger("kairos.redis")

# Commands sent in one pipeline at most; a larger backlog is split so one
# reply stream does not hold every caller back.
MAX_BATCH = 256


class AutoPipeline:
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

    async def execute(self, *args: Any, **options: Any) -> Any:
        """Run one command as part of the next pipeline; its reply, or its error raised.

        `options` are redis-py's for the command (NEVER_DECODE: its reply as bytes).
        """
        fut = asyncio.get_running_loop().create_future()
        self._queue.append((args, options, fut))
        self._wake.set()
        return await fut

    async def evalsha(self, script: Any, keys: list[str], args: list[Any], options: dict[str, Any] | None = None) -> Any:
        """EVALSHA a registered script, loading it again if Redis forgot it (restart, SCRIPT FLUSH)."""
        try:
            return await self.execute("EVALSHA", script.sha, len(keys), *keys, *args, **(options or {}))
        except NoScriptError:
            script.sha = await self.r.script_load(script.script)
            return await self.execute("EVALSHA", script.sha, len(keys), *keys, *args, **(options or {}))

    async def _work(self) -> None:
        while not self._closing:
            await self._wake.wait()
            if not self._queue:
                self._wake.clear()
                continue
            batch = [self._queue.popleft() for _ in range(min(MAX_BATCH, len(self._queue)))]
            if not self._queue:
                self._wake.clear()
            live = [(args, options, fut) for args, options, fut in batch if not fut.done()]  # callers may have gone
            if not live:
                continue
            self.batches += 1
            self.commands += len(live)
            try:
                async with self.r.pipeline(transaction=False) as pipe:
                    for args, options, _ in live:
                        pipe.execute_command(*args, **options)
                    results = await pipe.execute(raise_on_error=False)
            except asyncio.CancelledError:
                for _, _, fut in live:
                    if not fut.done():
                        fut.set_exception(ConnectionError("the Redis engine is closing"))
                raise
            except Exception as exc:  # connection lost: every caller hears of it, the outage is logged once
                for _, _, fut in live:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            if self.outage.down and (line := self.outage.answered(time.monotonic())):
                log.warning(line)
            for (_, _, fut), result in zip(live, results):
                if fut.done():
                    continue
                if isinstance(result, Exception):
                    fut.set_exception(result)
                else:
                    fut.set_result(result)

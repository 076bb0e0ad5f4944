"""The auto-pipeline on a real Redis: what one caller gets wrong stays with that caller."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest
import redis.asyncio as aioredis
from redis.client import NEVER_DECODE
from redis.exceptions import DataError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeout

from kairos.engine.autopipe import AutoPipeline


async def _with_pipe(url: str, body) -> None:
    r = aioredis.Redis.from_url(url, decode_responses=True)
    pipe = AutoPipeline(r, workers=1)
    pipe.start()
    try:
        await body(pipe, r)
    finally:
        await pipe.close()
        await r.aclose()


def test_commands_issued_together_each_get_their_own_reply_in_their_own_shape(clean_redis: str) -> None:
    async def body(pipe: AutoPipeline, r: aioredis.Redis) -> None:
        await r.hset("h", mapping={"a": "1", "b": "2"})
        await r.set("bin", b"\x00\xff")
        # Issued in one pass of the loop, so they travel in one write.
        got = await asyncio.gather(
            pipe.execute("HGETALL", "h"), pipe.execute("GET", "bin", **{NEVER_DECODE: True}),
            pipe.execute("SET", "s", "x"), pipe.execute("EXISTS", "h"), pipe.execute("GET", "missing"))
        assert got == [{"a": "1", "b": "2"}, b"\x00\xff", True, 1, None]
        assert pipe.batches == 1

    asyncio.run(_with_pipe(clean_redis, body))


def test_a_command_redis_refuses_fails_alone(clean_redis: str) -> None:
    async def body(pipe: AutoPipeline, r: aioredis.Redis) -> None:
        await r.set("str", "v")
        got = await asyncio.gather(pipe.execute("SET", "k1", "1"), pipe.execute("HGET", "str", "f"),
                                   pipe.execute("INCR", "k1"), return_exceptions=True)
        assert got[0] is True and got[2] == 2
        assert isinstance(got[1], ResponseError) and "WRONGTYPE" in str(got[1])
        assert await pipe.execute("GET", "k1") == "2"  # the connection is still in step

    asyncio.run(_with_pipe(clean_redis, body))


def test_an_argument_redis_cannot_take_fails_its_caller_and_nobody_else(clean_redis: str) -> None:
    async def body(pipe: AutoPipeline, r: aioredis.Redis) -> None:
        got = await asyncio.gather(pipe.execute("SET", "a", "1"), pipe.execute("SET", "b", None),
                                   pipe.execute("SET", "c", "3"), return_exceptions=True)
        assert got[0] is True and got[2] is True
        assert isinstance(got[1], DataError)
        assert await r.mget("a", "b", "c") == ["1", None, "3"]

    asyncio.run(_with_pipe(clean_redis, body))


def test_a_connection_killed_fails_the_batch_in_flight_and_the_next_batch_reconnects(clean_redis: str) -> None:
    async def body(pipe: AutoPipeline, r: aioredis.Redis) -> None:
        assert await pipe.execute("SET", "k", "1") is True
        await r.client_kill_filter(_type="normal", skipme=True)
        # The worker's connection is gone: the first command after may fail (the write or its read),
        # the next ones are answered on a new connection.
        for _ in range(3):
            try:
                assert await pipe.execute("GET", "k") == "1"
                break
            except (ConnectionError, OSError, aioredis.ConnectionError):
                continue
        else:
            pytest.fail("the auto-pipeline never reconnected")

    asyncio.run(_with_pipe(clean_redis, body))


def test_the_first_command_after_redis_restarted_is_answered(own_redis) -> None:
    async def body(pipe: AutoPipeline, r: aioredis.Redis) -> None:
        assert await pipe.execute("SET", "k", "1") is True
        own_redis.kill()
        own_redis.start()  # no persistence: an empty Redis on the same port
        await asyncio.sleep(0.2)  # the old connection's end reaches the event loop
        # The worker's connection idled through the restart: the command goes on a new one.
        assert await pipe.execute("GET", "k") is None
        assert await pipe.execute("SET", "k", "2") is True

    asyncio.run(_with_pipe(own_redis.url, body))


def test_a_redis_that_stops_answering_fails_the_batch_within_the_socket_timeout(own_redis) -> None:
    pid = own_redis.proc.pid

    async def body(pipe: AutoPipeline, r: aioredis.Redis) -> None:
        try:
            assert await pipe.execute("SET", "k", "1") is True
            os.kill(pid, signal.SIGSTOP)  # alive, silent
            started = time.monotonic()
            with pytest.raises(RedisTimeout):
                await asyncio.gather(pipe.execute("GET", "k"), pipe.execute("GET", "k"))
            assert time.monotonic() - started < 3, "one timeout for the batch, not one per reply in a row"
            os.kill(pid, signal.SIGCONT)
            assert await pipe.execute("GET", "k") == "1", "the next batch goes on a new connection"
        finally:
            os.kill(pid, signal.SIGCONT)

    asyncio.run(_with_pipe(own_redis.url + "?socket_timeout=0.5", body))

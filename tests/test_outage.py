"""A Redis outage is logged as one outage, not one traceback per refused batch (issue 15, finding 5)."""

from __future__ import annotations

import asyncio
import secrets
import time

import msgpack
import pytest
import redis
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from kairos.engine import keys
from kairos.engine.outage import Outage, Tally, is_outage

from conftest import Server
from wsclient import Visitor, hello_frame

# --- the tracker, without I/O --------------------------------------------------------


def test_an_outage_is_one_line_when_it_starts_and_one_when_it_ends() -> None:
    o = Outage(report_every_s=10)
    assert o.answered(0.0) is None  # Redis answering is not news
    start = o.failed(1.0, "Connection refused")
    assert start and "Connection refused" in start
    assert all(o.failed(1.0 + i / 100, "Connection refused") is None for i in range(500))
    end = o.answered(4.5)
    assert end and "3.5 s" in end and "501 requests" in end
    assert o.answered(5.0) is None and not o.down


def test_a_long_outage_reports_a_count_at_most_every_period() -> None:
    o = Outage(report_every_s=10)
    lines = [o.failed(t / 10, "refused") for t in range(0, 600)]  # 60 s of failures, ten a second
    said = [line for line in lines if line]
    assert len(said) == 6  # the start, then one per 10 s
    assert "still unreachable after 10 s" in said[1] and "101 requests" in said[1]


def test_a_pubsub_loss_is_part_of_the_outage_but_no_refused_request() -> None:
    o = Outage()
    o.failed(0.0, "lost", refused=False)
    assert o.down and o.refused == 0


def test_sessions_lost_at_once_are_one_line_then_a_count() -> None:
    t = Tally("a session's state was lost", report_every_s=30)
    lines = [t.note(i / 100) for i in range(200)]  # 200 sessions find theirs gone within 2 s
    assert [line for line in lines if line] == [lines[0]]
    later = t.note(40.0)
    assert later and "200 more in the last 40 s" in later


def test_only_connection_errors_count_as_an_outage() -> None:
    assert is_outage(redis.exceptions.ConnectionError("Error 111 connecting"))
    assert is_outage(redis.exceptions.TimeoutError("timeout"))
    assert is_outage(ConnectionError("the Redis engine is closing"))
    assert not is_outage(redis.exceptions.ResponseError("ERR bad script"))
    assert not is_outage(KeyError("vid"))


# --- a real outage ------------------------------------------------------------------


async def _errors_until_quiet(v: Visitor, quiet_s: float) -> list[dict]:
    """The frames a visitor receives until the server says nothing for `quiet_s`."""
    frames = []
    try:
        while True:
            frames.append(msgpack.unpackb(await asyncio.wait_for(v.ws.recv(), quiet_s)))
    except asyncio.TimeoutError:
        return frames


async def test_a_redis_outage_under_streaming_sessions_is_a_few_log_lines_and_sessions_stream_after(own_redis):
    server = Server("redis", own_redis.url)
    try:
        visitors = await asyncio.gather(*(Visitor.arrive(server.ws_url) for _ in range(20)))
        streaming = True
        refused = without_seq = 0

        async def stream(v: Visitor) -> None:
            nonlocal refused, without_seq
            while streaming:
                await v.events({"e": "scroll", "pct": 50})
                try:
                    while True:  # drain what the server answered (server_error while Redis is away)
                        frame = msgpack.unpackb(await asyncio.wait_for(v.ws.recv(), 0.1))
                        if frame.get("code") == "server_error":
                            refused += 1
                            # The refused batch's seq, for the snippet to send it again (finding 8).
                            without_seq += not 1 <= frame.get("seq", 0) <= v.seq
                except asyncio.TimeoutError:
                    pass

        tasks = [asyncio.create_task(stream(v)) for v in visitors]
        await asyncio.sleep(0.5)
        before = server.output()
        own_redis.kill()
        await asyncio.sleep(1.0)
        # Page loads in the outage: each new socket is answered and closed for the snippet to retry.
        for _ in range(5):
            async with connect(server.ws_url, compression=None) as ws:
                await ws.send(msgpack.packb(hello_frame("v_" + secrets.token_hex(6))))
                answer = msgpack.unpackb(await asyncio.wait_for(ws.recv(), 5))
                assert answer["t"] == "error" and answer["code"] == "server_error", answer
                with pytest.raises(ConnectionClosed) as closed:
                    await asyncio.wait_for(ws.recv(), 5)
                assert closed.value.rcvd.code == 1011
        await asyncio.sleep(2.0)
        own_redis.start()
        # Streaming goes on until batches are taken again: a refusal-free round for every visitor.
        for _ in range(100):
            await asyncio.sleep(0.2)
            if "redis is back" in server.output():
                break
        await asyncio.sleep(0.5)
        streaming = False
        await asyncio.gather(*tasks)
        assert refused > 20, "the outage refused the batches sent while Redis was away"
        assert without_seq == 0, "every refused batch is answered with its seq"

        for v in visitors:
            await v.events({"e": "click", "tag": "a"})
        answers = await asyncio.gather(*(_errors_until_quiet(v, 0.5) for v in visitors))
        assert not [f for frames in answers for f in frames if f.get("t") == "error"]
        r = redis.Redis.from_url(own_redis.url)
        assert all(r.exists(keys.session(v.sid)) for v in visitors), "the batches after the outage were recorded"
        for v in visitors:
            try:
                await v.leave()
            except ConnectionClosed:
                pass

        during = server.output()[len(before):]
        assert "Traceback" not in during
        about = [line for line in during.splitlines()
                 if any(w in line for w in ("redis", "Redis", "server_error", "fault", "ERROR", "WARNING"))]
        assert 2 <= len(about) <= 5, "\n".join(about)
        assert any("redis unreachable" in line for line in about)
        assert any("redis is back" in line and "requests were refused" in line for line in about)
    finally:
        server.stop()

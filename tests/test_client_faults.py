"""Faults a client can cause, against a real `kairos serve`: each costs one log line and
its own connection, never a traceback, and every other session carries on; and what a
restart (SIGTERM) tells the sockets open at the time."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import struct
import subprocess
from pathlib import Path

import httpx
import msgpack
import pytest

from kairos import wire
from wsclient import Visitor

ROOT = Path(__file__).resolve().parents[1]
INVALID_UTF8 = "client sent a text message of invalid UTF-8"
CUT_BODY = "client went away before the end of its request body"


async def assert_unaffected(visitor: Visitor) -> None:
    """A healthy session still gets its nudge: exit intent on a product page -> offer."""
    await visitor.events({"e": "exit_intent"})
    show = await visitor.expect("show")
    assert show["rule"] == "exit-offer"


async def raw_websocket(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A websocket handshake by hand, so the test can send frames no client library would."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write((f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 101"), head
    return reader, writer


def masked_frame(opcode: int, payload: bytes) -> bytes:
    mask = os.urandom(4)
    assert len(payload) < 126
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def close_code(reader: asyncio.StreamReader) -> int:
    """The code of the close frame the server sends (an unmasked server frame)."""
    opcode_byte, length = await asyncio.wait_for(reader.readexactly(2), 5)
    assert opcode_byte & 0x0F == 0x8, f"expected a close frame, got opcode {opcode_byte & 0x0F}"
    payload = await reader.readexactly(length & 0x7F)
    return struct.unpack("!H", payload[:2])[0]


def lines_with(output: str, text: str) -> list[str]:
    return [line for line in output.splitlines() if text in line]


async def test_a_text_message_of_invalid_utf8_is_one_log_line_and_closes_1007(serve):
    server = serve("memory")
    bystander = await Visitor.arrive(server.ws_url)
    reader, writer = await raw_websocket(server.port)
    writer.write(masked_frame(0x1, b"\xff\xfe\xfd"))
    assert await close_code(reader) == wire.CLOSE_BAD_UTF8
    writer.close()
    await assert_unaffected(bystander)
    # A new session is welcomed too.
    await assert_unaffected(await Visitor.arrive(server.ws_url))
    output = server.output()
    assert "Traceback" not in output, output
    assert len(lines_with(output, INVALID_UTF8)) == 1, output


@pytest.mark.parametrize("framing", [
    b"Content-Length: 1000\r\n\r\n" + msgpack.packb({"v": 1, "t": "events"}),
    b"Transfer-Encoding: chunked\r\n\r\na\r\n" + b"\x85" * 10 + b"\r\n",
], ids=["content_length", "chunked"])
async def test_a_beacon_cut_off_midway_is_one_log_line(serve, framing):
    server = serve("memory")
    bystander = await Visitor.arrive(server.ws_url)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"POST /b HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n" + framing)
    await writer.drain()
    await asyncio.sleep(0.2)  # the server is waiting for the rest of the body
    writer.close()
    for _ in range(50):  # the line is written when the server sees the client gone
        if lines_with(server.output(), CUT_BODY):
            break
        await asyncio.sleep(0.1)
    await assert_unaffected(bystander)
    # A whole beacon still gets its answer.
    whole = msgpack.packb({"v": 1, "t": "events", "site": "demo", "vid": bystander.vid, "sid": bystander.sid,
                           "seq": 99, "ev": [{"e": "dwell", "ts": 1, "ms": 100}]})
    async with httpx.AsyncClient() as client:
        assert (await client.post(f"{server.base}/b", content=whole)).status_code == 204
    output = server.output()
    assert "Traceback" not in output, output
    assert lines_with(output, CUT_BODY) == [lines_with(output, CUT_BODY)[0]], output
    assert "POST /b" in lines_with(output, CUT_BODY)[0]


async def test_sigterm_closes_every_open_socket_with_1012_which_the_snippet_reconnects_after(serve):
    server = serve("memory")
    visitors = [await Visitor.arrive(server.ws_url) for _ in range(3)]
    server.proc.send_signal(signal.SIGTERM)
    codes = await asyncio.gather(*(v.closed_with() for v in visitors))
    assert codes == [wire.CLOSE_RESTART] * 3
    server.proc.wait(10)  # uvicorn exits by the signal it got (-15), after closing them
    assert "Traceback" not in server.output()
    # The snippet treats only its TERMINAL codes as final: after 1012 it comes back.
    ask = (f"import('./client-js/src/connection.js').then(m => process.stdout.write("
           f"JSON.stringify([{wire.CLOSE_RESTART}, 1000].map(m.terminal))))")
    answer = subprocess.run(["node", "--input-type=module", "-e", ask], cwd=ROOT, capture_output=True, text=True, check=True)
    assert json.loads(answer.stdout) == [False, True]


async def test_a_frame_that_breaks_the_websocket_protocol_closes_1002_without_a_traceback(serve):
    server = serve("memory")
    bystander = await Visitor.arrive(server.ws_url)
    reader, writer = await raw_websocket(server.port)
    writer.write(bytes([0x82, 3]) + b"abc")  # a client's frame must be masked (RFC 6455 §5.1)
    assert await close_code(reader) == wire.CLOSE_PROTOCOL
    writer.close()
    await assert_unaffected(bystander)
    assert "Traceback" not in server.output()


async def test_an_unknown_type_of_10_kb_is_repeated_in_a_few_dozen_characters(serve):
    server = serve("memory")
    v = await Visitor.arrive(server.ws_url)
    await v.send({"v": 1, "t": "x" * 10_000})
    err = await v.expect("error")
    assert err["code"] == "unknown_type" and len(err["msg"]) < 120, err
    await v.events({"e": "x" * 10_000})
    err = await v.expect("error")
    assert err["code"] == "unknown_event" and len(err["msg"]) < 120, err
    await assert_unaffected(v)
    refusals = lines_with(server.output(), "code=unknown_")
    assert len(refusals) == 2 and all(len(line) < 300 for line in refusals), refusals

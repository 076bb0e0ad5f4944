"""Clients that stop reading are let go, and what they held is freed (issue 15, finding 2).

A real `kairos serve` on Redis pushes to 60 clients that stopped reading: 40
visitor sockets whose every batch earns a hide and a ~4 KB show, and 20
dashboard feeds while those sessions stream. Each is a raw socket with a small
receive buffer that speaks just enough websocket to say hello (or to open the
feed), then never reads again; a few read once the server says it let them go,
and must find their frames and then a 1013 close. Readers beside them are left
alone. The figures (RSS before, during, after; what the kernel held) are
printed for the notes; no wall-clock threshold, only deadlines for conditions.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import re
import secrets
import socket
import struct
import subprocess
import time
from pathlib import Path

import msgpack
from websockets.asyncio.client import connect

from kairos import wire
from kairos.push import Connection, Limits
from wsclient import Visitor, hello_frame

SEND_TIMEOUT_S = 2
# Long enough that a client told it was released reads its close before the abort.
CLOSE_GRACE_S = 8
VISITORS, DASHBOARDS, LATE_READERS = 40, 20, 5

RULES = """\
version: 1
page_types:
  product: /demo/products/*
rules:
  - id: every-click
    when: click
    then:
      show: bar
      template: bar.html
      until: [scroll]
      params:
        message: "{message}"
    limit:
      per_session: null
"""


def rss_kb(pid: int) -> int:
    return int(re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{pid}/status").read_text()).group(1))


def server_sockets(port: int) -> dict[int, tuple[str, int]]:
    """The server's connected sockets by the client's port: (state, bytes in the send queue)."""
    out = subprocess.run(["ss", "-tnH", "state", "all", f"sport = :{port}"], capture_output=True, text=True,
                         check=True).stdout
    found = {}
    for line in out.splitlines():
        state, _recv_q, send_q, _local, peer = line.split()[:5]
        if state != "LISTEN":
            found[int(peer.rsplit(":", 1)[1])] = (state, int(send_q))
    return found


def kernel_kb(port: int) -> int:
    """What the kernel holds queued to send on the server's sockets on `port` (ss -m: skmem w), in kB."""
    out = subprocess.run(["ss", "-tnmH", "state", "all", f"sport = :{port}"], capture_output=True, text=True,
                         check=True).stdout
    return sum(int(w) for w in re.findall(r"skmem:\(.*?,w(\d+),", out)) // 1024


# --- the queue's bound, without a server ----------------------------------------------------


class StalledPage:
    """What Connection sends through (a Starlette WebSocket's sends), for a page that reads nothing until told."""

    def __init__(self) -> None:
        self.scope: dict = {}
        self.reading = asyncio.Event()
        self.sent: list[bytes | str] = []
        self.closed_with: int | None = None

    async def send_bytes(self, data: bytes) -> None:
        await self.reading.wait()
        self.sent.append(data)

    send_text = send_bytes

    async def close(self, code: int = 1000) -> None:
        self.closed_with = code


async def test_a_client_that_falls_further_behind_than_the_bound_in_bytes_is_released_with_1013(caplog):
    page = StalledPage()
    conn = Connection(page, Limits(queue_bytes=10_000, sndbuf_bytes=4096, high_water_bytes=4096))  # type: ignore[arg-type]
    conn.sid = "s_test"
    frame = b"x" * 4000
    # The first is on its way (the page does not read); 8,000 bytes wait behind it, within the bound.
    assert [conn.send(frame) for _ in range(3)] == [True, True, True]
    assert not conn.send(frame), "12,000 bytes behind the first: past the bound"
    await asyncio.sleep(0)
    assert conn.closing and page.closed_with == wire.CLOSE_TRY_AGAIN
    assert not conn.send(b"y"), "nothing more is queued for a client let go"
    assert "released slow client sid=s_test: 12,000 bytes unsent, queue full (10,000 bytes); closed 1013" in caplog.text
    await conn.finish()


async def test_a_frame_larger_than_the_bound_still_goes_and_a_reader_is_never_released():
    page = StalledPage()
    conn = Connection(page, Limits(queue_bytes=10_000, sndbuf_bytes=4096, high_water_bytes=4096))  # type: ignore[arg-type]
    snapshot = "s" * 50_000
    assert conn.send(snapshot), "a dashboard's snapshot is bigger than the bound and goes alone"
    assert conn.send("r" * 9_000), "what came while it was read waits behind it"
    page.reading.set()
    await asyncio.sleep(0)
    for i in range(100):  # a page that reads keeps its queue short, whatever goes through it
        assert conn.send(b"%d" % i * 3000)
        await asyncio.sleep(0)
    conn.close(wire.CLOSE_NORMAL)
    await conn.finish()
    assert page.sent[:2] == [snapshot, "r" * 9_000] and len(page.sent) == 102
    assert page.closed_with == wire.CLOSE_NORMAL


# --- a real server -------------------------------------------------------------------------------


class RawClient:
    """A websocket client on a plain socket: it reads only when told to, so it can stop reading altogether."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.port = sock.getsockname()[1]
        self.buf = b""
        self.sid: str | None = None

    @classmethod
    async def open(cls, port: int, path: str, headers: dict[str, str] | None = None) -> "RawClient":
        sock = socket.socket()
        # A small receive window: what a stalled client does not read stays on the server's side.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.sock_connect(sock, ("127.0.0.1", port))
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        key = base64.b64encode(os.urandom(16)).decode()
        await loop.sock_sendall(sock, (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n").encode())
        client = cls(sock)
        while b"\r\n\r\n" not in client.buf:
            client.buf += await client._read()
        head, client.buf = client.buf.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head
        return client

    async def _read(self) -> bytes:
        data = await asyncio.wait_for(asyncio.get_running_loop().sock_recv(self.sock, 65536), 10)
        if not data:
            raise ConnectionError("EOF")
        return data

    async def _need(self, n: int) -> bytes:
        while len(self.buf) < n:
            self.buf += await self._read()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    async def frame(self) -> tuple[int, bytes]:
        """The next frame from the server: opcode and payload."""
        b0, b1 = await self._need(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", await self._need(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", await self._need(8))[0]
        return b0 & 0x0F, await self._need(n)

    async def send(self, payload: bytes) -> None:
        mask = os.urandom(4)
        n = len(payload)
        head = bytes([0x82]) + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack("!H", n))
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        await asyncio.get_running_loop().sock_sendall(self.sock, head + mask + masked)

    async def close_code(self) -> int | None:
        """Read on until the server's close frame; its code (None: the connection ended without one)."""
        try:
            while True:
                opcode, payload = await self.frame()
                if opcode == 0x8:
                    return struct.unpack("!H", payload[:2])[0]
        except (ConnectionError, OSError):
            return None


async def stalled_visitor(port: int, stop: asyncio.Event) -> RawClient:
    """A visitor that says hello, reads its welcome, then sends batches that earn pushes and reads nothing."""
    client = await RawClient.open(port, "/ws")
    await client.send(msgpack.packb(hello_frame("v_" + secrets.token_hex(6))))
    opcode, payload = await client.frame()
    client.sid = msgpack.unpackb(payload)["sid"]

    async def stream() -> None:
        seq = 0
        while not stop.is_set():
            seq += 1
            ts = int(time.time() * 1000)
            try:
                await client.send(msgpack.packb({"v": 1, "t": "events", "seq": seq, "ev": [
                    {"e": "scroll", "ts": ts, "pct": seq % 100}, {"e": "click", "ts": ts, "tag": "a", "k": "browse"}]}))
            except OSError:
                return  # released and aborted
            await asyncio.sleep(0.2)

    client.task = asyncio.ensure_future(stream())  # type: ignore[attr-defined]
    return client


async def reading_dashboard(feed_url: str, auth: dict[str, str], stop: asyncio.Event, messages: list[int]) -> None:
    """A dashboard feed read as it comes, until `stop`."""
    async with connect(feed_url, additional_headers=auth, max_size=None) as feed:
        while not stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(feed.recv(), 0.5)
                messages[0] += 1


async def reading_visitor(ws_url: str, stop: asyncio.Event, shows: list[int], arrived: list[int] | None = None) -> None:
    """A visitor that streams the same batches and reads everything: it must never be let go."""
    v = await Visitor.arrive(ws_url)
    if arrived is not None:
        arrived[0] += 1

    async def read() -> None:
        async for frame in v.ws:
            if msgpack.unpackb(frame)["t"] == "show":
                shows[0] += 1

    reader = asyncio.ensure_future(read())
    while not stop.is_set():
        await v.events({"e": "scroll", "pct": 50}, {"e": "click", "tag": "a", "k": "browse"})
        await asyncio.sleep(0.5)
    await v.leave()
    await reader


def released(output: str) -> dict[str, str]:
    """Who the server let go, as its log says: sid (or "dashboard") -> the line."""
    return {m.group(1): m.group(0) for m in re.finditer(r"released slow client (?:sid=)?(\S+):.*", output)}


async def test_clients_that_stop_reading_are_closed_1013_and_their_memory_freed(serve, tmp_path, monkeypatch):
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES.format(message="A word from the shop. " * 180))  # a show frame of ~4.4 KB
    monkeypatch.setenv("KAIROS_CLOSE_GRACE_S", str(CLOSE_GRACE_S))
    server = serve("redis", rules=rules, extra=["--send-timeout", str(SEND_TIMEOUT_S)])
    pid = server.proc.pid
    feed_url = server.base.replace("http://", "ws://") + "/dashboard/feed"
    stop, shows, feed_messages = asyncio.Event(), [0], [0]
    # Readers that stay throughout: a dashboard and visitors whose every batch earns a show.
    readers = [asyncio.ensure_future(reading_visitor(server.ws_url, stop, shows)) for _ in range(10)]
    readers.append(asyncio.ensure_future(reading_dashboard(feed_url, server.auth, stop, feed_messages)))
    # As many clients that read come and go first, the dashboards after the visitors as later:
    # what any 60 clients leave in the allocator's pools (~8 MB on a fresh server, whether they
    # read or not; a dashboard's snapshot of the sessions is the most of it) is in "before".
    warm_stop, arrived = asyncio.Event(), [0]
    warm = [asyncio.ensure_future(reading_visitor(server.ws_url, warm_stop, [0], arrived)) for _ in range(VISITORS)]
    while arrived[0] < VISITORS:
        await asyncio.sleep(0.05)
    warm += [asyncio.ensure_future(reading_dashboard(feed_url, server.auth, warm_stop, [0])) for _ in range(DASHBOARDS)]
    await asyncio.sleep(4)
    warm_stop.set()
    await asyncio.gather(*warm)
    await asyncio.sleep(2)
    before = rss_kb(pid)

    dashboards = [await RawClient.open(server.port, "/dashboard/feed", server.auth) for _ in range(DASHBOARDS)]
    visitors = [await stalled_visitor(server.port, stop) for _ in range(VISITORS)]
    stalled = visitors + dashboards
    late = visitors[:LATE_READERS]

    async def read_once_released(client: RawClient) -> int | None:
        deadline = time.monotonic() + 60
        while client.sid not in released(server.output()):
            assert time.monotonic() < deadline, f"sid={client.sid} was never released"
            await asyncio.sleep(0.05)
        return await client.close_code()

    late_codes = asyncio.gather(*(read_once_released(c) for c in late))

    # Every stalled client released: a log line each, and its socket gone from the kernel.
    during, kernel_during = rss_kb(pid), kernel_kb(server.port)
    deadline = time.monotonic() + 90
    while True:
        out = server.output()
        sockets = server_sockets(server.port)
        left = [c for c in stalled if c.port in sockets]
        if not left or time.monotonic() > deadline:
            break
        during = max(during, rss_kb(pid))
        kernel_during = max(kernel_during, kernel_kb(server.port))
        await asyncio.sleep(0.2)
    assert not left, f"{len(left)} of {len(stalled)} stalled clients still held: {[sockets[c.port] for c in left]}"
    lines = released(out)
    assert {c.sid for c in visitors} <= set(lines), "a line for each visitor let go"
    assert out.count("released slow client dashboard:") == DASHBOARDS
    assert all(line.endswith("closed 1013") for line in lines.values()), lines
    assert "Traceback" not in out
    assert await late_codes == [1013] * LATE_READERS, "a client that reads again finds its frames, then 1013"

    await asyncio.sleep(2)
    after = rss_kb(pid)
    shows_before, feed_before = shows[0], feed_messages[0]
    await asyncio.sleep(2)
    assert shows[0] > shows_before and feed_messages[0] > feed_before, "the readers carry on"
    print(f"\nserver RSS before {before} kB, during {during} kB, after {after} kB; the kernel held at most "
          f"{kernel_during} kB queued on its sockets; e.g.\n" + "\n".join(list(lines.values())[:2]))
    assert abs(after - before) <= 0.10 * before, (before, during, after)
    stop.set()
    await asyncio.gather(*readers)
    samples = [server.metric("kairos_slow_clients_released_total", why=why) for why in ("queue_full", "send_timeout")]
    assert sum(samples) == VISITORS + DASHBOARDS, samples
    for c in stalled:
        c.sock.close()

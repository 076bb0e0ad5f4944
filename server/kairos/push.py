"""Pushing frames to the sockets this process holds, and letting go of clients too slow to read them.

Each connection has one writer task fed by a queue bounded in bytes, so a slow
or stalled browser never blocks the handler of another (websockets' broadcast
guide: no backpressure across clients; drop the slow one). A client is too
slow when a frame would take its queue past the bound, or when a frame waits
longer than the send timeout for the socket to take it. It is then released:
its queue dropped, a 1013 close frame written behind what it has not read yet,
and its socket aborted a grace later, which frees what the process and the
kernel hold for it. The snippet reconnects after 1013 with backoff; a
dashboard reconnects to a fresh snapshot.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import socket
import struct
import weakref
from collections import deque
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from starlette.websockets import WebSocket

from . import wire

log = logging.getLogger("kairos.push")

# Where the ASGI scope of a websocket carries its Socket (with_sockets).
SOCKET = "kairos.socket"
_CLOSE = object()
# After a release, the freed buffers go back to the system this much later (once
# for all the clients let go meanwhile): the endpoint's tasks end first.
RETURN_MEMORY_AFTER_S = 1.0


@dataclass(frozen=True, slots=True)
class Limits:
    """How much one client may hold: frames queued here, and the socket's own buffers."""

    queue_bytes: int  # frames waiting behind the one on its way to the socket (which may be larger)
    sndbuf_bytes: int  # SO_SNDBUF: Linux doubles it for its bookkeeping, and stops auto-tuning it
    high_water_bytes: int  # the transport's buffer above which a send waits for the socket to drain


# A visitor's frames are small MessagePack: a show frame with its rendered HTML
# and CSS is ~3.2 KB with the demo's templates, most others under 300 B, and a
# batch earns at most a hide and a show. 64 KiB is 20 shows; the kernel's
# 16 KiB (32 KiB once doubled) still sends a show in one round trip. A stalled
# visitor holds at most ~130 KiB until it is released, where Linux's
# auto-tuning let the kernel alone hold ~2.8 MB each (issue 15).
VISITOR = Limits(queue_bytes=64 * 1024, sndbuf_bytes=16 * 1024, high_water_bytes=16 * 1024)


class Socket:
    """The TCP socket under one websocket, reached past ASGI to bound it and to let a slow client go.

    ASGI cannot release a client that stopped reading: uvicorn's send waits
    while the transport's buffer is above its high-water mark (for ever, for
    such a client) and a close is a send too; uvicorn's close then calls
    transport.close(), which waits for the buffer to drain. So this holds
    uvicorn's websockets-sansio protocol (uvicorn 0.55: its `transport`, `conn`
    (websockets' ServerProtocol), `close_sent`, `close_timer`, `queue`,
    `read_paused`, `disconnected`) and does what its own close does, without
    the wait. Only `with_sockets` makes one, for that protocol alone. It also
    writes a frame at once when nothing waits before it (`write_now`: its
    `writable`, `handshake_complete` and `initial_response` say uvicorn's send
    would not wait), sparing a push a writer task and a turn of the loop.
    """

    __slots__ = ("_proto", "send_timeout_s", "grace_s", "_released")

    def __init__(self, proto: Any, send_timeout_s: float, grace_s: float, released: Callable[[str], None]) -> None:
        self._proto = proto
        self.send_timeout_s = send_timeout_s
        self.grace_s = grace_s
        self._released = released

    def tune(self, limits: Limits) -> None:
        """Keep the kernel's and the transport's buffers for this socket small."""
        transport = self._proto.transport
        try:
            transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, limits.sndbuf_bytes)
            transport.set_write_buffer_limits(high=limits.high_water_bytes, low=limits.high_water_bytes // 4)
        except (OSError, AttributeError, RuntimeError):  # the client is gone already (uvloop: RuntimeError)
            pass

    def write_now(self, frame: bytes | str) -> bool:
        """Write a frame to the transport at once, as uvicorn's send does when it need not wait;
        False (nothing written) when it would wait or refuse: the transport's buffer is over its
        high-water mark, the handshake is not done, a close went, or the client is gone."""
        proto = self._proto
        writable = getattr(proto, "writable", None)
        if (writable is None or not writable.is_set() or proto.disconnected or proto.close_sent
                or not getattr(proto, "handshake_complete", False) or getattr(proto, "initial_response", 0) is not None
                or proto.transport.is_closing()):
            return False
        if isinstance(frame, str):
            proto.conn.send_text(frame.encode())
        else:
            proto.conn.send_binary(frame)
        proto.transport.write(b"".join(proto.conn.data_to_send()))
        return True

    def unsent(self) -> int:
        """Bytes written to the transport that the kernel has not taken yet."""
        return self._proto.transport.get_write_buffer_size()

    def release(self, code: int, why: str) -> None:
        """Close with `code` behind what the client has not read, and abort the socket a grace later.

        A client that reads within the grace gets its frames, then the close;
        its answer closes the socket at once. `why` is counted in /metrics.
        """
        proto, transport = self._proto, self._proto.transport
        self._released(why)
        if proto.disconnected:
            return
        if not proto.close_sent and not transport.is_closing():
            proto.conn.send_close(code, "too slow to read")
            transport.write(b"".join(proto.conn.data_to_send()))
            proto.close_sent = True
            # As uvicorn's close: the endpoint hears a disconnect, and reading goes on
            # so that the client's answer to the close is heard.
            proto.queue.put_nowait({"type": "websocket.disconnect", "code": code})
            if proto.read_paused:
                proto.read_paused = False
                transport.resume_reading()
        if proto.close_timer is not None:
            proto.close_timer.cancel()
        # The protocol cancels this timer when the client answers the close, or
        # when the connection is lost; else it fires and the socket goes.
        proto.close_timer = asyncio.get_running_loop().call_later(self.grace_s, self.abort)

    def let_go(self) -> None:
        """The endpoint is done with the socket: abort it a grace from now if it is still open.

        uvicorn's close waits for the transport's buffer to drain, which a
        client that stopped reading never lets happen.
        """
        if self._proto.disconnected:
            self._unlink()
        else:
            asyncio.get_running_loop().call_later(self.grace_s, self.abort)

    def abort(self) -> None:
        """Drop the connection now, freeing its buffers, the kernel's included."""
        proto = self._proto
        if proto.disconnected:
            self._unlink()
            return
        try:
            # Linger 0: close() resets the connection and frees its send buffer at
            # once. Without it the kernel keeps an orphan socket trying to deliver
            # what the client will not read, for minutes (tcp_orphan_retries).
            proto.transport.get_extra_info("socket").setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except (OSError, AttributeError, RuntimeError):
            pass
        proto.transport.abort()
        # After the connection_lost that abort() schedules.
        asyncio.get_running_loop().call_soon(self._unlink)
        _return_memory_soon()

    def _unlink(self) -> None:
        """Once the connection is lost, end websockets' frame parser: free the protocol without the collector.

        The parser is a generator over the protocol's own methods (websockets'
        Protocol.parse), a reference cycle that only a full collection frees,
        and never once kairos.gcpolicy has frozen it with the open connection:
        10 objects and the read buffer of every closed socket stayed for good.
        Nothing is fed to the parser after connection_lost.
        """
        if self._proto.disconnected:
            parser = getattr(getattr(self._proto, "conn", None), "parser", None)
            if parser is not None:
                parser.close()


def _find_malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim
    except (OSError, AttributeError, TypeError):  # not glibc (musl has none): free() is what there is
        return None


_malloc_trim = _find_malloc_trim()
# The loop a trim is waiting on, if any: one trim for every client let go meanwhile.
_trim_pending: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()


def _return_memory_soon() -> None:
    """Hand the memory freed by released clients back to the system, a moment after their tasks end.

    glibc keeps what Python frees for reuse, and a stalled client's buffers
    (tens of KB apiece, freed long after the objects around them) leave holes
    in the heap it does not give back by itself: 60 clients let go left ~5 MB
    more RSS without this. malloc_trim(0) returns the free pages inside the heap
    too (glibc >= 2.8). It holds the loop under 1 ms when there is little to
    return, ~9 ms to return 100 MB of a fragmented heap: so once per burst of
    releases, not after every connection.
    """
    loop = asyncio.get_running_loop()
    if _malloc_trim is None or loop in _trim_pending:
        return

    def trim() -> None:
        _trim_pending.discard(loop)
        _malloc_trim(0)

    _trim_pending.add(loop)
    loop.call_later(RETURN_MEMORY_AFTER_S, trim)


def with_sockets(app: Callable[..., Awaitable[None]], send_timeout_s: float, grace_s: float,
                 released: Callable[[str], None]) -> Callable[..., Awaitable[None]]:
    """`app`, whose websockets carry their Socket in the scope (`SOCKET`) under uvicorn's websockets-sansio.

    uvicorn passes its protocol's bound `send` to the app; whatever wraps it
    later (Starlette's exception handling, the staff guard) hides it, so this
    must be the app uvicorn is given. Under any other server (Starlette's
    TestClient, another websocket implementation) a websocket has no Socket:
    its queue is still bounded, but a client too slow is only sent a close.
    """
    try:
        from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
    except ImportError:  # pragma: no cover - uvicorn without it
        return app

    async def app_with_sockets(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            proto = getattr(send, "__self__", None)
            if isinstance(proto, WebSocketsSansIOProtocol):
                scope = {**scope, SOCKET: Socket(proto, send_timeout_s, grace_s, released)}
        await app(scope, receive, send)

    return app_with_sockets


def http_protocol() -> Any:
    """uvicorn's httptools protocol, which lets go of its parser once it has upgraded a connection to a websocket.

    The parser's callbacks are the protocol's bound methods: a reference cycle
    that uvicorn leaves behind at every upgrade (the transport then belongs to
    the websocket protocol). Only a full collection frees it, and never once
    kairos.gcpolicy has frozen it: whether one came first depended on how much
    else each connection allocated (tests/test_gc.py). Without the parser the
    old protocol is freed at once by reference counting.
    """
    try:
        import httptools  # noqa: F401
    except ImportError:  # pragma: no cover - uvicorn without httptools
        return "httptools"
    # Named by import path: a worker of `--workers` is spawned with its config pickled.
    return "kairos.upgrading:UpgradingHttpToolsProtocol"


class Connection:
    """One browser's websocket, as seen by everything that wants to send to it.

    A writer task runs only while frames wait: it starts with the first frame
    queued and ends once the queue is empty. An idle connection (most of a
    store's, most of the time) holds no task, no coroutine frames, no event and
    no queue, only this object (issue 16: memory per idle session).
    """

    __slots__ = ("ws", "sid", "who", "_queue", "_queued_bytes", "_max_bytes", "_socket", "_writer", "_ended",
                 "_close_code", "closing", "forgotten")

    def __init__(self, ws: WebSocket, limits: Limits = VISITOR, who: str | None = None) -> None:
        self.ws = ws
        self.sid: str | None = None
        # What the log calls it while it has no session id ("dashboard").
        self.who = who
        # Each item: a frame (or _CLOSE) and what to call once it is written. The
        # first stays here until it is written. None while nothing waits.
        self._queue: deque[tuple[Any, Callable[[], None] | None]] | None = None
        # Bytes of the frames queued, the first included. A str is counted in
        # characters: the feed's JSON is ASCII (json.dumps escapes the rest).
        self._queued_bytes = 0
        self._max_bytes = limits.queue_bytes
        self._socket: Socket | None = ws.scope.get(SOCKET)
        if self._socket is not None:
            self._socket.tune(limits)
        # The task writing the queue, while there is something in it.
        self._writer: asyncio.Task[None] | None = None
        # Nothing more is written: the close went, a send failed, the client was released, or finish() ran.
        self._ended = False
        self._close_code = wire.CLOSE_NORMAL
        self.closing = False
        # The visitor withdrew consent and the session was erased: record nothing more for it.
        self.forgotten = False

    def send(self, frame: bytes | str, on_sent: Callable[[], None] | None = None) -> bool:
        """Queue a frame; False if the connection is closing or too far behind (it is then released).

        `on_sent` is called once the frame is written to the socket (the push
        latency in /metrics ends there).
        """
        if self.closing:
            return False
        # The bound is on what waits behind the first frame, so that a dashboard's
        # snapshot, however big, is followed by the changes that came while it was read.
        queue = self._queue
        if queue and self._queued_bytes - len(queue[0][0]) + len(frame) > self._max_bytes:
            self._release("queue_full", f"queue full ({self._max_bytes:,} bytes)")
            return False
        if queue is None and self._socket is not None and not self._ended and self._socket.write_now(frame):
            # Nothing waits before it and the socket takes it: written in this turn of the
            # loop, not the next one's writer task (a push's latency under load is turns).
            if on_sent is not None:
                on_sent()
            return True
        self._queued_bytes += len(frame)
        self._enqueue(frame, on_sent)
        return True

    def close(self, code: int) -> None:
        """Close after the frames already queued are sent."""
        if self.closing:
            return
        self.closing = True
        self._close_code = code
        self._enqueue(_CLOSE, None)

    def _enqueue(self, item: Any, on_sent: Callable[[], None] | None) -> None:
        if self._queue is None:
            self._queue = deque()
        self._queue.append((item, on_sent))
        if self._writer is None and not self._ended:
            self._writer = asyncio.create_task(self._write_forever())

    def _stop_writer(self) -> None:
        """Cancel the writer, unless it is the caller. Forgotten at once: nothing here refers to it after."""
        writer, self._writer = self._writer, None
        if writer is not None and writer is not asyncio.current_task():
            writer.cancel()

    def _release(self, why: str, words: str) -> None:
        """Let a client too slow to read go: drop its queue, close (1013 unless a close was asked), abort."""
        if self._ended:
            return  # released already, or the writer ended with the socket
        self._ended = True
        if not self.closing:
            self._close_code = wire.CLOSE_TRY_AGAIN
        self.closing = True
        unsent = self._queued_bytes + (self._socket.unsent() if self._socket is not None else 0)
        self._queued_bytes = 0
        self._queue = None
        name = f"sid={self.sid}" if self.sid is not None else (self.who or "client")
        log.warning("released slow client %s: %s bytes unsent, %s; closed %d", name, f"{unsent:,}", words,
                    self._close_code)
        self._stop_writer()
        if self._socket is not None:
            self._socket.release(self._close_code, why)
        else:
            asyncio.ensure_future(self._close_now())

    async def _close_now(self) -> None:
        try:
            await self.ws.close(self._close_code)
        except Exception:  # the peer may be gone already
            pass

    async def _write_forever(self) -> None:
        """Write what is queued, then end: the next frame queued starts another writer."""
        try:
            await self._write_queued()
        except asyncio.CancelledError:
            # Ended by finish() or a release, and nobody awaits the result. Re-raised, the
            # error would stay on the task (asyncio keeps it for the task's result) with its
            # traceback, whose frames hold this connection: a cycle if anything here still
            # held the task, which only a full collection frees, and never once
            # kairos.gcpolicy has frozen the connection (each closed socket kept ~25 objects
            # and its WebSocket so).
            return
        finally:
            if self._writer is asyncio.current_task():
                self._writer = None

    async def _write_queued(self) -> None:
        timeout_s = (self._socket.send_timeout_s or None) if self._socket is not None else None  # 0: none
        while True:
            queue = self._queue
            if not queue:
                self._queue = None  # an idle connection keeps no queue
                return
            item, on_sent = queue[0]
            try:
                # A send waits while the transport's buffer is over its high-water
                # mark: a client that does not read makes it wait for ever.
                async with asyncio.timeout(timeout_s):
                    if item is _CLOSE:
                        await self.ws.close(self._close_code)
                        self._ended = True
                        return
                    # The dashboard's feed is JSON text; a visitor's frames are MessagePack bytes.
                    await (self.ws.send_text(item) if isinstance(item, str) else self.ws.send_bytes(item))
            except TimeoutError:
                self._release("send_timeout", f"send timeout ({timeout_s:g} s)")
                return
            except Exception:
                self._ended = True
                return  # disconnected: the reader sees it too and cleans up
            queue.popleft()
            self._queued_bytes -= len(item)
            if on_sent is not None:
                on_sent()

    async def finish(self, timeout_s: float = 2.0) -> None:
        """Let queued frames and a requested close go out, then stop the writer.

        When the browser went away first there is nobody to write to: stop at
        once. Either way the socket is aborted a grace later if it is still open.
        """
        writer = self._writer
        if self.closing and writer is not None:
            try:
                await asyncio.wait_for(asyncio.shield(writer), timeout_s)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                pass
        if self.closing and self._writer is not None and not self._writer.done():
            # The close is still waiting behind frames a client does not read.
            self._release("send_timeout", f"close not sent within {timeout_s:g} s")
        self._ended = True
        self._stop_writer()
        if self._socket is not None:
            self._socket.let_go()


class Hub:
    """Sessions connected to this process. One session may hold several sockets
    (a duplicated tab copies its sessionStorage, and with it the session id)."""

    def __init__(self) -> None:
        # sid -> its one socket here, or a tuple of them when there are several: no
        # set per session for the one socket almost every session has.
        self._by_sid: dict[str, Connection | tuple[Connection, ...]] = {}

    def _conns(self, sid: str) -> tuple[Connection, ...]:
        held = self._by_sid.get(sid)
        if held is None:
            return ()
        return held if isinstance(held, tuple) else (held,)

    def add(self, sid: str, conn: Connection) -> None:
        conn.sid = sid
        conns = self._conns(sid)
        if conn not in conns:
            self._by_sid[sid] = (*conns, conn) if conns else conn

    def remove(self, conn: Connection) -> None:
        if conn.sid is None:
            return
        conns = self._conns(conn.sid)
        if conn in conns:
            rest = tuple(c for c in conns if c is not conn)
            if not rest:
                del self._by_sid[conn.sid]
            else:
                self._by_sid[conn.sid] = rest if len(rest) > 1 else rest[0]

    def push(self, sid: str, frame: bytes, on_sent: Callable[[], None] | None = None) -> int:
        """Send a frame to every socket of a session here; returns how many took it.

        `on_sent` is called as each socket's copy is written.
        """
        return sum(conn.send(frame, on_sent) for conn in self._conns(sid))

    def forget(self, sid: str) -> int:
        """Close every socket of an erased session here (1000: the snippet does not reconnect); how many."""
        conns = self._conns(sid)
        for conn in conns:
            conn.forgotten = True
            conn.close(wire.CLOSE_NORMAL)
        return len(conns)

    def sids(self) -> list[str]:
        """The sessions with a socket here."""
        return list(self._by_sid)

    def connected(self, sid: str) -> bool:
        return sid in self._by_sid

    def __len__(self) -> int:
        return sum(len(c) if isinstance(c, tuple) else 1 for c in self._by_sid.values())

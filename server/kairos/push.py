"""Pushing frames to the sockets this process holds.

Each connection has one writer task fed by a bounded queue, so a slow or stalled
browser never blocks the handler of another (websockets' broadcast guide: no
backpressure across clients; drop the slow one). A client that falls
`MAX_QUEUED` frames behind is closed with 1013 and reconnects.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable

from starlette.websockets import WebSocket

from . import wire

log = logging.getLogger("kairos.push")

MAX_QUEUED = 32
_CLOSE = object()


class Connection:
    """One browser's websocket, as seen by everything that wants to send to it."""

    __slots__ = ("ws", "sid", "_queue", "_writer", "_close_code", "closing", "forgotten")

    def __init__(self, ws: WebSocket, max_queued: int = MAX_QUEUED) -> None:
        self.ws = ws
        self.sid: str | None = None
        # Each item: a frame (or _CLOSE) and what to call once it is written.
        self._queue: asyncio.Queue[tuple[Any, Callable[[], None] | None]] = asyncio.Queue(maxsize=max_queued)
        self._writer = asyncio.create_task(self._write_forever())
        self._close_code = wire.CLOSE_NORMAL
        self.closing = False
        # The visitor withdrew consent and the session was erased: record nothing more for it.
        self.forgotten = False

    def send(self, frame: bytes | str, on_sent: Callable[[], None] | None = None) -> bool:
        """Queue a frame; False if the connection is closing or too far behind.

        `on_sent` is called once the frame is written to the socket (the push
        latency in /metrics ends there).
        """
        if self.closing:
            return False
        try:
            self._queue.put_nowait((frame, on_sent))
            return True
        except asyncio.QueueFull:
            log.warning("closing slow client sid=%s: %d frames unsent", self.sid, self._queue.qsize())
            self._abort(wire.CLOSE_TRY_AGAIN)
            return False

    def close(self, code: int) -> None:
        """Close after the frames already queued are sent."""
        if self.closing:
            return
        self.closing = True
        self._close_code = code
        try:
            self._queue.put_nowait((_CLOSE, None))
        except asyncio.QueueFull:
            self._abort(code)

    def _abort(self, code: int) -> None:
        """Close at once, dropping what is still queued."""
        self.closing = True
        self._close_code = code
        self._writer.cancel()
        asyncio.ensure_future(self._close_now())

    async def _close_now(self) -> None:
        try:
            await self.ws.close(self._close_code)
        except Exception:  # the peer may be gone already
            pass

    async def _write_forever(self) -> None:
        while True:
            item, on_sent = await self._queue.get()
            if item is _CLOSE:
                await self._close_now()
                return
            try:
                # The dashboard's feed is JSON text; a visitor's frames are MessagePack bytes.
                await (self.ws.send_text(item) if isinstance(item, str) else self.ws.send_bytes(item))
            except Exception:
                return  # disconnected: the reader sees it too and cleans up
            if on_sent is not None:
                on_sent()

    async def finish(self, timeout_s: float = 2.0) -> None:
        """Let queued frames and a requested close go out, then stop the writer.

        When the browser went away first there is nobody to write to: stop at once.
        """
        if not self.closing:
            self._writer.cancel()
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._writer), timeout_s)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            pass
        finally:
            self._writer.cancel()


class Hub:
    """Sessions connected to this process. One session may hold several sockets
    (a duplicated tab copies its sessionStorage, and with it the session id)."""

    def __init__(self) -> None:
        self._by_sid: dict[str, set[Connection]] = {}

    def add(self, sid: str, conn: Connection) -> None:
        conn.sid = sid
        self._by_sid.setdefault(sid, set()).add(conn)

    def remove(self, conn: Connection) -> None:
        if conn.sid is None:
            return
        conns = self._by_sid.get(conn.sid)
        if conns is not None:
            conns.discard(conn)
            if not conns:
                del self._by_sid[conn.sid]

    def push(self, sid: str, frame: bytes, on_sent: Callable[[], None] | None = None) -> int:
        """Send a frame to every socket of a session here; returns how many took it.

        `on_sent` is called as each socket's copy is written.
        """
        return sum(conn.send(frame, on_sent) for conn in tuple(self._by_sid.get(sid, ())))

    def forget(self, sid: str) -> int:
        """Close every socket of an erased session here (1000: the snippet does not reconnect); how many."""
        conns = tuple(self._by_sid.get(sid, ()))
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
        return sum(len(c) for c in self._by_sid.values())

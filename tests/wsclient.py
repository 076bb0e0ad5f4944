"""A protocol-speaking test visitor over a real websocket."""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

import msgpack
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

PRODUCT = "/demo/products/linen-shirt"


def hello_frame(vid: str, sid: str | None = None, path: str = PRODUCT, **extra: Any) -> dict[str, Any]:
    frame = {
        "v": 1, "t": "hello", "site": "demo", "vid": vid, "sid": sid,
        "page": {"url": f"http://shop.test{path}", "path": path, "title": "Linen shirt", "ref": "",
                 "prod": {"name": "Linen shirt", "price": 59.9, "cur": "EUR"}},
        "consent": True, "dnt": False, "gpc": False, "sv": "test", "tz": 0, "lang": "en", "vp": [1280, 800],
    }
    frame.update(extra)
    return frame


class Visitor:
    def __init__(self, ws: ClientConnection, sid: str, vid: str) -> None:
        self.ws, self.sid, self.vid = ws, sid, vid
        self.seq = 0

    @classmethod
    async def arrive(cls, ws_url: str, vid: str | None = None, sid: str | None = None, path: str = PRODUCT) -> "Visitor":
        vid = vid or "v_" + secrets.token_hex(6)
        ws = await connect(ws_url, compression=None)
        await ws.send(msgpack.packb(hello_frame(vid, sid, path)))
        welcome = msgpack.unpackb(await asyncio.wait_for(ws.recv(), 5))
        assert welcome["t"] == "welcome", welcome
        return cls(ws, welcome["sid"], vid)

    async def send(self, frame: dict[str, Any] | bytes) -> None:
        await self.ws.send(frame if isinstance(frame, (bytes, str)) else msgpack.packb(frame))

    async def events(self, *events: dict[str, Any]) -> None:
        self.seq += 1
        ts = int(time.time() * 1000)
        await self.send({"v": 1, "t": "events", "seq": self.seq, "ev": [{"ts": ts, **e} for e in events]})

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        return msgpack.unpackb(await asyncio.wait_for(self.ws.recv(), timeout))

    async def expect(self, t: str, timeout: float = 5.0) -> dict[str, Any]:
        frame = await self.recv(timeout)
        assert frame["t"] == t, frame
        return frame

    async def closed_with(self, timeout: float = 5.0) -> int | None:
        """Read until the server closes; the close code."""
        try:
            while True:
                await asyncio.wait_for(self.ws.recv(), timeout)
        except ConnectionClosed as exc:
            return exc.rcvd.code if exc.rcvd else None

    async def leave(self) -> None:
        await self.ws.close()

"""Redis restarted without persistence under streaming sessions (issue 15, finding 3).

Every session's keys vanish while their pages stay open. Before, the next batch
made each a half-empty session without its visitor id, every show went under
one shared key (`kairos:{v:}:shows`), and the once-per-session offer was shown
to all of them again.
"""

from __future__ import annotations

import asyncio
import time

import msgpack
import pytest
import redis
from websockets.exceptions import ConnectionClosed

from conftest import OwnRedis, Server, stored_session
from wsclient import Visitor

SESSIONS = 200

RULES = """\
version: 1
page_types:
  product: /demo/products/*
rules:
  - id: welcome-offer
    when: click
    if:
      click_target: offer
    then:
      show: offer
      template: offer.html
      params: {headline: Welcome, body: Once a session., code: HELLO}
    limit:
      per_session: 1
"""


class Page:
    """A visitor's open page: clicks the offer's target now and then, counts what comes back."""

    def __init__(self, v: Visitor) -> None:
        self.v = v
        self.shows = 0
        self.server_errors = 0
        self.errors: list[dict] = []

    async def click(self) -> None:
        await self.v.events({"e": "click", "tag": "button", "k": "offer"})

    async def drain(self, quiet_s: float) -> None:
        try:
            while True:
                frame = msgpack.unpackb(await asyncio.wait_for(self.v.ws.recv(), quiet_s))
                if frame["t"] == "show":
                    self.shows += 1
                elif frame["t"] == "error":
                    self.server_errors += frame["code"] == "server_error"
                    if frame["code"] != "server_error":
                        self.errors.append(frame)
        except asyncio.TimeoutError:
            pass


async def stream(pages: list[Page], until: asyncio.Event) -> None:
    async def one(p: Page) -> None:
        while not until.is_set():
            await p.click()
            await p.drain(0.3)
    await asyncio.gather(*(one(p) for p in pages))


@pytest.fixture(params=["without persistence", "with AOF"])
def restarted_redis(request, tmp_path):
    """A Redis of the test's own that the test kills and starts again; with AOF it finds its data again."""
    aof = request.param == "with AOF"
    if aof:
        (tmp_path / "aof").mkdir()
    r = OwnRedis(aof_dir=tmp_path / "aof" if aof else None)
    r.start()
    yield r
    r.kill()


async def test_sessions_redis_lost_come_back_under_their_own_ids_and_keep_their_once_per_session_offer(
        restarted_redis, tmp_path):
    own_redis = restarted_redis
    persistent = own_redis.aof_dir is not None
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    server = Server("redis", own_redis.url, rules=rules)
    r = redis.Redis.from_url(own_redis.url, decode_responses=True)
    try:
        pages = [Page(v) for v in await asyncio.gather(*(Visitor.arrive(server.ws_url) for _ in range(SESSIONS)))]
        for p in pages:
            await p.click()
        await asyncio.gather(*(p.drain(1.0) for p in pages))
        assert [p.shows for p in pages] == [1] * SESSIONS, "each session saw its offer once before the restart"

        until = asyncio.Event()
        streaming = asyncio.create_task(stream(pages, until))
        await asyncio.sleep(1.0)
        before = server.output()
        own_redis.kill()
        await asyncio.sleep(1.0)
        own_redis.start()  # without persistence, empty; with AOF, as it was up to a second before
        deadline = time.monotonic() + 30
        while "redis is back" not in server.output() and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        await asyncio.sleep(3.0)  # every page sends a few batches to the empty Redis
        until.set()
        await streaming
        for p in pages:
            await p.click()
        await asyncio.gather(*(p.drain(1.0) for p in pages))

        # Nothing under an empty id, and each session back under its own visitor.
        every_key = list(r.scan_iter("kairos:*", count=1000))
        assert [k for k in every_key if "{v:}" in k or "{}" in k] == []
        restored = 0
        for p in pages:
            h = stored_session(own_redis.url, p.v.sid)
            assert h.get("vid") == p.v.vid and h.get("site") == "demo" and h.get("started_ms"), h
            restored += "restored" in h
        # Without persistence every session was lost and opened again; with AOF none was.
        assert restored == (0 if persistent else SESSIONS)
        # The once-per-session offer was not shown again to any session that had seen it.
        shows = sorted({p.shows for p in pages})
        print(f"\n{SESSIONS} sessions across a Redis restart {'with AOF' if persistent else 'without persistence'}: "
              f"shows per session {shows}, "
              f"server_error answers {sum(p.server_errors for p in pages)}, restored {restored}")
        assert shows == [1]
        assert [e for p in pages for e in p.errors] == []
        # A visitor who arrives after the restart still gets the offer: only the restored sessions hold it back.
        newcomer = Page(await Visitor.arrive(server.ws_url))
        await newcomer.click()
        await newcomer.drain(1.0)
        assert newcomer.shows == 1

        during = server.output()[len(before):]
        assert "Traceback" not in during
        said = [line for line in during.splitlines() if "WARNING" in line or "ERROR" in line]
        print("\n".join(said))
        assert len(said) <= 5, "\n".join(said)
        assert any("lost by the store" in line for line in said) != persistent
        for p in pages + [newcomer]:
            try:
                await p.v.leave()
            except ConnectionClosed:
                pass
    finally:
        server.stop()

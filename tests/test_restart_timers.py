"""A delayed nudge due while the server restarts (a deploy) is shown once the page is back.

SIGTERM closes every socket with 1012 and the snippet reconnects at once. The
restarting process does not count those sockets out (their pages are coming
back) and marks itself gone, so a timer due meanwhile waits for the page (the
reconnect grace) instead of taking the page for gone and following `offline`.
"""

from __future__ import annotations

import asyncio
import textwrap
import time

import msgpack
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from conftest import Server
from wsclient import PRODUCT, hello_frame

PAGES = 20
DELAY_S = 3.0
RULES = textwrap.dedent(f"""\
    version: 1
    page_types: {{product: /demo/products/*}}
    rules:
      - id: restart-reminder
        when: click
        after: {DELAY_S}s
        offline: drop
        then: {{show: bar, template: bar.html, params: {{message: Still here.}}}}
""")


async def page(server: Server, vid: str, restarted: asyncio.Event) -> list[str]:
    """One page: click; after the restart's 1012, back with its session id as the snippet does; the shows it got."""
    shows: list[str] = []
    async with connect(server.ws_url, compression=None, open_timeout=20) as ws:
        await ws.send(msgpack.packb(hello_frame(vid, None, PRODUCT)))
        sid = msgpack.unpackb(await asyncio.wait_for(ws.recv(), 20))["sid"]
        ev = [{"ts": int(time.time() * 1000), "e": "click", "tag": "button"}]
        await ws.send(msgpack.packb({"v": 1, "t": "events", "seq": 1, "ev": ev}))
        try:
            async for data in ws:
                if msgpack.unpackb(data).get("t") == "show":
                    shows.append("before the restart")
        except ConnectionClosed:
            pass
        assert ws.close_code == 1012
    await restarted.wait()
    async with connect(server.ws_url, compression=None, open_timeout=20) as ws:
        await ws.send(msgpack.packb(hello_frame(vid, sid, PRODUCT, re=True)))
        welcome = msgpack.unpackb(await asyncio.wait_for(ws.recv(), 20))
        assert welcome["sid"] == sid, "the session resumes"
        try:
            while True:  # until the server has nothing more to say for a while
                frame = msgpack.unpackb(await asyncio.wait_for(ws.recv(), 8))
                if frame.get("t") == "show":
                    shows.append(frame["oid"])
        except asyncio.TimeoutError:
            return shows


async def test_a_nudge_due_while_the_server_restarts_is_shown_when_the_page_is_back(serve, tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    server = serve("redis", rules=rules)
    restarted = asyncio.Event()
    pages = [asyncio.create_task(page(server, f"v_restart{i:04d}", restarted)) for i in range(PAGES)]
    await asyncio.sleep(DELAY_S - 0.5)  # armed, and due in half a second: while the server restarts
    await asyncio.to_thread(server.restart)
    restarted.set()
    shows = await asyncio.gather(*pages)
    dropped = server.metric("kairos_timers_total", outcome="dropped")
    print(f"\n{PAGES} pages across a restart: shows per page {sorted(len(s) for s in shows)}, dropped {dropped}")
    assert [len(s) for s in shows] == [1] * PAGES, shows
    assert not any("before the restart" in s for s in shows)
    assert dropped == 0

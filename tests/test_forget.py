"""`kairos.consent(false)` through a running server: every session of the visitor goes (issue 13, finding 5).

The snippet's forget beacon (`POST /b`, `t: forget`) is the only way to it; it
answers 204. Before the visitor's sessions were indexed, only the newest 16
were erased and the rest still answered on /api/sessions/<sid>.
"""

from __future__ import annotations

import httpx
import msgpack
from conftest import redis_contents
from wsclient import Visitor

SESSIONS = 100


async def test_forgetting_a_visitor_with_100_sessions_leaves_nothing_of_them_in_redis(serve, redis_url):
    server = serve("redis")
    first = await Visitor.arrive(server.ws_url)
    vid, sids = first.vid, [first.sid]
    await first.leave()
    for _ in range(SESSIONS - 1):
        v = await Visitor.arrive(server.ws_url, vid=vid)  # no session id: a new session each time
        await v.events({"e": "identify", "uid": "bob@example.com"}, {"e": "exit_intent"})
        await v.expect("show")
        sids.append(v.sid)
        await v.leave()
    assert len(set(sids)) == SESSIONS
    for sid in sids:  # each page load's end is recorded (its row kept for training) before the forget
        server.session_when(sid, lambda s: not s["connected"])
    bystander = await Visitor.arrive(server.ws_url)
    assert all(server.api(f"/api/sessions/{sid}").status_code == 200 for sid in sids)

    r = httpx.post(f"{server.base}/b", content=msgpack.packb({"v": 1, "t": "forget", "site": "demo", "vid": vid,
                                                              "sid": sids[-1]}), timeout=30)
    assert r.status_code == 204
    assert [sid for sid in sids if server.api(f"/api/sessions/{sid}").status_code != 404] == []
    left = redis_contents(redis_url)
    for needle in (vid, *sids):
        assert not [k for k, value in left.items() if needle in k or needle in value], f"{needle} is still in Redis"
    assert [s["sid"] for s in server.api("/api/sessions").json()["sessions"]] == [bystander.sid]
    assert f"forgot a visitor on request: {SESSIONS} session(s) erased" in server.output()

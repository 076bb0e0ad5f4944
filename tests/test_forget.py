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


async def test_forgetting_closes_the_visitors_pages_on_every_process(serve, redis_url):
    """A second tab of the visitor, open on another process: it is closed too (1000, so the
    snippet does not reconnect), and its session does not come back from its page's hello."""
    a, b = serve("redis"), serve("redis")
    here = await Visitor.arrive(a.ws_url)
    there = await Visitor.arrive(b.ws_url, vid=here.vid)
    bystander = await Visitor.arrive(b.ws_url)
    await there.events({"e": "scroll", "pct": 30})
    b.session_when(there.sid, lambda s: s["scroll_pct"] >= 30)

    r = httpx.post(f"{a.base}/b", content=msgpack.packb({"v": 1, "t": "forget", "site": "demo", "vid": here.vid,
                                                          "sid": here.sid}), timeout=30)
    assert r.status_code == 204
    assert await here.closed_with() == 1000
    assert await there.closed_with() == 1000, "the page on the other process was closed"
    left = redis_contents(redis_url)
    for needle in (here.vid, here.sid, there.sid):
        assert not [k for k, value in left.items() if needle in k or needle in value], f"{needle} is still in Redis"
    await bystander.events({"e": "scroll", "pct": 55})
    b.session_when(bystander.sid, lambda s: s["scroll_pct"] >= 55)


async def test_the_visitors_index_forgets_sessions_past_its_time_as_new_ones_join(two, clean_redis):
    """The index of a visitor's sessions (what forgetting walks) drops what is older than its
    ttl, when a session joins it: a visitor who comes back for years does not grow it for ever."""
    import redis

    from kairos.engine import keys
    from kairos.engine.base import Opening
    from kairos.session import hello_ops, log_entry
    from kairos.wire import Hello, Page

    a, _ = two
    vid = "v_index00001"
    index = redis.Redis.from_url(clean_redis, decode_responses=True)

    async def hello(sid: str | None, fresh: str, at: int) -> str:
        page = Page(url="https://shop.example/", path="/", title="Home")
        h = Hello(site="demo", vid=vid, sid=sid, page=page, consent=True, dnt=False, gpc=False, tz=0, lang="en")
        opened = await a.open_session(Opening(vid=vid, sid=sid, fresh=fresh, ops=hello_ops(h, "other", at),
                                              log=[log_entry("event", at)], path="/", page_type="other"), at)
        return opened.sid

    t0 = 1_800_000_000_000
    ttl_ms = a.index_ttl_s * 1000
    old = await hello(None, "s_index00001", t0)
    kept = await hello(None, "s_index00002", t0 + ttl_ms - 1)
    members = lambda: index.zrange(keys.visitor_sessions(vid), 0, -1)  # noqa: E731
    assert members() == [old, kept]
    assert await hello(kept, "s_index00003", t0 + ttl_ms + 10) == kept  # the same session's next page
    new = await hello(None, "s_index00004", t0 + ttl_ms + 20)
    assert members() == [kept, new], "the session past the index's time is no longer walked"

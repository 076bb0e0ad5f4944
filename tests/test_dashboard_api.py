"""The dashboard's API and feed against a running server: what staff can do, and every bad request answered."""

from __future__ import annotations

import asyncio
import json

import httpx
import msgpack
import pytest
from websockets.asyncio.client import connect

from wsclient import Visitor


@pytest.fixture
def server(serve):
    return serve("memory")


async def post(server, path: str, **kw) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.base, headers=server.auth, timeout=5) as c:
        return await c.post(path, **kw)


async def get(server, path: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.base, headers=server.auth, timeout=5) as c:
        return await c.get(path)


# --- nudge by hand --------------------------------------------------------------------------


async def test_a_chat_sent_by_hand_reaches_the_page_and_is_capped_like_any_nudge(server):
    v = await Visitor.arrive(server.ws_url)
    r = await post(server, f"/api/sessions/{v.sid}/nudge", json={"chat": "Need a hand with sizes?", "agent": "Ana"})
    assert r.status_code == 200, r.text
    show = await v.expect("show")
    assert "Need a hand with sizes?" in show["html"] and "Ana" in show["html"] and show["rule"] == "staff"
    # The visitor dismisses it: a second chat in this session is refused, and says why.
    await v.send({"v": 1, "t": "feedback", "oid": show["oid"], "act": "dismissed", "ts": 1})
    await asyncio.sleep(0.2)
    r = await post(server, f"/api/sessions/{v.sid}/nudge", json={"chat": "Still there?"})
    assert (r.status_code, r.json()["why"]) == (409, "dismissed")
    assert "dismissed" in r.json()["error"]
    log = server.session(v.sid)["log"]
    assert [e["kind"] for e in log[:3]] == ["skip", "feedback", "show"] and log[2]["by"] == "staff"
    await v.leave()


async def test_a_rules_nudge_sent_by_hand_obeys_that_rules_caps(server):
    v = await Visitor.arrive(server.ws_url)
    assert (await post(server, f"/api/sessions/{v.sid}/nudge", json={"rule": "exit-offer"})).status_code == 200
    assert (await v.expect("show"))["rule"] == "exit-offer"
    r = await post(server, f"/api/sessions/{v.sid}/nudge", json={"rule": "exit-offer"})
    assert (r.status_code, r.json()["why"]) == (409, "capped"), "exit-offer shows once a session"
    assert "as often as a session allows" in r.json()["error"]
    await v.leave()


@pytest.mark.parametrize("body, status, says", [
    (b"not json", 400, "JSON object"),
    (b"[1, 2]", 400, "JSON object"),
    (b"{}", 400, "which rule"),
    (b'{"rule": "no-such-rule"}', 400, "no rule 'no-such-rule'"),
    (b'{"chat": "   "}', 400, "which rule"),
    (json.dumps({"chat": "x" * 281}).encode(), 400, "at most 280"),
])
async def test_a_bad_nudge_request_is_answered_and_sends_nothing(server, body, status, says):
    v = await Visitor.arrive(server.ws_url)
    r = await post(server, f"/api/sessions/{v.sid}/nudge", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == status and says in r.json()["error"], r.text
    with pytest.raises(asyncio.TimeoutError):
        await v.recv(timeout=0.3)
    await v.leave()


async def test_a_nudge_for_a_session_with_no_page_open_or_no_session_is_refused(server):
    v = await Visitor.arrive(server.ws_url)
    await v.leave()
    await asyncio.sleep(0.3)
    r = await post(server, f"/api/sessions/{v.sid}/nudge", json={"chat": "Hello?"})
    assert (r.status_code, r.json()["why"]) == (409, "offline")
    r = await post(server, "/api/sessions/s_nosuchsession/nudge", json={"chat": "Hello?"})
    assert r.status_code == 404


# --- rules: pause, check, apply, counters -----------------------------------------------------------


async def test_a_paused_rule_does_not_fire_and_resumes(server):
    r = await post(server, "/api/rules/exit-offer/pause", json={"paused": True})
    assert r.status_code == 200 and "exit-offer" in r.json()["all"]
    v = await Visitor.arrive(server.ws_url)
    await v.events({"e": "exit_intent", "how": "top"})
    with pytest.raises(asyncio.TimeoutError):
        await v.recv(timeout=0.5)
    assert [e["why"] for e in server.session(v.sid)["log"] if e["kind"] == "skip"] == ["paused"]
    assert next(r for r in server.session(v.sid)["rules"] if r["rule"] == "exit-offer")["blocked"] == "paused"
    assert (await post(server, "/api/rules/exit-offer/pause", json={"paused": False})).status_code == 200
    await v.events({"e": "exit_intent", "how": "top"})
    assert (await v.expect("show"))["rule"] == "exit-offer"
    await v.leave()


@pytest.mark.parametrize("path, body, status", [
    ("/api/rules/exit-offer/pause", {"paused": "yes"}, 400),
    ("/api/rules/exit-offer/pause", {}, 400),
    ("/api/rules/no-such-rule/pause", {"paused": True}, 404),
])
async def test_a_bad_pause_request_is_answered(server, path, body, status):
    r = await post(server, path, json=body)
    assert r.status_code == status and r.json()["error"]
    assert (await get(server, "/api/rules")).json()["paused"] == {}


async def test_the_editor_check_names_the_line_and_changes_nothing(server):
    r = await post(server, "/api/rules/check", content="version: 1\nrules:\n  - id: x\n    when: nope\n")
    body = r.json()
    assert r.status_code == 200 and not body["ok"]
    assert body["problems"][0]["line"] == 4 and "nope" in body["problems"][0]["reason"]
    assert (await post(server, "/api/rules/check", content=b"\xff\xfe")).json()["problems"][0]["reason"].startswith("not UTF-8")
    ok = (await post(server, "/api/rules/check", content="version: 1\nrules: []\n")).json()
    assert ok == {"ok": True, "rules": []}
    assert (await get(server, "/api/rules")).json()["version"] == 1


async def test_apply_without_a_rules_file_changes_the_rules_in_memory(serve):
    server = serve("memory", rules=None)
    text = "version: 1\nrules:\n  - id: hi\n    when: page_view\n    then: {show: bar, template: bar.html, params: {message: Hi}}\n"
    r = await post(server, "/api/rules/apply", content=text)
    assert r.status_code == 200 and r.json()["rules"] == ["hi"]
    state = (await get(server, "/api/rules")).json()
    assert (state["text"], state["file"], state["version"]) == (text, None, r.json()["version"])
    bad = await post(server, "/api/rules/apply", content=text.replace("page_view", "page_vew"))
    assert bad.status_code == 422 and bad.json()["problems"]
    assert (await get(server, "/api/rules")).json()["text"] == text
    too_big = await post(server, "/api/rules/apply", content=b"#" * (256 * 1024 + 1))
    assert too_big.status_code == 413


async def test_counters_by_period(server):
    v = await Visitor.arrive(server.ws_url)
    await v.events({"e": "exit_intent", "how": "top"})
    show = await v.expect("show")
    await v.send({"v": 1, "t": "feedback", "oid": show["oid"], "act": "clicked", "ts": 1})
    await v.events({"e": "purchase", "value": 59.9, "order": "o-1"})
    await asyncio.sleep(0.3)
    for period in ("24h", "7d", "30d"):
        s = (await get(server, f"/api/stats?period={period}")).json()
        assert s["bin"] == "5 min" and len(s["starts"]) in (1, 2), "the chart spans the data: these few seconds"
        assert s["totals"]["exit-offer"] == {"triggered": 1, "shown": 1, "clicked": 1, "converted": 1}
        assert s["series"]["exit-offer"]["shown"][-1] == 1, "the newest bin holds it"
        assert s["totals"]["*"] == {"purchases": 1}
    assert (await get(server, "/api/stats?period=1y")).status_code == 400
    await v.leave()


# --- the feed ---------------------------------------------------------------------------------------


async def test_the_feed_sends_a_snapshot_then_each_change_and_the_erased(server):
    early = await Visitor.arrive(server.ws_url)
    url = server.base.replace("http://", "ws://") + "/dashboard/feed"
    async with connect(url, additional_headers=server.auth) as feed:
        snapshot = json.loads(await asyncio.wait_for(feed.recv(), 5))
        assert snapshot["t"] == "snapshot" and [r["sid"] for r in snapshot["rows"]] == [early.sid]
        assert snapshot["rules"] == ["exit-offer", "cart-exit-shipping", "deep-scroll-proof"]
        late = await Visitor.arrive(server.ws_url, path="/demo/cart")

        async def rows_until(check):
            while True:
                msg = json.loads(await asyncio.wait_for(feed.recv(), 5))
                if msg["t"] == "rows" and check(msg):
                    return msg

        msg = await rows_until(lambda m: any(r["sid"] == late.sid for r in m["rows"]))
        row = next(r for r in msg["rows"] if r["sid"] == late.sid)
        assert (row["path"], row["page_type"], row["connected"]) == ("/demo/cart", "cart", True)
        assert set(row["scores"]) == {"purchase_intent", "exit_risk"}
        async with httpx.AsyncClient() as c:  # the visitor withdraws consent: off the dashboard
            r = await c.post(f"{server.base}/b", content=msgpack.packb(
                {"v": 1, "t": "forget", "site": "demo", "vid": early.vid, "sid": early.sid}))
            assert r.status_code == 204, r.text
        msg = await rows_until(lambda m: early.sid in m.get("gone", []))
        assert early.sid not in [r["sid"] for r in msg["rows"]]
        await late.leave()


async def test_the_timeline_shows_a_score_moving_and_what_moved_it(server):
    v = await Visitor.arrive(server.ws_url)
    await v.events({"e": "add_to_cart", "item": "linen-shirt", "price": 59.9, "qty": 1})
    await asyncio.sleep(0.3)
    moves = [e for e in server.session(v.sid)["log"] if e["kind"] == "score" and e["score"] == "purchase_intent"]
    assert moves, server.session(v.sid)["log"]
    newest = moves[0]
    assert newest["after"] - newest["before"] >= 0.05 and newest["top"][0][0] == "add_to_cart"
    assert newest["after"] == pytest.approx(server.session(v.sid)["scores"]["purchase_intent"]["value"], abs=0.01)
    await v.leave()

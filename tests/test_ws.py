"""The websocket endpoint against a real `kairos serve`: sessions, pushes, and bad input."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import msgpack
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from conftest import redis_contents
from redis_monitor import Commands
from wsclient import Visitor, hello_frame

ROOT = Path(__file__).resolve().parents[1]
INVALID = json.loads((ROOT / "docs" / "frames" / "invalid.json").read_text())


async def assert_unaffected(server, visitor: Visitor) -> None:
    """A healthy session still gets its nudge: exit intent on a product page -> offer."""
    await visitor.events({"e": "exit_intent"})
    show = await visitor.expect("show")
    assert show["rule"] == "exit-offer"


@pytest.mark.parametrize("engine", ["memory", "redis"])
async def test_exit_intent_on_a_product_page_pushes_the_offer(serve, engine):
    server = serve(engine)
    v = await Visitor.arrive(server.ws_url)
    await v.events({"e": "dwell", "ms": 3000}, {"e": "exit_intent"})
    show = await v.expect("show")
    assert (show["kind"], show["place"], show["rule"]) == ("offer", "center", "exit-offer")
    assert "Still thinking about Linen shirt?" in show["html"]
    await v.send({"v": 1, "t": "feedback", "oid": show["oid"], "act": "dismissed", "ts": 1})
    await asyncio.sleep(0.2)
    state = server.session(v.sid)
    assert state["overlays"][show["oid"]]["status"] == "dismissed"
    assert state["dwell_ms"] == 3000 and state["exit_intents"] == 1


@pytest.mark.parametrize("engine", ["memory", "redis"])
async def test_a_session_resumes_across_page_loads(serve, engine):
    server = serve(engine)
    first = await Visitor.arrive(server.ws_url, path="/demo/")
    await first.events({"e": "click", "tag": "a"})
    await asyncio.sleep(0.1)
    await first.leave()
    second = await Visitor.arrive(server.ws_url, vid=first.vid, sid=first.sid, path="/demo/cart")
    assert second.sid == first.sid
    await asyncio.sleep(0.1)
    state = server.session(second.sid)
    assert (state["pages"], state["clicks"], state["page_type"]) == (2, 1, "cart")


@pytest.mark.parametrize("engine", ["memory", "redis"])
async def test_the_later_events_and_lost_reach_the_session(serve, engine, redis_url):
    server = serve(engine)
    v = await Visitor.arrive(server.ws_url)
    await v.send({"v": 1, "t": "events", "seq": 1, "lost": 3, "ev": [
        {"e": "click", "ts": 1, "tag": "button", "text": "Size M", "ka": {"size": "m"}},
        {"e": "rage_click", "ts": 2, "tag": "button", "n": 5},
        {"e": "idle", "ts": 3, "ms": 30000},
        {"e": "idle_end", "ts": 4, "ms": 45000},
        {"e": "hesitation", "ts": 5, "field": "email", "ms": 16000},
        {"e": "copy", "ts": 6, "tag": "code"},
        {"e": "identify", "ts": 7, "uid": "jane@example.com"},
        {"e": "custom", "ts": 8, "name": "size_guide.open", "props": {"from": "product"}},
        {"e": "custom", "ts": 9, "name": "size_guide.open"},
    ]})
    state = server.session_when(v.sid, lambda s: s["lost"] == 3)
    assert (state["clicks"], state["rage_clicks"], state["idle_ms"], state["hesitations"], state["copies"]) == (1, 1, 0, 1, 1)
    assert state["custom"] == {"size_guide.open": 2} and state["counts"]["custom"] == 2
    assert len(state["uid"]) == 32
    raw = server.api(f"/api/sessions/{v.sid}").text
    assert "jane" not in raw, "neither the state nor the activity log holds the raw user id"
    assert "jane" not in server.output()
    if engine == "redis":
        stored = redis_contents(redis_url)
        assert any(v.sid in key for key in stored) and not any("jane" in key + value for key, value in stored.items())
    assert server.metric("kairos_events_lost_total") == 3


@pytest.mark.parametrize("engine", ["memory", "redis"])
async def test_the_page_type_the_store_declares_is_used_when_the_rules_know_it(serve, engine):
    server = serve(engine)
    v = await Visitor.arrive(server.ws_url)
    assert server.session(v.sid)["page_type"] == "product"
    async with connect(server.ws_url, compression=None) as ws:
        hello = hello_frame(v.vid, v.sid, path="/demo/thanks")
        hello["page"]["type"] = "checkout"
        await ws.send(msgpack.packb(hello))
        await asyncio.wait_for(ws.recv(), 5)
        await asyncio.sleep(0.1)
        assert server.session(v.sid)["page_type"] == "checkout"
    page = {"url": "http://shop.test/demo/cart", "path": "/demo/cart", "type": "wishlist"}
    await v.events({"e": "page_view", **page})
    assert server.session_when(v.sid, lambda s: s["pages"] == 3)["page_type"] == "cart", "an unknown type leaves it to the path"
    await v.events({"e": "page_view", "url": "http://shop.test/demo/x", "path": "/demo/x", "type": "product"})
    assert server.session_when(v.sid, lambda s: s["pages"] == 4)["page_type"] == "product"


async def test_a_session_id_is_not_handed_to_another_visitor(serve):
    server = serve("memory")
    owner = await Visitor.arrive(server.ws_url)
    stranger = await Visitor.arrive(server.ws_url, sid=owner.sid)
    assert stranger.sid != owner.sid


async def test_the_dismissed_offer_is_not_shown_again_in_the_session(serve):
    server = serve("memory")
    v = await Visitor.arrive(server.ws_url)
    await v.events({"e": "exit_intent"})
    show = await v.expect("show")
    await v.send({"v": 1, "t": "feedback", "oid": show["oid"], "act": "dismissed", "ts": 1})
    await v.events({"e": "exit_intent"})
    await v.events({"e": "exit_intent"})
    with pytest.raises(asyncio.TimeoutError):
        await v.recv(timeout=0.5)


@pytest.mark.parametrize("case", INVALID, ids=[c["name"] for c in INVALID])
async def test_each_bad_frame_gets_its_documented_answer(serve, case):
    server = serve("memory")
    bystander = await Visitor.arrive(server.ws_url)
    v = await Visitor.arrive(server.ws_url)
    await v.send(bytes.fromhex(case["hex"]))
    err = await v.expect("error")
    assert err["code"] == case["error"]
    if case["close"] is not None:
        assert await v.closed_with() == case["close"]
    else:
        # The connection stays usable: the next good frame is applied.
        await v.events({"e": "click", "tag": "a"})
        await asyncio.sleep(0.2)
        expected_clicks = 1
        assert server.session(v.sid)["clicks"] == expected_clicks
    await assert_unaffected(server, bystander)
    # Every code is listed from the start (at zero): the refusal must have counted.
    assert server.metric("kairos_refused_total", code=case["error"]) >= 1
    assert f"code={case['error']}" in server.output(), "every refusal is logged"


async def test_the_good_events_of_a_batch_with_a_bad_one_are_applied(serve):
    server = serve("memory")
    v = await Visitor.arrive(server.ws_url)
    await v.events({"e": "teleport"}, {"e": "scroll", "pct": 40}, {"e": "scroll", "pct": "x"}, {"e": "click", "tag": "a"})
    codes = sorted([(await v.expect("error"))["code"] for _ in range(2)])
    assert codes == ["bad_event", "unknown_event"]
    await asyncio.sleep(0.1)
    state = server.session(v.sid)
    assert (state["scroll_pct"], state["clicks"]) == (40, 1)


@pytest.mark.parametrize("engine", ["memory", "redis"])
async def test_an_oversize_frame_closes_only_its_own_connection(serve, engine):
    server = serve(engine)
    bystander = await Visitor.arrive(server.ws_url)
    v = await Visitor.arrive(server.ws_url)
    big = {"v": 1, "t": "events", "seq": 1, "ev": [{"e": "click", "ts": 1, "tag": "a", "id": "x" * 60}] * 400}
    await v.send(big)
    assert (await v.expect("error"))["code"] == "too_large"
    assert await v.closed_with() == 1009
    await assert_unaffected(server, bystander)


async def test_a_frame_over_the_websocket_limit_is_never_read(serve):
    server = serve("memory")
    bystander = await Visitor.arrive(server.ws_url)
    v = await Visitor.arrive(server.ws_url)
    await v.send(b"\x00" * (70 * 1024))
    assert await v.closed_with() == 1009
    await assert_unaffected(server, bystander)


async def test_too_many_events_in_a_batch_applies_the_first_fifty(serve):
    server = serve("memory")
    v = await Visitor.arrive(server.ws_url)
    await v.events(*[{"e": "click", "tag": "a"}] * 60)
    assert (await v.expect("error"))["code"] == "too_many_events"
    await asyncio.sleep(0.1)
    assert server.session(v.sid)["clicks"] == 50


async def test_a_text_message_is_refused_and_the_connection_kept(serve):
    server = serve("memory")
    v = await Visitor.arrive(server.ws_url)
    await v.send('{"t": "events"}')
    assert (await v.expect("error"))["code"] == "bad_frame"
    await assert_unaffected(server, v)


@pytest.mark.parametrize(
    "frame,code,close",
    [
        ({"v": 1, "t": "events", "seq": 1, "ev": []}, "hello_required", 4002),
        ({"v": 2, "t": "hello"}, "bad_version", 4001),
        (hello_frame("v_short"), "hello_required", 4002),
        (hello_frame("v_visitor99", consent=False), "no_consent", 4004),
        (hello_frame("v_visitor99", dnt=True), "no_consent", 4004),
        (hello_frame("v_visitor99", gpc=True), "no_consent", 4004),
    ],
    ids=["events-first", "bad-version", "bad-visitor-id", "no-consent", "dnt", "gpc"],
)
async def test_a_connection_without_a_valid_hello_is_closed(serve, frame, code, close):
    server = serve("memory")
    async with connect(server.ws_url, compression=None) as ws:
        await ws.send(msgpack.packb(frame))
        err = msgpack.unpackb(await asyncio.wait_for(ws.recv(), 5))
        assert err["code"] == code
        await asyncio.wait_for(ws.wait_closed(), 5)
        assert ws.close_code == close


@pytest.mark.parametrize("header", ["DNT", "Sec-GPC"])
async def test_a_browser_asking_not_to_be_tracked_is_refused_whatever_the_hello_says(serve, header):
    # A client sending DNT: 1 / Sec-GPC: 1 on the handshake itself (Chromium
    # does not, test_browser.py); the hello here claims neither.
    server = serve("memory")
    async with connect(server.ws_url, compression=None, additional_headers={header: "1"}) as ws:
        await ws.send(msgpack.packb(hello_frame("v_private02")))
        err = msgpack.unpackb(await asyncio.wait_for(ws.recv(), 5))
        await asyncio.wait_for(ws.wait_closed(), 5)
    assert (err["code"], ws.close_code) == ("no_consent", 4004)
    assert server.api("/api/sessions").json() == {"sessions": []}
    # DNT: 0 is a browser saying tracking is fine
    v = await Visitor.arrive(server.ws_url)
    async with connect(server.ws_url, compression=None, additional_headers={header: "0"}) as ws:
        await ws.send(msgpack.packb(hello_frame("v_fine0001")))
        assert msgpack.unpackb(await asyncio.wait_for(ws.recv(), 5))["t"] == "welcome"
    await assert_unaffected(server, v)


@pytest.mark.parametrize("engine", ["memory", "redis"])
async def test_without_consent_nothing_is_stored(serve, engine):
    server = serve(engine)
    async with connect(server.ws_url, compression=None) as ws:
        await ws.send(msgpack.packb(hello_frame("v_private01", gpc=True)))
        await asyncio.wait_for(ws.wait_closed(), 5)
    assert server.api("/api/sessions").json() == {"sessions": []}


async def test_a_flood_is_cut_off_and_other_sessions_carry_on(serve):
    server = serve("memory")
    bystander = await Visitor.arrive(server.ws_url)
    v = await Visitor.arrive(server.ws_url)
    for _ in range(200):
        await v.events({"e": "click", "tag": "a"})
    codes = []
    try:
        while True:
            codes.append((await v.recv(timeout=5))["code"])
    except Exception:
        pass
    assert "rate_limited" in codes and codes[-1] == "flood"
    assert v.ws.close_code == 4008
    await assert_unaffected(server, bystander)


async def test_feedback_for_an_unknown_overlay_is_refused(serve):
    server = serve("memory")
    v = await Visitor.arrive(server.ws_url)
    await v.send({"v": 1, "t": "feedback", "oid": "exit-offer.forged", "act": "clicked", "ts": 1})
    assert (await v.expect("error"))["code"] == "unknown_overlay"


async def test_a_second_hello_is_refused(serve):
    server = serve("memory")
    v = await Visitor.arrive(server.ws_url)
    await v.send(hello_frame(v.vid, v.sid))
    assert (await v.expect("error"))["code"] == "unexpected_hello"


@pytest.mark.parametrize("engine", ["memory", "redis"])
async def test_a_disallowed_origin_is_closed_with_4003_and_gets_no_session(serve, engine):
    # 4003, not an HTTP 403: a browser shows a refused handshake to the page as
    # close 1006, which the snippet cannot tell from a network fault (issue 14)
    server = serve(engine, extra=["--allowed-origin", "https://shop.example"])
    async with connect(server.ws_url, origin="https://evil.example", compression=None) as ws:
        with pytest.raises(ConnectionClosed) as info:
            # the close may already be here when the hello goes
            await ws.send(msgpack.packb(hello_frame("v_refused01")))
            await asyncio.wait_for(ws.recv(), 5)
    assert info.value.rcvd is not None and (info.value.rcvd.code, info.value.rcvd.reason) == (4003, "origin not allowed")
    assert server.api("/api/sessions").json() == {"sessions": []}
    if engine == "redis":
        assert not [k for k, v in redis_contents(server.redis_url).items() if "v_refused01" in k + v]
    async with connect(server.ws_url, origin="https://shop.example", compression=None) as ws:
        await ws.send(msgpack.packb(hello_frame("v_allowed01")))
        assert msgpack.unpackb(await asyncio.wait_for(ws.recv(), 5))["t"] == "welcome"


@pytest.mark.parametrize("engine", ["memory", "redis"])
async def test_a_reconnection_within_the_page_load_is_not_another_page_view(serve, engine):
    server = serve(engine)
    v = await Visitor.arrive(server.ws_url)
    await v.events({"e": "scroll", "pct": 60}, {"e": "dwell", "ms": 2000})
    await asyncio.sleep(0.1)
    await v.leave()  # the connection drops; the page stays open
    async with connect(server.ws_url, compression=None) as ws:
        await ws.send(msgpack.packb(hello_frame(v.vid, v.sid, re=True)))
        assert msgpack.unpackb(await asyncio.wait_for(ws.recv(), 5))["sid"] == v.sid
        await asyncio.sleep(0.1)
        state = server.session(v.sid)
    assert (state["pages"], state["scroll_pct"], state["page_dwell_ms"]) == (1, 60, 2000)


async def test_a_hello_is_one_redis_command_whether_it_opens_resumes_or_reconnects(serve, redis_url, tmp_path):
    # Issue 16, a cheap hello: the resume check, the page view and the visitor's visit in
    # one script call (there were four commands in three round trips), and the dashboard's
    # index (one key for all, another hash slot) beside it in the same pipeline.
    quiet = tmp_path / "quiet.yaml"
    quiet.write_text("version: 1\nrules: []\n")  # no rule answers a page view: the hello's commands alone
    server = serve("redis", rules=quiet)
    # Every page stays open until the end: a socket's close writes the session's row
    # for training, which must not fall among the next hello's commands.
    first = await Visitor.arrive(server.ws_url, path="/demo/")
    hellos = [dict(vid=first.vid, sid=first.sid, path="/demo/cart"),  # the next page of the visit
              dict(vid=first.vid, sid=first.sid, path="/demo/cart", re=True),  # the same page reconnecting
              dict(vid="v_stranger01", sid=first.sid, path="/demo/"),  # someone else's session id
              dict(vid="v_newcomer01", sid=None, path="/demo/")]
    pages = []
    for h in hellos:
        ws = await connect(server.ws_url, compression=None)
        pages.append(ws)
        with Commands(redis_url) as seen:
            await ws.send(msgpack.packb(hello_frame(**h)))
            welcome = msgpack.unpackb(await asyncio.wait_for(ws.recv(), 5))
        sent = seen.naming(h["vid"], first.sid, welcome["sid"])
        assert [c.split()[0] for c in sent] == ["EVALSHA", "ZADD"], (h, sent)
        assert (welcome["sid"] == first.sid) == (h["vid"] == first.vid)
    state = server.session(first.sid)
    assert (state["pages"], state["path"]) == (2, "/demo/cart"), "the reconnect counted no page view"
    for ws in pages:
        await ws.close()
    await first.leave()

"""POST /b against a real `kairos serve`: a page's last batch, consent withdrawn, and bad beacons."""

from __future__ import annotations

import asyncio
import textwrap
from typing import Any

import httpx
import msgpack
import pytest

from websockets.asyncio.client import connect

from conftest import Server, redis_contents
from wsclient import Visitor, hello_frame


def post(server: Server, body: dict[str, Any] | bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    """What navigator.sendBeacon sends: raw bytes, no content type of ours."""
    data = body if isinstance(body, bytes) else msgpack.packb(body)
    return httpx.post(f"{server.base}/b", content=data, headers=headers or {}, timeout=5)


def last_batch(v: Visitor, *events: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """The beacon the snippet sends when the page is hidden with its socket closed."""
    ev = [{"ts": 1767225600000 + i, **e} for i, e in enumerate(events)]
    return {"v": 1, "t": "events", "site": "demo", "vid": v.vid, "sid": v.sid, "seq": 7, "ev": ev, **extra}


async def assert_unaffected(visitor: Visitor) -> None:
    """A healthy session still gets its nudge: exit intent on a product page -> offer."""
    await visitor.events({"e": "exit_intent"})
    assert (await visitor.expect("show"))["rule"] == "exit-offer"


@pytest.mark.parametrize("engine", ["memory", "redis"])
async def test_a_beacon_after_the_socket_closed_applies_the_last_batch(serve, engine):
    server = serve(engine)
    v = await Visitor.arrive(server.ws_url)
    await v.leave()
    r = post(server, last_batch(v, {"e": "dwell", "ms": 4000}, {"e": "scroll", "pct": 80},
                                {"e": "click", "tag": "a", "k": "size-guide"}, lost=2))
    assert r.status_code == 204 and r.content == b""
    state = server.session(v.sid)
    assert (state["dwell_ms"], state["scroll_pct"], state["clicks"], state["lost"]) == (4000, 80, 1, 2)
    assert any(e.get("e") == "click" and e.get("k") == "size-guide" for e in state["log"]), "the activity log has it"
    assert server.metric("kairos_events_lost_total") == 2 and server.metric("kairos_beacons_total", type="events") == 1


@pytest.mark.parametrize("engine", ["memory", "redis"])
async def test_a_nudge_earned_by_a_beacon_is_not_shown_nor_counted(serve, engine):
    server = serve(engine)
    v = await Visitor.arrive(server.ws_url)  # a product page: exit intent earns the offer
    await v.leave()
    assert post(server, last_batch(v, {"e": "exit_intent", "how": "hidden"})).status_code == 204
    state = server.session(v.sid)
    assert state["exit_intents"] == 1 and state["fired"] == {} and state["onscreen"] is None
    # So the next page of the visit can still show it.
    back = await Visitor.arrive(server.ws_url, vid=v.vid, sid=v.sid)
    await assert_unaffected(back)


async def test_a_delayed_nudge_armed_by_a_beacon_waits_for_the_next_page(serve, tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text(textwrap.dedent("""\
        version: 1
        page_types: {product: /demo/products/*}
        rules:
          - id: come-back
            when: exit_intent
            after: 1s
            offline: next_page
            then: {show: bar, template: bar.html, params: {message: Still here.}}
    """))
    server = serve("redis", rules=rules)
    v = await Visitor.arrive(server.ws_url)
    await v.leave()
    assert post(server, last_batch(v, {"e": "exit_intent", "how": "top"})).status_code == 204
    assert server.session_when(v.sid, lambda s: s["pending"] == ["come-back"], timeout_s=5)["pending"] == ["come-back"]
    back = await Visitor.arrive(server.ws_url, vid=v.vid, sid=v.sid)
    assert (await back.expect("show"))["rule"] == "come-back"


@pytest.mark.parametrize(
    "body,code",
    [
        (b"\xc1", "bad_frame"),
        (msgpack.packb(["events"]), "bad_frame"),
        (msgpack.packb({"v": 2, "t": "events"}), "bad_version"),
        (msgpack.packb({"v": 1, "t": "hello", "site": "demo", "vid": "v_12345678"}), "unknown_type"),
        (msgpack.packb({"v": 1, "t": "events", "site": "demo", "vid": "v_12345678", "seq": 1, "ev": []}), "bad_field"),
        (msgpack.packb({"v": 1, "t": "events", "site": "demo", "vid": "short", "sid": "s_12345678", "seq": 1, "ev": []}),
         "bad_field"),
        (msgpack.packb({"v": 1, "t": "events", "site": "demo", "vid": "v_12345678", "sid": "s_12345678", "seq": 1,
                        "ev": "x"}), "bad_field"),
        (msgpack.packb({"v": 1, "t": "forget", "site": "no spaces", "vid": "v_12345678"}), "bad_field"),
    ],
    ids=["not-msgpack", "not-a-map", "bad-version", "not-a-beacon-type", "events-without-session", "bad-visitor-id",
         "events-not-a-list", "bad-site"],
)
async def test_a_bad_beacon_is_refused_with_400_and_other_sessions_carry_on(serve, body, code):
    server = serve("memory")
    bystander = await Visitor.arrive(server.ws_url)
    r = post(server, body)
    assert r.status_code == 400 and r.json()["error"] == code
    assert server.metric("kairos_refused_total", code=code) == 1
    assert f"refused beacon sid=None code={code}" in server.output(), "every refusal is logged"
    await assert_unaffected(bystander)


async def test_a_bad_event_in_a_beacon_costs_only_that_event(serve):
    server = serve("memory")
    v = await Visitor.arrive(server.ws_url)
    r = post(server, last_batch(v, {"e": "scroll", "pct": "lots"}, {"e": "teleport"}, {"e": "dwell", "ms": 1500}))
    assert r.status_code == 204
    assert server.session(v.sid)["dwell_ms"] == 1500
    assert f"refused beacon sid={v.sid} code=bad_event" in server.output()
    assert f"refused beacon sid={v.sid} code=unknown_event" in server.output()


@pytest.mark.parametrize("engine", ["memory", "redis"])
async def test_an_oversize_beacon_is_refused_with_413(serve, engine):
    server = serve(engine)
    v = await Visitor.arrive(server.ws_url)
    big = last_batch(v, *[{"e": "click", "tag": "a", "id": "x" * 60}] * 300)
    assert len(msgpack.packb(big)) > 16 * 1024
    r = post(server, big)
    assert r.status_code == 413 and r.json()["error"] == "too_large"
    assert server.session(v.sid)["clicks"] == 0


async def test_a_beacon_for_a_session_that_is_not_the_visitors_is_refused_with_404(serve):
    server = serve("memory")
    owner = await Visitor.arrive(server.ws_url)
    stranger = await Visitor.arrive(server.ws_url)
    forged = last_batch(owner, {"e": "click", "tag": "a"}) | {"vid": stranger.vid}
    assert post(server, forged).status_code == 404
    assert post(server, last_batch(owner, {"e": "click", "tag": "a"}) | {"sid": "s_nosuchsession"}).status_code == 404
    assert post(server, last_batch(owner, {"e": "click", "tag": "a"}) | {"site": "other-shop"}).status_code == 404
    assert server.session(owner.sid)["clicks"] == 0


@pytest.mark.parametrize("content_type", [None, "text/plain;charset=UTF-8", "application/octet-stream"])
async def test_any_content_type_is_accepted(serve, content_type):
    server = serve("memory")
    v = await Visitor.arrive(server.ws_url)
    headers = {"content-type": content_type} if content_type else {}
    assert post(server, last_batch(v, {"e": "click", "tag": "a"}), headers).status_code == 204


async def test_a_beacon_from_a_disallowed_origin_is_refused_with_403(serve):
    server = serve("memory", extra=["--allowed-origin", "https://shop.example"])
    ws = await connect(server.ws_url, origin="https://shop.example", compression=None)
    await ws.send(msgpack.packb(hello_frame("v_allowed01")))
    v = Visitor(ws, msgpack.unpackb(await asyncio.wait_for(ws.recv(), 5))["sid"], "v_allowed01")
    batch = last_batch(v, {"e": "click", "tag": "a"})
    assert post(server, batch, {"origin": "https://evil.example"}).status_code == 403
    assert post(server, batch, {"origin": "https://shop.example"}).status_code == 204
    assert post(server, batch).status_code == 204, "no Origin header: not a cross-site page"
    assert server.session(v.sid)["clicks"] == 2


async def test_a_flood_of_beacons_from_one_visitor_is_refused_with_429(serve):
    server = serve("memory")
    v = await Visitor.arrive(server.ws_url)
    other = await Visitor.arrive(server.ws_url)
    body = msgpack.packb(last_batch(v, {"e": "click", "tag": "a"}))
    # All at once, as a misbehaving page would send them: the burst allowance
    # (20) goes through, then 429s. (One after the other, a slow machine let
    # the 10/s refill keep up with them.)
    async with httpx.AsyncClient(timeout=10) as client:
        answers = await asyncio.gather(*(client.post(f"{server.base}/b", content=body) for _ in range(60)))
    codes = [r.status_code for r in answers]
    accepted = codes.count(204)
    assert set(codes) == {204, 429} and 20 <= accepted < 60, codes
    assert server.session(v.sid)["clicks"] == accepted, "a refused beacon is not applied"
    assert post(server, last_batch(other, {"e": "click", "tag": "a"})).status_code == 204, "per visitor"


@pytest.mark.parametrize("engine", ["memory", "redis"])
async def test_forget_erases_the_visitor_and_the_next_hello_starts_fresh(serve, engine, redis_url):
    server = serve(engine)
    v = await Visitor.arrive(server.ws_url)
    await v.events({"e": "exit_intent"})
    await v.expect("show")
    other_tab = await Visitor.arrive(server.ws_url, vid=v.vid)  # a second tab: a session of its own
    await other_tab.leave()
    bystander = await Visitor.arrive(server.ws_url)
    if engine == "redis":
        before = redis_contents(redis_url)
        assert any(v.vid in key for key in before) and any(v.sid in key for key in before)
    r = post(server, {"v": 1, "t": "forget", "site": "demo", "vid": v.vid, "sid": v.sid})
    assert r.status_code == 204
    assert await v.closed_with() == 1000, "the open page's socket is closed, for good"
    await asyncio.sleep(0.2)
    for sid in (v.sid, other_tab.sid):
        assert server.api(f"/api/sessions/{sid}").status_code == 404
    listed = server.api("/api/sessions").json()["sessions"]
    assert [s["sid"] for s in listed] == [bystander.sid]
    if engine == "redis":
        after = redis_contents(redis_url)
        for needle in (v.vid, v.sid, other_tab.sid):
            assert not [k for k, value in after.items() if needle in k or needle in value], needle
    forgot = [line for line in server.output().splitlines() if "forgot a visitor" in line]
    assert len(forgot) == 1 and v.vid not in forgot[0] and v.sid not in forgot[0], "the log keeps no id it erased"
    again = await Visitor.arrive(server.ws_url, vid=v.vid, sid=v.sid)
    assert again.sid != v.sid
    state = server.session(again.sid)
    assert (state["pages"], state["fired"]) == (1, {})
    await assert_unaffected(again)  # no show history: the offer is theirs to see again


async def test_forget_naming_another_visitors_session_erases_only_the_visitor(serve):
    server = serve("memory")
    owner = await Visitor.arrive(server.ws_url)
    r = post(server, {"v": 1, "t": "forget", "site": "demo", "vid": "v_stranger01", "sid": owner.sid})
    assert r.status_code == 204
    assert server.session(owner.sid)["vid"] == owner.vid
    await assert_unaffected(owner)


async def test_forget_without_a_session_id_erases_the_visitor(serve):
    server = serve("memory")
    v = await Visitor.arrive(server.ws_url)
    await v.leave()
    assert post(server, {"v": 1, "t": "forget", "site": "demo", "vid": v.vid, "sid": None}).status_code == 204
    assert server.api(f"/api/sessions/{v.sid}").status_code == 404


@pytest.mark.parametrize("header", ["DNT", "Sec-GPC"])
async def test_a_beacon_from_a_browser_asking_not_to_be_tracked_is_refused_but_forget_is_not(serve, header):
    # The browser's own header counts, whatever the page's code put in the body.
    server = serve("memory")
    v = await Visitor.arrive(server.ws_url)
    await v.leave()
    r = post(server, last_batch(v, {"e": "click", "tag": "a"}), {header: "1"})
    assert (r.status_code, r.json()["error"]) == (403, "no_consent")
    assert server.session(v.sid)["clicks"] == 0, "nothing of it kept"
    assert post(server, last_batch(v, {"e": "click", "tag": "a"}), {header: "0"}).status_code == 204
    assert server.session(v.sid)["clicks"] == 1
    # Erasing is what such a visitor wants most: always done.
    assert post(server, {"v": 1, "t": "forget", "site": "demo", "vid": v.vid, "sid": v.sid}, {header: "1"}).status_code == 204
    assert server.api(f"/api/sessions/{v.sid}").status_code == 404

"""Wire protocol v1: the shared example frames, limits, and the rate limiter."""

from __future__ import annotations

import json
from pathlib import Path

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kairos import wire

FRAMES = Path(__file__).resolve().parents[1] / "docs" / "frames"
VALID = json.loads((FRAMES / "valid.json").read_text())
INVALID = json.loads((FRAMES / "invalid.json").read_text())


@pytest.mark.parametrize("case", VALID, ids=[c["name"] for c in VALID])
def test_example_frames_are_the_bytes_msgpack_makes(case):
    assert msgpack.packb(case["frame"]).hex() == case["hex"]


@pytest.mark.parametrize("case", [c for c in VALID if c["dir"] == "c2s"], ids=lambda c: c["name"])
def test_every_client_example_decodes_without_problems(case):
    frame = wire.decode(bytes.fromhex(case["hex"]))
    assert not isinstance(frame, wire.WireError), frame
    assert not getattr(frame, "problems", [])


@pytest.mark.parametrize("case", [c for c in VALID if c["dir"] == "beacon"], ids=lambda c: c["name"])
def test_every_beacon_example_decodes_without_problems(case):
    beacon = wire.decode_beacon(bytes.fromhex(case["hex"]))
    assert isinstance(beacon, (wire.BeaconEvents, wire.Forget)), beacon
    assert (beacon.site, beacon.vid, beacon.sid) == ("demo", "v_4f9c2a7d1e", "s_8b1d0c3f55")
    if isinstance(beacon, wire.BeaconEvents):
        assert beacon.batch.lost == 1 and [e.type for e in beacon.batch.events] == ["dwell", "exit_intent"]


@pytest.mark.parametrize(
    "body,code",
    [
        ({"v": 1, "t": "events", "site": "demo", "vid": "v_12345678", "seq": 1, "ev": []}, "bad_field"),
        ({"v": 1, "t": "events", "site": "demo", "vid": "v_12345678", "sid": "s_1", "seq": 1, "ev": []}, "bad_field"),
        ({"v": 1, "t": "forget", "vid": "v_12345678"}, "bad_field"),
        ({"v": 1, "t": "feedback", "oid": "x", "act": "shown", "ts": 1}, "unknown_type"),
        ({"v": 3, "t": "forget"}, "bad_version"),
    ],
    ids=["events-without-session", "short-session-id", "forget-without-site", "not-a-beacon-type", "bad-version"],
)
def test_bad_beacons_are_refused_with_a_reason(body, code):
    assert wire.decode_beacon(msgpack.packb(body)).code == code


def test_a_forget_may_name_no_session():
    forget = wire.decode_beacon(msgpack.packb({"v": 1, "t": "forget", "site": "demo", "vid": "v_12345678", "sid": None}))
    assert forget == wire.Forget("demo", "v_12345678", None)


def test_a_beacon_over_the_limit_is_refused_before_decoding():
    assert wire.decode_beacon(b"\x80" * (wire.MAX_FRAME_BYTES + 1)).code == "too_large"


@given(st.binary(max_size=512))
def test_decoding_a_beacon_never_raises(data):
    assert wire.decode_beacon(data) is not None


def test_the_welcome_example_carries_the_default_tracking_settings():
    from kairos.settings import TRACK_DEFAULTS

    assert next(c for c in VALID if c["name"] == "welcome")["frame"]["track"] == TRACK_DEFAULTS


def test_hello_decodes_to_its_fields():
    frame = wire.decode(bytes.fromhex(VALID[0]["hex"]))
    assert isinstance(frame, wire.Hello)
    assert (frame.site, frame.vid, frame.sid, frame.tz, frame.vp) == ("demo", "v_4f9c2a7d1e", None, 60, None)
    assert frame.page.prod == {"name": "Linen shirt", "price": 59.9, "cur": "EUR", "sku": "LS-01", "img": "/static/shirt.svg"}
    # k.js no longer sends the viewport; a hello from an earlier k.js, with it, is still read
    declared = wire.decode(bytes.fromhex(next(c for c in VALID if c["name"] == "hello_declared")["hex"]))
    assert declared.vp == (1280, 800)


def test_the_example_batches_carry_every_event_type():
    batches = [wire.decode(bytes.fromhex(c["hex"])) for c in VALID if c["frame"].get("t") == "events"]
    assert {e.type for frame in batches for e in frame.events} == set(wire.EVENT_TYPES)


def test_the_later_events_decode_to_their_fields():
    frame = wire.decode(bytes.fromhex(next(c for c in VALID if c["name"] == "events_more")["hex"]))
    by_type = {e.type: e.fields for e in frame.events}
    assert frame.lost == 3 and not frame.problems
    assert by_type["page_view"]["type"] == "product"
    assert by_type["click"] == {"tag": "button", "id": "size-m", "text": "M", "ka": {"size": "m", "slot": "size-picker"}}
    assert by_type["rage_click"]["n"] == 4
    assert by_type["exit_intent"] == {"how": "top"}
    assert by_type["hesitation"] == {"field": "email", "ms": 16000}
    assert by_type["custom"] == {"name": "size_guide.open", "props": {"from": "product", "rating": 4.5, "first": True, "ref": None}}


def test_a_batch_without_lost_lost_nothing():
    frame = wire.decode(bytes.fromhex(next(c for c in VALID if c["name"] == "events")["hex"]))
    assert frame.lost == 0


@pytest.mark.parametrize("case", [c for c in VALID if c["dir"] == "s2c"], ids=lambda c: c["name"])
def test_server_frames_encode_to_the_example_bytes(case):
    f = case["frame"]
    built = {
        "welcome": lambda: wire.welcome(f["sid"], f["track"], max_frame=f["max_frame"], max_events=f["max_events"]),
        "show": lambda: wire.show(f["oid"], f["kind"], f["html"], f["css"], f["place"], f["ttl_ms"], f["rule"],
                                  f.get("scope", "")),
        "hide": lambda: wire.hide(f["oid"], f.get("why", "")),
        "error": lambda: wire.error(wire.WireError(f["code"], f["msg"], seq=f["seq"])),
    }[f["t"]]()
    assert built.hex() == case["hex"]


@pytest.mark.parametrize("case", INVALID, ids=[c["name"] for c in INVALID])
def test_each_invalid_example_is_refused_with_its_code(case):
    frame = wire.decode(bytes.fromhex(case["hex"]))
    if isinstance(frame, wire.Events):  # refusals inside a batch
        assert [p.code for p in frame.problems] == [case["error"]]
        assert len(frame.events) == 1, "the good event of the batch survives"
    else:
        assert isinstance(frame, wire.WireError)
        assert (frame.code, frame.close) == (case["error"], case["close"])


def test_a_frame_over_the_limit_is_refused_before_decoding():
    err = wire.decode(b"\x80" * (wire.MAX_FRAME_BYTES + 1))
    assert (err.code, err.close) == ("too_large", 1009)


def test_a_batch_over_the_event_limit_keeps_the_first_events():
    raw = msgpack.packb({"v": 1, "t": "events", "seq": 1, "ev": [{"e": "click", "ts": i, "tag": "a"} for i in range(60)]})
    frame = wire.decode(raw)
    assert [e.ts for e in frame.events] == list(range(wire.MAX_EVENTS))
    assert [p.code for p in frame.problems] == ["too_many_events"]


@pytest.mark.parametrize(
    "event,code",
    [
        ({"e": "scroll", "ts": 1, "pct": 101}, "bad_event"),
        ({"e": "scroll", "ts": 1, "pct": True}, "bad_event"),
        ({"e": "cart", "ts": 1, "value": float("nan"), "items": 1}, "bad_event"),
        ({"e": "cart", "ts": 1, "value": -1, "items": 1}, "bad_event"),
        ({"e": "click", "ts": 1, "tag": "a", "id": "x" * 65}, "bad_event"),
        ({"e": "click", "ts": -5, "tag": "a"}, "bad_event"),
        ({"e": "dwell", "ts": 1}, "bad_event"),
        ({"e": "click", "ts": 1, "tag": "a", "text": "x" * 65}, "bad_event"),
        ({"e": "click", "ts": 1, "tag": "a", "ka": {f"k{i}": "v" for i in range(9)}}, "bad_event"),
        ({"e": "click", "ts": 1, "tag": "a", "ka": {"x" * 33: "v"}}, "bad_event"),
        ({"e": "click", "ts": 1, "tag": "a", "ka": {"size": 3}}, "bad_event"),
        ({"e": "click", "ts": 1, "tag": "a", "ka": ["size"]}, "bad_event"),
        ({"e": "rage_click", "ts": 1, "tag": "a", "n": 1}, "bad_event"),
        ({"e": "rage_click", "ts": 1, "tag": "a", "n": 101}, "bad_event"),
        ({"e": "rage_click", "ts": 1, "n": 3}, "bad_event"),
        ({"e": "exit_intent", "ts": 1, "how": "left"}, "bad_event"),
        ({"e": "exit_intent", "ts": 1, "how": 1}, "bad_event"),
        ({"e": "idle_end", "ts": 1}, "bad_event"),
        ({"e": "hesitation", "ts": 1, "ms": 16000}, "bad_event"),
        ({"e": "hesitation", "ts": 1, "field": "email"}, "bad_event"),
        ({"e": "hesitation", "ts": 1, "field": "e" * 65, "ms": 1}, "bad_event"),
        ({"e": "copy", "ts": 1, "tag": "x" * 17}, "bad_event"),
        ({"e": "identify", "ts": 1, "uid": ""}, "bad_event"),
        ({"e": "identify", "ts": 1, "uid": "u" * 129}, "bad_event"),
        ({"e": "identify", "ts": 1}, "bad_event"),
        ({"e": "custom", "ts": 1}, "bad_event"),
        ({"e": "custom", "ts": 1, "name": ""}, "bad_event"),
        ({"e": "custom", "ts": 1, "name": "n" * 65}, "bad_event"),
        ({"e": "custom", "ts": 1, "name": "two words"}, "bad_event"),
        ({"e": "custom", "ts": 1, "name": "ok", "props": {f"p{i}": 1 for i in range(17)}}, "bad_event"),
        ({"e": "custom", "ts": 1, "name": "ok", "props": {"p" * 33: 1}}, "bad_event"),
        ({"e": "custom", "ts": 1, "name": "ok", "props": {"p": "v" * 257}}, "bad_event"),
        ({"e": "custom", "ts": 1, "name": "ok", "props": {"p": float("inf")}}, "bad_event"),
        ({"e": "custom", "ts": 1, "name": "ok", "props": {"p": [1, 2]}}, "bad_event"),
        ({"e": "custom", "ts": 1, "name": "ok", "props": {"p": {"deep": 1}}}, "bad_event"),
        ({"e": "custom", "ts": 1, "name": "ok", "props": "p"}, "bad_event"),
        ("click", "bad_event"),
        ({"ts": 1}, "unknown_event"),
    ],
)
def test_bad_events_are_refused_with_a_reason(event, code):
    err = wire.decode_event(event, 3)
    assert isinstance(err, wire.WireError) and err.code == code
    assert err.msg.startswith("event 3:")


def test_unknown_keys_are_ignored_so_newer_snippets_still_work():
    ev = wire.decode_event({"e": "scroll", "ts": 1, "pct": 20, "velocity": 9})
    assert ev.fields == {"pct": 20}


def test_a_refused_user_id_is_not_quoted_in_the_refusal():
    err = wire.decode_event({"e": "identify", "ts": 1, "uid": "jane@example.com" * 10})
    assert err.code == "bad_event" and "jane" not in err.msg


@pytest.mark.parametrize("how", sorted(wire.EXIT_HOWS))
def test_exit_intent_says_how_it_showed(how):
    assert wire.decode_event({"e": "exit_intent", "ts": 1, "how": how}).fields == {"how": how}


def test_custom_props_take_strings_numbers_booleans_and_nil():
    props = {"s": "x" * 256, "i": -3, "f": 0.25, "b": False, "n": None}
    assert wire.decode_event({"e": "custom", "ts": 1, "name": "a.b:c-d_e", "props": props}).fields["props"] == props


def test_form_values_have_no_place_in_a_click():
    ev = wire.decode_event({"e": "click", "ts": 1, "tag": "input", "value": "jane@example.com"})
    assert "value" not in ev.fields


@given(st.binary(max_size=512))
def test_decoding_never_raises(data):
    assert wire.decode(data) is not None


@given(st.recursive(st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
                    max_leaves=20))
def test_decoding_any_msgpack_value_never_raises(value):
    frame = wire.decode(msgpack.packb({"v": 1, "t": "events", "seq": 1, "ev": [value]}))
    assert isinstance(frame, (wire.Events, wire.WireError))


def test_rate_limits_are_per_key_and_remember_only_the_latest_keys():
    limits = wire.RateLimits(burst=2, per_s=1, max_keys=3)
    assert [limits.allow("a", 0.0) for _ in range(3)] == [True, True, False]
    assert limits.allow("b", 0.0), "another visitor has a bucket of its own"
    for key in ("c", "d"):
        limits.allow(key, 0.0)
    assert len(limits) == 3, "the oldest key was dropped"
    assert limits.allow("a", 0.0), "a forgotten key starts again with a full bucket"


def test_rate_limit_allows_a_burst_then_the_sustained_rate():
    limit = wire.RateLimit(burst=20, per_s=10)
    assert sum(limit.allow(0.0) for _ in range(25)) == 20
    assert sum(limit.allow(1.0) for _ in range(25)) == 10
    assert sum(limit.allow(100.0) for _ in range(25)) == 20, "tokens do not pile up beyond the burst"


# --- the product on a page: from the meta tags, or from the store, read leniently ---


def _hello(page: dict) -> wire.Hello:
    frame = {"v": 1, "t": "hello", "site": "demo", "vid": "v_4f9c2a7d1e", "sid": None, "page": page, "consent": True}
    decoded = wire.decode(msgpack.packb(frame))
    assert isinstance(decoded, wire.Hello), decoded
    return decoded


def test_the_product_is_read_from_the_pages_open_graph_tags():
    meta = {"og:type": " Product ", "og:title": "Mug", "product:price:amount": "12,50", "product:category": "Kitchen",
            "og:description": "A mug", "og:locale": "de_DE"}
    page = _hello({"url": "https://s.example/p", "path": "/p", "meta": meta}).page
    assert page.prod == {"name": "Mug", "price": 12.5, "cat": "Kitchen"}
    # not a product page: no product, whatever the other tags say
    page = _hello({"url": "https://s.example/a", "path": "/a", "meta": {"og:type": "article", "og:title": "News"}}).page
    assert page.prod is None


def test_a_stores_product_is_normalised_never_refused():
    prod = {"name": "  Linen shirt ", "price": "1,299.00", "cur": "EURO", "sku": 1042, "img": ["x"], "extra": 1}
    page = _hello({"url": "https://s.example/p", "path": "/p", "prod": prod,
                   "meta": {"og:type": "product", "og:title": "Not this one"}}).page
    assert page.prod == {"name": "Linen shirt", "price": 1299.0, "cur": "EUR", "sku": "1042"}, "the store's product wins"
    assert _hello({"url": "u", "path": "/", "prod": "a string"}).page.prod is None
    assert _hello({"url": "u", "path": "/", "prod": {"price": "call us"}}).page.prod is None


@pytest.mark.parametrize(("written", "amount"), [
    ("49", 49.0), ("49.90", 49.9), ("12,50", 12.5), ("1,299.00", 1299.0), ("1.299,00", 1299.0),
    ("1 299,00", 1299.0), ("1'299.00", 1299.0), (59.9, 59.9), (0, 0.0),
    ("-5", None), ("call us", None), (True, None), (float("nan"), None), ("1e12", None),
])
def test_prices_as_stores_write_them(written, amount):
    assert wire.price(written) == amount


def test_meta_tags_are_bounded_and_a_bad_meta_map_is_refused():
    many = {f"og:t{i}": "x" * 100 for i in range(50)}
    page = _hello({"url": "u", "path": "/", "meta": {"og:type": "product", **many, "og:title": "Late"}}).page
    assert page.prod is None, "only the first 32 tags are read"
    refused = wire.decode(msgpack.packb({"v": 1, "t": "hello", "site": "demo", "vid": "v_4f9c2a7d1e", "sid": None,
                                         "page": {"url": "u", "path": "/", "meta": ["og:type"]}, "consent": True}))
    assert isinstance(refused, wire.WireError) and refused.code == "bad_field"


@pytest.mark.parametrize("headers,signal", [
    ({}, None),
    ({"DNT": "1"}, "dnt"),
    ({"dnt": " 1 "}, "dnt"),
    ({"DNT": "0"}, None),
    ({"Sec-GPC": "1"}, "gpc"),
    ({"sec-gpc": "0"}, None),
    ({"DNT": "0", "Sec-GPC": "1"}, "gpc"),
    ({"DNT": "yes"}, None),
])
def test_the_browsers_privacy_headers_are_read(headers, signal):
    from starlette.datastructures import Headers

    assert wire.privacy_signal(Headers(headers=headers)) == signal


def test_a_hidden_feedback_says_why_and_only_a_known_why():
    frame = wire.decode(bytes.fromhex(next(c for c in VALID if c["name"] == "feedback_hidden")["hex"]))
    assert (frame.act, frame.why) == ("hidden", "page")
    dismissed = msgpack.packb({"v": 1, "t": "feedback", "oid": "x.1", "act": "dismissed", "ts": 1, "why": "page"})
    assert isinstance(wire.decode(dismissed), wire.WireError)


@pytest.mark.parametrize("frame,code", [
    ({"v": 1, "t": "x" * 10_000}, "unknown_type"),
    ({"v": 1, "t": "events", "seq": 1, "ev": [{"e": "x" * 10_000, "ts": 1}]}, "unknown_event"),
    ({"v": "x" * 10_000, "t": "events"}, "bad_version"),
])
def test_a_refusal_repeats_at_most_a_few_dozen_characters_of_the_clients_string(frame, code):
    decoded = wire.decode(msgpack.packb(frame))
    err = decoded.problems[0] if isinstance(decoded, wire.Events) else decoded
    assert err.code == code
    assert "xxxx" in err.msg and len(err.msg) < 120, err.msg


def test_every_close_code_the_server_sends_is_in_the_protocols_table():
    doc = (FRAMES.parent / "protocol.md").read_text()
    table = doc.split("Close codes:", 1)[1].split("\n\n", 2)[1]
    listed = {int(line.split("|")[1]) for line in table.splitlines() if line.startswith("| ") and line.split("|")[1].strip().isdigit()}
    sent = {value for name, value in vars(wire).items() if name.startswith("CLOSE_")}
    assert sent <= listed, f"missing from docs/protocol.md: {sorted(sent - listed)}"
    assert {1002, 1007, 1012} <= sent


@pytest.mark.parametrize("v", [1.0, True, "1"])
def test_only_the_integer_1_is_version_1(v):
    err = wire.decode(msgpack.packb({"v": v, "t": "events", "seq": 1, "ev": [{"e": "dwell", "ts": 1, "ms": 1}]}))
    assert (err.code, err.close) == ("bad_version", 4001)

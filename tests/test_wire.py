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


def test_hello_decodes_to_its_fields():
    frame = wire.decode(bytes.fromhex(VALID[0]["hex"]))
    assert isinstance(frame, wire.Hello)
    assert (frame.site, frame.vid, frame.sid, frame.tz, frame.vp) == ("demo", "v_4f9c2a7d1e", None, 60, (1280, 800))
    assert frame.page.prod == {"name": "Linen shirt", "price": 59.9, "cur": "EUR", "sku": "LS-01", "img": "/static/shirt.svg"}


def test_the_example_batch_carries_every_event_type():
    batch = next(c for c in VALID if c["name"] == "events")
    frame = wire.decode(bytes.fromhex(batch["hex"]))
    assert {e.type for e in frame.events} | {"exit_intent"} == set(wire.EVENT_TYPES)


@pytest.mark.parametrize("case", [c for c in VALID if c["dir"] == "s2c"], ids=lambda c: c["name"])
def test_server_frames_encode_to_the_example_bytes(case):
    f = case["frame"]
    built = {
        "welcome": lambda: wire.welcome(f["sid"], f["track"], max_frame=f["max_frame"], max_events=f["max_events"]),
        "show": lambda: wire.show(f["oid"], f["kind"], f["html"], f["css"], f["place"], f["ttl_ms"], f["rule"]),
        "hide": lambda: wire.hide(f["oid"]),
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


def test_rate_limit_allows_a_burst_then_the_sustained_rate():
    limit = wire.RateLimit(burst=20, per_s=10)
    assert sum(limit.allow(0.0) for _ in range(25)) == 20
    assert sum(limit.allow(1.0) for _ in range(25)) == 10
    assert sum(limit.allow(100.0) for _ in range(25)) == 20, "tokens do not pile up beyond the burst"

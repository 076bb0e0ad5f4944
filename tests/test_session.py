"""Session ops: what a batch does to the stored session, without an engine."""

from __future__ import annotations

import hashlib
import hmac
import json
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kairos.session import (
    KEEP_OVERLAYS, MAX_CUSTOM_NAMES, SessionState, apply_ops, claim_show, event_log, event_ops, hello_ops, record_feedback,
    record_show, uid_hash,
)
from kairos.wire import Event, Hello, Page


def classify(path: str, declared: str = "") -> str:
    if declared in ("cart", "product"):
        return declared
    return {"/cart": "cart"}.get(path, "other")


def state_after(*batches, h=None) -> SessionState:
    h = {} if h is None else h
    for batch in batches:
        apply_ops(h, event_ops(batch, classify, 1000))
    return SessionState.from_hash("s_test0001", h)


def test_dwell_adds_up_and_scroll_keeps_the_deepest_point():
    s = state_after([Event("dwell", 1, {"ms": 500}), Event("scroll", 2, {"pct": 60})],
                    [Event("dwell", 3, {"ms": 700}), Event("scroll", 4, {"pct": 30})])
    assert (s.dwell_ms, s.page_dwell_ms, s.scroll_pct) == (1200, 1200, 60)


def test_a_page_view_starts_the_page_counters_again_but_not_the_session_ones():
    s = state_after([Event("dwell", 1, {"ms": 500}), Event("scroll", 2, {"pct": 60}),
                     Event("page_view", 3, {"url": "http://x/cart", "path": "/cart"}), Event("scroll", 4, {"pct": 10})])
    assert (s.page_type, s.pages, s.scroll_pct, s.page_dwell_ms, s.dwell_ms) == ("cart", 1, 10, 0, 500)


def test_cart_and_purchase():
    s = state_after([Event("cart", 1, {"value": 119.8, "items": 2, "cur": "EUR"}), Event("checkout", 2, {"step": "payment"})])
    assert (s.cart_value, s.cart_items, s.currency, s.checkout_step) == (119.8, 2, "EUR", "payment")
    s = state_after([Event("purchase", 3, {"value": 119.8})])
    assert (s.purchases, s.cart_value, s.cart_items) == (1, 0.0, 0)


def test_a_page_view_takes_the_page_type_the_store_declares():
    s = state_after([Event("page_view", 1, {"url": "http://x/item/7", "path": "/item/7", "type": "product"})])
    assert s.page_type == "product"
    s = state_after([Event("page_view", 1, {"url": "http://x/cart", "path": "/cart", "type": "basket"})])
    assert s.page_type == "cart", "a type the rules do not know leaves the path to decide"


def test_rage_clicks_hesitations_and_copies_are_counted_apart_from_clicks():
    s = state_after([Event("click", 1, {"tag": "a"}), Event("rage_click", 2, {"tag": "button", "n": 4}),
                     Event("hesitation", 3, {"field": "email", "ms": 16000}), Event("copy", 4, {}),
                     Event("copy", 5, {"tag": "code"})])
    assert (s.clicks, s.rage_clicks, s.hesitations, s.copies) == (1, 1, 1, 2)
    assert s.counts == {"click": 1, "rage_click": 1, "hesitation": 1, "copy": 2}


def test_coming_back_from_idle_clears_the_idle_time():
    s = state_after([Event("idle", 1, {"ms": 30000})])
    assert s.idle_ms == 30000
    s = state_after([Event("idle", 1, {"ms": 30000}), Event("idle_end", 2, {"ms": 42000})])
    assert (s.idle_ms, s.counts["idle_end"]) == (0, 1)


KEY = b"an installation's identify secret"


def test_identify_keeps_a_keyed_hash_of_the_user_id_for_the_site():
    h: dict[str, str] = {}
    apply_ops(h, event_ops([Event("identify", 1, {"uid": "customer-1042"})], classify, 1000, site="demo",
                           identify_key=KEY))
    assert h["uid"] == uid_hash(KEY, "demo", "customer-1042") != uid_hash(KEY, "other-shop", "customer-1042")
    assert len(h["uid"]) == 32 and "customer-1042" not in h.values()
    assert SessionState.from_hash("s_x", h).uid == h["uid"]


def test_the_identify_hash_cannot_be_recomputed_without_the_installations_secret():
    # A list of emails and the public site key are not enough (finding 7 of issue 13).
    kept = uid_hash(KEY, "demo", "jane@example.com")
    assert kept != hashlib.sha256(b"demo:jane@example.com").hexdigest()[:32]
    assert kept != uid_hash(b"another installation's secret", "demo", "jane@example.com")
    assert kept == hmac.new(KEY, b"demo:jane@example.com", hashlib.sha256).hexdigest()[:32]


def test_an_identify_without_a_key_is_refused_rather_than_hashed_weakly():
    with pytest.raises(ValueError, match="identify key"):
        event_ops([Event("identify", 1, {"uid": "customer-1042"})], classify, 1000, site="demo")


def test_the_activity_log_never_holds_the_raw_user_id():
    lines = event_log([Event("identify", 1, {"uid": "jane@example.com"})], 1000, site="demo", identify_key=KEY)
    assert len(lines) == 1 and "jane" not in lines[0]
    assert uid_hash(KEY, "demo", "jane@example.com") in lines[0]


def test_custom_events_are_counted_by_name_for_the_first_names_only():
    names = [f"n{i}" for i in range(MAX_CUSTOM_NAMES + 5)]
    s = state_after([Event("custom", 1, {"name": n}) for n in names], [Event("custom", 2, {"name": "n0"})],
                    [Event("custom", 3, {"name": f"n{MAX_CUSTOM_NAMES + 1}"})])
    assert len(s.custom) == MAX_CUSTOM_NAMES
    assert s.custom["n0"] == 2 and f"n{MAX_CUSTOM_NAMES}" not in s.custom
    assert s.counts["custom"] == MAX_CUSTOM_NAMES + 7, "every custom event counts under n:custom"


def test_hello_records_where_the_visit_came_from_once():
    page = Page(url="https://s/p?utm_source=mail&utm_campaign=june&q=secret", path="/p", ref="https://news.example/")
    h: dict[str, str] = {}
    apply_ops(h, hello_ops(Hello("demo", "v_12345678", None, page, True, False, False), "other", 5))
    later = Page(url="https://s/cart?utm_source=other", path="/cart", ref="https://s/p")
    apply_ops(h, hello_ops(Hello("demo", "v_12345678", "s_x", later, True, False, False), "cart", 6))
    s = SessionState.from_hash("s_x", h)
    assert s.utm == {"utm_source": "mail", "utm_campaign": "june"}, "only UTM keys, only from the first page"
    assert (s.referrer, s.pages, s.started_ms, s.connected) == ("https://news.example/", 2, 5, 2)


@given(st.lists(st.tuples(st.sampled_from(["dwell", "scroll", "click"]), st.integers(0, 100)), max_size=40), st.randoms())
def test_commutative_ops_give_the_same_state_in_any_order(items, rnd: random.Random):
    """Two racing batches may land in either order; counters and maxima must not care."""
    fields = {"dwell": "ms", "scroll": "pct", "click": "tag"}
    events = [Event(k, 0, {fields[k]: (n if k != "click" else "a")}) for k, n in items]
    shuffled = list(events)
    rnd.shuffle(shuffled)
    a, b = state_after(*[[e] for e in events]), state_after(*[[e] for e in shuffled])
    assert (a.dwell_ms, a.scroll_pct, a.clicks) == (b.dwell_ms, b.scroll_pct, b.clicks)


@given(st.lists(st.tuples(st.sampled_from(["claim", "dismiss", "expire"]), st.integers(0, 3), st.integers(0, 5)), max_size=60),
       st.integers(1, 3))
def test_caps_hold_whatever_the_sequence(steps, cap):
    """No rule is shown more than its cap; a dismissed rule is never shown again; one overlay at a time."""
    h = {"vid": "v_x"}
    shown: dict[str, int] = {}
    dismissed: set[str] = set()
    n = 0
    for action, rule_no, prio in steps:
        rule = f"r{rule_no}"
        if action == "claim":
            n += 1
            before_on = h.get("on")
            verdict = claim_show(h, rule, f"{rule}.{n}", cap, prio)
            if verdict == "ok":
                shown[rule] = shown.get(rule, 0) + 1
                assert rule not in dismissed
                assert before_on is None or prio > int(h[f"p:{before_on}"])
                assert h["on"] == f"{rule}.{n}"
        elif h.get("on"):
            oid = h["on"]
            record_feedback(h, oid, "dismissed" if action == "dismiss" else "expired")
            if action == "dismiss":
                dismissed.add(h[f"r:{oid}"])
            assert "on" not in h
    assert all(count <= cap for count in shown.values())


def test_a_session_keeps_its_last_overlays_and_every_rule_count_however_many_shows() -> None:
    h: dict[str, str] = {"started_ms": "1"}
    for i in range(3000):
        record_show(h, f"rule{i % 3}", f"o{i}", 1, placed="x")
        assert record_feedback(h, f"o{i}", "expired")
    state = SessionState.from_hash("s", h)
    assert list(state.overlays) == [f"o{i}" for i in range(3000 - KEEP_OVERLAYS, 3000)]
    assert state.fired == {"rule0": 1000, "rule1": 1000, "rule2": 1000}
    # started_ms, f: per rule, the overlays' status, rule and priority, the list; where an
    # overlay lives (w:) only while it is on screen
    assert len(h) == 1 + 3 + 3 * KEEP_OVERLAYS + 1


def test_where_an_overlay_lives_is_kept_while_it_is_on_screen() -> None:
    h: dict[str, str] = {"started_ms": "1"}
    record_show(h, "a", "o1", 1, placed="page|product|0|/p")
    assert SessionState.from_hash("s", h).onscreen_at == "page|product|0|/p"
    record_show(h, "b", "o2", 2, placed="site||0|")
    assert "w:o1" not in h and h["o:o1"] == "replaced"
    assert SessionState.from_hash("s", h).onscreen_at == "site||0|"
    assert record_feedback(h, "o2", "dismissed")
    assert [k for k in h if k.startswith("w:")] == []


def test_the_timeline_keeps_what_a_person_reads_and_counts_the_rest() -> None:
    events = [Event("click", 1, {"tag": "a", "text": "Shirts"}), Event("dwell", 2, {"ms": 1000}),
              Event("scroll", 3, {"pct": 40}), Event("rage_click", 4, {"tag": "button"}),
              Event("add_to_cart", 5, {"sku": "X"}), Event("click", 6, {"tag": "button", "k": "size-guide"}),
              Event("click", 7, {"tag": "button", "ka": {"sku": "X"}}), Event("click", 8, {"tag": "div"})]
    lines = [json.loads(line) for line in event_log(events, 1000)]
    assert [(e["e"], e.get("k") or e.get("ka")) for e in lines] == [
        ("rage_click", None), ("add_to_cart", None), ("click", "size-guide"), ("click", {"sku": "X"})]
    h: dict[str, str] = {}
    apply_ops(h, event_ops(events, lambda path, declared: "other", 1000))
    assert (h["clicks"], h["rage_clicks"], h["dwell_ms"], h["scroll_pct"]) == ("4", "1", "1000", "40")


def test_a_stored_session_reads_the_same_whichever_field_is_read_first() -> None:
    """SessionState.from_hash parses a field when it is first read: any order gives the same state."""
    h = {"vid": "v_1", "pages": "3", "cart_value": "12.5", "page_type": "product", "product": '{"name": "Shirt"}',
         "utm": '{"utm_source": "mail"}', "on": "o2", "w:o2": "site||0|", "w:o1": "page|x|0|/p", "f:a": "2",
         "n:click": "7", "x:t": "1", "c:promo": "4", "pt:product": "3", "pd:product": "900", "o:o2": "sent",
         "r:o2": "a", "p:o2": "5", "d:b": "1", "sp:buy|dwell": "0.5 10 60000", "sb:buy": "-2.0", "cn:n1": "1",
         "cn:n2": "0", "some:future": "field"}
    want = {"vid": "v_1", "pages": 3, "cart_value": 12.5, "page_type": "product", "product": {"name": "Shirt"},
            "utm": {"utm_source": "mail"}, "onscreen": "o2", "onscreen_at": "site||0|", "fired": {"a": 2},
            "counts": {"click": 7}, "timer_fires": {"t": 1}, "custom": {"promo": 4}, "type_pages": {"product": 3},
            "type_dwell_ms": {"product": 900}, "dismissed": {"b"}, "sockets": {"n1": 1}, "clicks": 0, "url": "",
            "overlays": {"o2": ("a", "sent", 5)}, "scores": ({"buy|dwell": "0.5 10 60000"}, {"buy": "-2.0"})}
    shapes = {"overlays": lambda o: {k: (v.rule, v.status, v.priority) for k, v in o.items()},
              "scores": lambda sc: (sc.stored, sc.stored_bias)}
    for order in (list(want), list(reversed(want)), random.Random(7).sample(list(want), len(want))):
        state = SessionState.from_hash("s_1", h)
        got = {name: shapes.get(name, lambda v: v)(getattr(state, name)) for name in order}
        assert got == want, order
    # Read whole, it equals the state built with those values.
    assert SessionState.from_hash("s_1", {"pages": "2", "d:x": "1"}) == SessionState(sid="s_1", pages=2, dismissed={"x"})


def test_a_state_read_from_a_hash_does_not_change_with_the_hash_or_lose_what_was_set_on_it() -> None:
    h = {"pages": "1", "f:a": "1"}
    state = SessionState.from_hash("s_1", h)
    h["pages"], h["f:a"], h["d:a"] = "9", "9", "1"
    state.clicks = 4
    assert (state.pages, state.fired, state.dismissed, state.clicks) == (1, {"a": 1}, set(), 4)
    with pytest.raises(AttributeError):
        state.no_such_field

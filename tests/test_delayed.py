"""Delayed rules, the pure part: arming, re-arming, and cancelling."""

from __future__ import annotations

import textwrap

import pytest

from kairos.rules import RulesError, cancelled_by, parse_rules, timers_to_arm
from kairos.rules.delayed import spent
from kairos.rules.model import parse_duration
from kairos.session import SessionState
from kairos.wire import Event

TEMPLATES = {"offer.html", "bar.html", "chat.html"}
REMINDER = """\
version: 1
page_types: {product: /p/*, checkout: /checkout}
rules:
  - id: reminder
    when: page_view
    if: {page_type: product}
    after: 3m
    unless: [add_to_cart, purchase, {page_type: checkout}]
    offline: next_page
    then: {show: bar, template: bar.html}
"""
VIEW = Event("page_view", 1, {"url": "u", "path": "/p/x"})


def state(**kw) -> SessionState:
    return SessionState(sid="s_delay0001", **kw)


@pytest.mark.parametrize("text,seconds", [(90, 90.0), ("90s", 90.0), ("3m", 180.0), ("1h30m", 5400.0), ("2m30s", 150.0), ("0.5s", 0.5)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["3 minutes", "", "0s", "25h", True, "-5s"])
def test_bad_durations_are_refused(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_a_product_view_arms_the_reminder_with_the_cancel_counts_of_that_moment():
    rs = parse_rules(REMINDER, "r.yaml", TEMPLATES)
    [t] = timers_to_arm(rs, state(page_type="product", counts={"add_to_cart": 2}), [VIEW], 10_000)
    assert (t.rule, t.due_ms, t.armed_ms, t.counts) == ("reminder", 190_000, 10_000, {"add_to_cart": 2, "purchase": 0})


def test_a_delayed_rule_shows_nothing_at_once():
    from kairos.rules import evaluate

    rs = parse_rules(REMINDER, "r.yaml", TEMPLATES)
    assert evaluate(rs, state(page_type="product"), [VIEW], 0) == []


def test_no_arming_when_the_conditions_do_not_hold():
    rs = parse_rules(REMINDER, "r.yaml", TEMPLATES)
    assert timers_to_arm(rs, state(page_type="other"), [VIEW], 0) == []


def test_a_cancelling_event_later_in_the_same_batch_arms_nothing():
    rs = parse_rules(REMINDER, "r.yaml", TEMPLATES)
    batch = [VIEW, Event("add_to_cart", 2, {})]
    assert timers_to_arm(rs, state(page_type="product"), batch, 0) == []
    assert len(timers_to_arm(rs, state(page_type="product"), list(reversed(batch)), 0)) == 1


def test_a_due_timer_is_cancelled_by_an_event_since_arming_or_a_condition_now():
    rs = parse_rules(REMINDER, "r.yaml", TEMPLATES)
    rule = rs.rule("reminder")
    [t] = timers_to_arm(rs, state(page_type="product", counts={"add_to_cart": 1}), [VIEW], 0)
    assert cancelled_by(rule, t, state(page_type="category", counts={"add_to_cart": 1}), 0) is None
    assert cancelled_by(rule, t, state(page_type="category", counts={"add_to_cart": 2}), 0) == (
        "the visitor adds to cart after it was armed")
    assert cancelled_by(rule, t, state(page_type="checkout", counts={"add_to_cart": 1}), 0) == (
        "they are on a checkout page")
    assert cancelled_by(rule, t, state(dismissed={"reminder"}), 0) is None, "a cap is not an unless"
    assert spent(rule, state(dismissed={"reminder"})) == "dismissed"


@pytest.mark.parametrize(
    "extra,problem",
    [
        ("    unless: [teleport]\n", "unknown event 'teleport'"),
        ("    unless: [{page_type: nowhere}]\n", "unknown page type 'nowhere'"),
        ("    after: soon\n", "expected a duration"),
    ],
)
def test_bad_delayed_rules_are_refused(extra, problem):
    text = REMINDER.replace("    after: 3m\n    unless: [add_to_cart, purchase, {page_type: checkout}]\n", "    after: 3m\n" + extra) \
        if "unless" in extra else REMINDER.replace("    after: 3m\n", extra)
    with pytest.raises(RulesError, match=problem):
        parse_rules(text, "r.yaml", TEMPLATES)


def test_unless_and_offline_need_a_delay():
    text = textwrap.dedent("""\
        version: 1
        rules:
          - {id: r, when: exit_intent, unless: [purchase], then: {show: bar, template: bar.html}}
    """)
    with pytest.raises(RulesError, match="add `after:`"):
        parse_rules(text, "r.yaml", TEMPLATES)


def test_a_timer_that_waited_for_its_page_to_reconnect_says_so_and_keeps_its_due_time():
    import json

    from kairos.rules.delayed import Timer, outcome_line, timeline_words

    t = Timer("s_delay0001", "reminder", 5000, 2000, {"add_to_cart": 1}, waits=3)
    assert Timer.from_payload(t.key, t.payload()) == t, "the waits survive the queue"
    assert Timer.from_payload(t.key, Timer("s_delay0001", "reminder", 5000, 2000, {}).payload()).waits == 0
    line = json.loads(outcome_line(t, "fired", 5900))
    assert (line["waited"], line["late_ms"]) == (3, 900)
    assert timeline_words(line) == "reminder fired, 900 ms late: shown (it waited for the visitor's page to reconnect)"
    assert t.oid == Timer("s_delay0001", "reminder", 9999, 2000, {}, waits=0).oid, "one oid per arming, at every attempt"
    assert t.oid != Timer("s_delay0001", "reminder", 5000, 2001, {}).oid and t.oid.startswith("reminder.")

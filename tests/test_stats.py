"""The counters as the dashboard shows them, and a rule explained against a session. Pure."""

from __future__ import annotations

from kairos.engine.base import STATS_BUCKET_MS, stats_bucket
from kairos.rules import parse_rules
from kairos.rules.evaluate import explain
from kairos.session import SessionState
from kairos.stats import HOUR_MS, bins, summary

NOW = 1_700_000_123_456


def test_bins_sum_the_buckets_of_each_hour_newest_last():
    b_now, b_old = stats_bucket(NOW), stats_bucket(NOW - 5 * HOUR_MS)
    buckets = {
        b_now: {"offer|shown": 2, "offer|triggered": 3, "*|purchases": 1, "offer|other": 9},
        b_now - STATS_BUCKET_MS: {"offer|shown": 1},
        b_old: {"offer|clicked": 4},
        stats_bucket(NOW - 30 * HOUR_MS): {"offer|shown": 100},  # outside a day
    }
    out = bins(buckets, NOW, 24 * HOUR_MS, HOUR_MS)
    assert len(out["starts"]) == 24 and out["starts"][-1] == NOW - HOUR_MS
    shown = out["series"]["offer"]["shown"]
    assert sum(shown) == 3 and shown[-1] >= 2
    assert out["series"]["offer"]["clicked"][18] == 4, "five hours ago is the sixth bin from the end"
    assert out["totals"] == {"offer": {"shown": 3, "triggered": 3, "clicked": 4}, "*": {"purchases": 1}}


def test_summary_counts_the_last_hour_and_today():
    day = NOW - 3 * HOUR_MS
    buckets = {
        stats_bucket(NOW): {"a|shown": 1, "b|shown": 2, "*|purchases": 1},
        stats_bucket(NOW - 2 * HOUR_MS): {"a|shown": 5, "*|purchases": 2},
        stats_bucket(NOW - 4 * HOUR_MS): {"*|purchases": 7},
    }
    assert summary(buckets, NOW, day) == {"shown_1h": 3, "conversions_today": 3}


RULES = """
version: 1
page_types: {product: /p/*}
rules:
  - id: offer
    when: exit_intent
    if: {page_type: product, cart_value: {gt: 50}}
    then: {show: offer, template: offer.html, params: {body: Hi}}
"""


def test_explain_shows_each_condition_with_the_sessions_value():
    rule = parse_rules(RULES).rules[0]
    state = SessionState(sid="s_1", page_type="product", cart_value=20.0)
    out = explain(rule, state, NOW)
    assert [(c["name"], c["value"], c["ok"]) for c in out["conditions"]] == [("page_type", "product", True), ("cart_value", 20.0, False)]
    assert out["conditions"][1]["want"] == "their cart value is over 50"
    assert (out["holds"], out["blocked"]) == (False, None)
    state.cart_value = 80.0
    assert explain(rule, state, NOW)["holds"] is True
    state.fired["offer"] = 1
    assert explain(rule, state, NOW)["blocked"] == "capped"
    assert explain(rule, state, NOW, paused=True)["blocked"] == "paused"

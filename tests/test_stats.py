"""The counters as the dashboard shows them, and a rule explained against a session. Pure."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kairos.engine.base import STATS_BUCKET_MS, stats_bucket
from kairos.rules import parse_rules
from kairos.rules.evaluate import explain
from kairos.session import SessionState
from kairos.stats import DAY_MS, HOUR_MS, MINUTE_MS, bin_size, bin_words, bins, summary

NOW = 1_700_000_123_456


def test_an_hour_of_data_is_charted_in_twelve_bins_of_five_minutes():
    hour_ago = stats_bucket(NOW - HOUR_MS) + STATS_BUCKET_MS
    buckets = {b: {"offer|shown": 1, "offer|triggered": 2} for b in range(hour_ago, NOW, STATS_BUCKET_MS)}
    buckets[stats_bucket(NOW)]["*|purchases"] = 1
    out = bins(buckets, NOW, 24 * HOUR_MS)
    assert (out["bin_ms"], out["bin"]) == (5 * MINUTE_MS, "5 min")
    assert len(out["starts"]) == 12 and out["starts"][0] == hour_ago
    assert out["series"]["offer"]["shown"] == [1] * 12, "every bin has its five minutes, none is a spike"
    assert out["totals"] == {"offer": {"shown": 12, "triggered": 24}, "*": {"purchases": 1}}


def test_the_chart_covers_the_data_not_the_whole_period():
    day = {stats_bucket(NOW - 20 * HOUR_MS): {"offer|shown": 1}, stats_bucket(NOW): {"offer|clicked": 4},
           stats_bucket(NOW - 30 * HOUR_MS): {"offer|shown": 100}}  # outside the day
    out = bins(day, NOW, 24 * HOUR_MS)
    assert out["bin"] == "1 h" and len(out["starts"]) == 21
    assert out["series"]["offer"]["shown"][0] == 1 and out["series"]["offer"]["clicked"][-1] == 4
    assert out["totals"] == {"offer": {"shown": 1, "clicked": 4}}
    week = bins(day, NOW, 7 * DAY_MS)
    assert week["totals"]["offer"]["shown"] == 101 and week["bin"] == "1 h" and len(week["starts"]) == 31


def test_bins_start_on_round_times_of_the_viewers_clock():
    india = (5 * 60 + 30) * MINUTE_MS
    buckets = {stats_bucket(NOW - 20 * HOUR_MS): {"a|shown": 1}, stats_bucket(NOW): {"a|shown": 1}}
    for offset in (0, india, -8 * HOUR_MS):
        starts = bins(buckets, NOW, 24 * HOUR_MS, offset)["starts"]
        assert all((s + offset) % HOUR_MS == 0 for s in starts)
    days = {stats_bucket(NOW - 20 * DAY_MS): {"a|shown": 1}, stats_bucket(NOW): {"a|shown": 1}}
    out = bins(days, NOW, 30 * DAY_MS, india)
    assert out["bin"] == "1 day" and all((s + india) % DAY_MS == 0 for s in out["starts"]), "a day starts at local midnight"


def test_no_counts_means_no_bins():
    assert bins({}, NOW, DAY_MS)["starts"] == []
    assert bins({stats_bucket(NOW): {"offer|other": 3}}, NOW, DAY_MS)["series"] == {}


@pytest.mark.parametrize(("span", "size"), [
    (0, "5 min"), (20 * MINUTE_MS, "5 min"), (HOUR_MS, "5 min"), (2 * HOUR_MS, "5 min"), (3 * HOUR_MS, "15 min"),
    (11 * HOUR_MS, "15 min"), (12 * HOUR_MS, "1 h"), (DAY_MS, "1 h"), (3 * DAY_MS, "6 h"), (12 * DAY_MS, "1 day"),
    (30 * DAY_MS, "1 day"),
])
def test_the_bin_size_is_the_largest_human_size_that_gives_twelve_bins(span, size):
    assert bin_words(bin_size(span)) == size


def test_minute_bins_only_when_the_counters_are_kept_by_the_minute():
    assert bin_size(HOUR_MS, finest_ms=MINUTE_MS) == 5 * MINUTE_MS
    assert bin_size(30 * MINUTE_MS, finest_ms=MINUTE_MS) == MINUTE_MS
    assert bin_size(30 * MINUTE_MS) == 5 * MINUTE_MS, "five-minute buckets cannot be split"
    with pytest.raises(ValueError, match="expected a counters' bucket"):
        bin_size(HOUR_MS, finest_ms=7 * MINUTE_MS)


@given(st.integers(min_value=HOUR_MS, max_value=30 * DAY_MS))
def test_from_an_hour_to_a_month_a_chart_has_twelve_to_seventy_two_bins(span):
    assert 12 <= span / bin_size(span) < 73


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

"""Rule counters as the dashboard shows them: summed into chart bins and into the live page's counts. Pure.

The engines keep counters in ten-minute buckets (engine.base.STATS_BUCKET_MS),
keyed "<rule>|<counter>"; "*|purchases" counts every purchase.
"""

from __future__ import annotations

from typing import Any, Mapping

from .engine.base import STATS_BUCKET_MS

COUNTERS = ("triggered", "shown", "clicked", "dismissed", "converted")
HOUR_MS = 3600 * 1000
DAY_MS = 24 * HOUR_MS
# period -> (span, bin): a day by the hour, a week by six hours, a month by the day.
PERIODS: dict[str, tuple[int, int]] = {"24h": (DAY_MS, HOUR_MS), "7d": (7 * DAY_MS, 6 * HOUR_MS), "30d": (30 * DAY_MS, DAY_MS)}

Buckets = Mapping[int, Mapping[str, int]]


def bins(buckets: Buckets, now_ms: int, span_ms: int, bin_ms: int) -> dict[str, Any]:
    """Each rule's counters per bin over the span ending now, and their totals.

    Bins end at `now_ms`, oldest first, so the last bin is the one filling now.
    A bucket straddling the first bin's start counts in it. A rule that counted
    nothing in the span does not appear.
    """
    n = span_ms // bin_ms
    first = now_ms - n * bin_ms
    series: dict[str, dict[str, list[int]]] = {}
    for start, counts in buckets.items():
        if start + STATS_BUCKET_MS <= first or start > now_ms:
            continue
        i = max(0, (start - first) // bin_ms)
        for key, value in counts.items():
            rule, _, counter = key.partition("|")
            if counter in COUNTERS or counter == "purchases":
                series.setdefault(rule, {}).setdefault(counter, [0] * n)[i] += value
    totals = {rule: {c: sum(v) for c, v in per.items()} for rule, per in series.items()}
    return {"bin_ms": bin_ms, "starts": [first + i * bin_ms for i in range(n)], "series": series, "totals": totals}


def summary(buckets: Buckets, now_ms: int, day_start_ms: int) -> dict[str, int]:
    """Nudges shown in the last hour and purchases since `day_start_ms`, each to the ten minutes
    (a bucket that overlaps the period counts whole)."""
    def since(t: int) -> list[Mapping[str, int]]:
        return [counts for start, counts in buckets.items() if start + STATS_BUCKET_MS > t]

    shown = sum(v for counts in since(now_ms - HOUR_MS) for key, v in counts.items() if key.endswith("|shown"))
    purchases = sum(counts.get("*|purchases", 0) for counts in since(day_start_ms))
    return {"shown_1h": shown, "conversions_today": purchases}

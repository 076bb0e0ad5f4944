"""Rule counters as the dashboard shows them: summed into chart bins and into the live page's counts. Pure.

The engines keep counters in five-minute buckets (engine.base.STATS_BUCKET_MS),
keyed "<rule>|<counter>"; "*|purchases" counts every purchase.
"""

from __future__ import annotations

from typing import Any, Mapping

from .engine.base import STATS_BUCKET_MS

COUNTERS = ("triggered", "shown", "clicked", "dismissed", "converted")
MINUTE_MS = 60 * 1000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
# The periods the rules page offers; the chart covers the part of one that holds data.
PERIODS: dict[str, int] = {"24h": DAY_MS, "7d": 7 * DAY_MS, "30d": 30 * DAY_MS}
# Bin sizes a person reads without arithmetic, finest first, and their names on the chart's axis.
BIN_LADDER_MS = (MINUTE_MS, 5 * MINUTE_MS, 15 * MINUTE_MS, HOUR_MS, 6 * HOUR_MS, DAY_MS)
BIN_WORDS = {MINUTE_MS: "1 min", 5 * MINUTE_MS: "5 min", 15 * MINUTE_MS: "15 min", HOUR_MS: "1 h", 6 * HOUR_MS: "6 h",
             DAY_MS: "1 day"}
# Fewer bins than this and a chart is a few blocks. The ladder's steps are x3 to x6,
# so the largest size that still gives 12 bins gives fewer than 73.
MIN_BINS = 12

Buckets = Mapping[int, Mapping[str, int]]


def bin_size(span_ms: int, finest_ms: int = STATS_BUCKET_MS) -> int:
    """The bin size for a chart of `span_ms` of data: the largest size of the ladder that
    still cuts it into MIN_BINS bins, or the finest the counters allow for a shorter span.

    Sizes finer than `finest_ms` (the counters' bucket) or not a multiple of it would
    split a bucket between bins, so they are never chosen.
    """
    sizes = [b for b in BIN_LADDER_MS if b >= finest_ms and b % finest_ms == 0]
    if not sizes:
        raise ValueError(f"expected a counters' bucket that divides one of the ladder's sizes, got {finest_ms} ms")
    fitting = [b for b in sizes if span_ms >= MIN_BINS * b]
    return fitting[-1] if fitting else sizes[0]


def bin_words(bin_ms: int) -> str:
    """A bin size in plain units, as the chart's axis says it: "5 min", "1 h", "1 day"."""
    if bin_ms in BIN_WORDS:
        return BIN_WORDS[bin_ms]
    if bin_ms % DAY_MS == 0:
        return f"{bin_ms // DAY_MS} days"
    if bin_ms % HOUR_MS == 0:
        return f"{bin_ms // HOUR_MS} h"
    return f"{bin_ms / MINUTE_MS:g} min"


def bins(buckets: Buckets, now_ms: int, span_ms: int, offset_ms: int = 0,
         finest_ms: int = STATS_BUCKET_MS) -> dict[str, Any]:
    """Each rule's counters in bins over the part of the last `span_ms` that holds data, and their totals.

    The chart runs from the first bucket with a count to the last, so an hour of
    data fills the chart instead of being a spike at the edge of a day; the bin
    size comes from that stretch (bin_size). Bins start on round times of the
    viewer's clock: `offset_ms` is their time zone's offset from UTC (east positive).
    A bucket straddling the period's start counts. A rule that counted nothing
    in the period does not appear; with no data at all there are no bins.
    """
    since = now_ms - span_ms
    kept = {start: counts for start, counts in buckets.items()
            if since < start + STATS_BUCKET_MS and start <= now_ms and any(_counted(key) for key in counts)}
    if not kept:
        size = bin_size(0, finest_ms)
        return {"bin_ms": size, "bin": bin_words(size), "starts": [], "series": {}, "totals": {}}
    lo, hi = min(kept), max(kept) + STATS_BUCKET_MS
    size = bin_size(hi - lo, finest_ms)
    first = lo - (lo + offset_ms) % size
    n = -(-(hi - first) // size)
    series: dict[str, dict[str, list[int]]] = {}
    for start, counts in kept.items():
        i = (start - first) // size
        for key, value in counts.items():
            if _counted(key):
                rule, _, counter = key.partition("|")
                series.setdefault(rule, {}).setdefault(counter, [0] * n)[i] += value
    totals = {rule: {c: sum(v) for c, v in per.items()} for rule, per in series.items()}
    return {"bin_ms": size, "bin": bin_words(size), "starts": [first + i * size for i in range(n)],
            "series": series, "totals": totals}


def _counted(key: str) -> bool:
    counter = key.partition("|")[2]
    return counter in COUNTERS or counter == "purchases"


def summary(buckets: Buckets, now_ms: int, day_start_ms: int) -> dict[str, int]:
    """Nudges shown in the last hour and purchases since `day_start_ms`, each to the five minutes
    (a bucket that overlaps the period counts whole)."""
    def since(t: int) -> list[Mapping[str, int]]:
        return [counts for start, counts in buckets.items() if start + STATS_BUCKET_MS > t]

    shown = sum(v for counts in since(now_ms - HOUR_MS) for key, v in counts.items() if key.endswith("|shown"))
    purchases = sum(counts.get("*|purchases", 0) for counts in since(day_start_ms))
    return {"shown_1h": shown, "conversions_today": purchases}

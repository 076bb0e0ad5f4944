"""A session as a purchase-intent model sees it: one row of named features.

Pure. `features(state, page_types)` is the row `kairos export-sessions` writes
for an ended session and the row the server scores a live one with, so a model
trained on the export reads a live session exactly as it read its training
rows. The columns, after the UCI Online Shoppers table (docs/intent.md):

    pages, pages_<type>, dwell_s_<type>   page views, and visible seconds, per page type
                                          (UCI: Administrative, ProductRelated, … and their _Duration)
    dwell_s                               visible seconds on the site this session
    bounce                                TRUE while the session is not "engaged" in GA4's sense
    exit_intents, page_type               exit intents so far; the page they are on (the exit page, once ended)
    adds_to_cart, clicks                  what they did
    month, weekend, special_day           the session's start on the visitor's clock (UCI: Month, Weekend, SpecialDay)
    visitor                               new or returning (UCI: VisitorType)
    traffic, device                       where the visit came from; desktop, mobile, tablet (UCI: TrafficType, OperatingSystems)

Not a feature: anything that gives the outcome away once the session has ended
(orders, the cart value that an order empties, the checkout step).
"""

from __future__ import annotations

import calendar
import csv
import datetime as dt
import functools
import io
import json
from typing import Any, Iterable

from ..session import SessionState

MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
# GA4 counts a session as engaged when it lasts more than 10 seconds, has a key
# event, or has two page views or more (Google Analytics Help, "[GA4] Engagement rate and bounce rate");
# a bounce is a session that is not.
ENGAGED_MS = 10_000
# The label column of the export: did the session order?
LABEL = "purchased"


def features(state: SessionState, page_types: Iterable[str]) -> dict[str, Any]:
    """The session's feature row. `page_types`: the declared page types, one pair of columns each (and `other`)."""
    types = _types(state, page_types)
    row: dict[str, Any] = {"pages": state.pages}
    for t in types:
        row[f"pages_{t}"] = state.type_pages.get(t, 0)
        row[f"dwell_s_{t}"] = state.type_dwell_ms.get(t, 0) / 1000
    # (An order is GA4's key event too, but it is the outcome: an add to cart stands in.)
    engaged = state.pages >= 2 or state.dwell_ms > ENGAGED_MS or state.adds > 0
    local = dt.datetime.fromtimestamp(state.started_ms / 1000 + state.tz * 60, dt.timezone.utc) if state.started_ms else None
    visits = state.visits or state.visitor.sessions
    row.update(zip(_TAIL, (
        state.dwell_ms / 1000,
        not engaged,
        state.exit_intents,
        state.page_type,
        state.adds,
        state.clicks,
        MONTHS[local.month - 1] if local else None,
        local.weekday() >= 5 if local else None,
        special_day(local.date()) if local else None,
        "returning" if visits > 1 else "new",
        state.traffic or None,
        state.device or None,
    )))
    return row


# The columns after the per-page-type ones, in order.
_TAIL = ("dwell_s", "bounce", "exit_intents", "page_type", "adds_to_cart", "clicks", "month", "weekend",
         "special_day", "visitor", "traffic", "device")


def _types(state: SessionState, page_types: Iterable[str]) -> list[str]:
    return sorted(set(page_types) | {"other"} | set(state.type_pages))


def columns(types: Iterable[str]) -> list[str]:
    """The feature columns of a row whose page types are `types` (sorted), in order."""
    return ["pages", *(c for t in types for c in (f"pages_{t}", f"dwell_s_{t}")), *_TAIL]


# A kept row (engine.archive, `kairos export-sessions`) is a JSON array: the format's
# version, when the page load ended (ms), the outcome, the page types, then the
# values of `columns(types)`. ~120 bytes where an object naming every feature took
# ~330, and Redis keeps one per session for 30 days (issue 16: Redis memory per open
# session). A row kept before this format, {"at", "features", "purchased"}, is read too.
ROW_FORMAT = 2


def archive_row(state: SessionState, page_types: Iterable[str], now_ms: int) -> str:
    """The row kept for training when a session's page load ends."""
    types = _types(state, page_types)
    row = features(state, types)
    return json.dumps([ROW_FORMAT, now_ms, label(state), types, *row.values()], separators=(",", ":"))


def read_row(text: str) -> tuple[dict[str, Any], bool]:
    """A kept row's features by column, and its outcome."""
    r = json.loads(text)
    if isinstance(r, dict):  # kept before ROW_FORMAT 2
        return r["features"], bool(r["purchased"])
    _, _, purchased, types, *values = r
    return dict(zip(columns(types), values)), bool(purchased)


def label(state: SessionState) -> bool:
    """The outcome the model learns: the session ordered."""
    return state.purchases > 0


def as_text(value: Any) -> str:
    """A feature value as the CSV holds it: TRUE/FALSE for flags, empty for missing (what `kairos train` reads)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        return repr(value) if not value.is_integer() else str(int(value))
    return str(value)


def to_csv(rows: Iterable[str]) -> str:
    """The export: kept rows (archive_row, as engine.archive holds them) as a CSV that `kairos train --label purchased` reads.

    Columns are every feature any row has, in the order first seen; a row
    without one (its rules had another page type then) leaves it empty.
    """
    parsed = [read_row(r) for r in rows]
    columns: dict[str, None] = {}
    for f, _ in parsed:
        columns.update(dict.fromkeys(f))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*columns, LABEL])
    for f, purchased in parsed:
        writer.writerow([as_text(f.get(c)) for c in columns] + [as_text(purchased)])
    return out.getvalue()


# --- special days ----------------------------------------------------------------

# The UCI table's SpecialDay: how close a session is to a day shoppers buy for,
# allowing for delivery: for Valentine's Day non-zero from 2 to 12 February, 1 on
# 8 February (Sakar et al. 2019). Here: rising from 12 days before the day to 1
# six days before, falling to 0 one day before.
PEAK_DAYS_BEFORE = 6
FIRST_DAYS_BEFORE = 12


@functools.lru_cache(maxsize=4)  # a year's days, worked out once: every page load's end asks
def special_days(year: int) -> tuple[dt.date, ...]:
    """Valentine's Day, Mother's Day (second Sunday of May, as in the US and Turkey), Black Friday, Christmas."""
    may = calendar.Calendar().itermonthdates(year, 5)
    sundays = [d for d in may if d.month == 5 and d.weekday() == 6]
    nov = [d for d in calendar.Calendar().itermonthdates(year, 11) if d.month == 11 and d.weekday() == 3]
    return (dt.date(year, 2, 14), sundays[1], nov[3] + dt.timedelta(days=1), dt.date(year, 12, 25))


def special_day(day: dt.date) -> float:
    """0 to 1: the closeness of `day` to the next special day, by the UCI table's rule."""
    best = 0.0
    for d in special_days(day.year) + special_days(day.year + 1)[:1]:
        before = (d - day).days
        if PEAK_DAYS_BEFORE <= before < FIRST_DAYS_BEFORE:
            best = max(best, (FIRST_DAYS_BEFORE - before) / (FIRST_DAYS_BEFORE - PEAK_DAYS_BEFORE))
        elif 1 <= before < PEAK_DAYS_BEFORE:
            best = max(best, (before - 1) / (PEAK_DAYS_BEFORE - 1))
    return round(best, 3)

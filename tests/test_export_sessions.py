"""Session features and `kairos export-sessions`: what a store's own sessions teach a purchase-intent model.

A session's feature row is the same whether it is exported for training or
scored live; the export is a CSV that `kairos train --label purchased` reads.
"""

from __future__ import annotations

import asyncio
import calendar
import csv
import datetime as dt
import io
import json
import subprocess
import sys

import pytest

from kairos.intent.sessions import LABEL, archive_row, features, read_row, special_day, to_csv
from kairos.session import SessionState, VisitorInfo
from wsclient import Visitor

MS = 1000


def at(y: int, m: int, d: int, hh: int = 12) -> int:
    return calendar.timegm((y, m, d, hh, 0, 0)) * MS


@pytest.mark.parametrize("day,expected", [
    (dt.date(2026, 2, 1), 0.0),      # 13 days before Valentine's Day
    (dt.date(2026, 2, 3), 1 / 6),    # 11 days before: rising
    (dt.date(2026, 2, 8), 1.0),      # six days before: the peak (the UCI table's 8 February)
    (dt.date(2026, 2, 12), 0.2),     # two days before: too late to deliver, nearly
    (dt.date(2026, 2, 13), 0.0),     # the day before
    (dt.date(2026, 2, 20), 0.0),
    (dt.date(2026, 5, 4), 1.0),      # Mother's Day 2026 is Sunday 10 May
    (dt.date(2026, 11, 21), 1.0),    # Black Friday 2026 is 27 November
    (dt.date(2026, 12, 19), 1.0),    # Christmas
    (dt.date(2026, 12, 31), 0.0),
])
def test_special_day_closeness_follows_the_uci_rule(day, expected):
    assert special_day(day) == pytest.approx(expected, abs=1e-3)


def test_month_and_weekend_are_the_visitors_own():
    # 23:30 UTC on Friday 30 January 2026: already Saturday 31 January in Berlin, still Friday in New York;
    started = calendar.timegm((2026, 1, 30, 23, 30, 0)) * MS
    berlin = features(SessionState(sid="s", started_ms=started, tz=60), ["other"])
    new_york = features(SessionState(sid="s", started_ms=started, tz=-300), ["other"])
    assert (berlin["month"], berlin["weekend"]) == ("jan", True)
    assert (new_york["month"], new_york["weekend"]) == ("jan", False)
    tokyo_new_year = features(SessionState(sid="s", started_ms=calendar.timegm((2025, 12, 31, 20, 0, 0)) * MS, tz=540), [])
    assert tokyo_new_year["month"] == "jan"


def test_a_session_not_yet_started_leaves_its_calendar_missing():
    row = features(SessionState(sid="s"), ["product"])
    assert (row["month"], row["weekend"], row["special_day"]) == (None, None, None)
    assert row["pages_product"] == 0 and row["pages_other"] == 0, "every declared page type has its columns"


def test_new_or_returning_from_the_session_or_the_visitor_read_with_it():
    assert features(SessionState(sid="s", visits=3), [])["visitor"] == "returning"
    assert features(SessionState(sid="s", visitor=VisitorInfo(sessions=2)), [])["visitor"] == "returning"
    assert features(SessionState(sid="s", visits=1), [])["visitor"] == "new"


def test_no_feature_gives_the_outcome_away():
    bought = SessionState(sid="s", started_ms=at(2026, 3, 3), pages=4, purchases=1, cart_value=0.0, checkout_step="done")
    row = features(bought, ["product"])
    assert not {"purchases", "cart_value", "checkout_step", LABEL} & set(row)


def test_the_csv_has_every_column_seen_and_the_label_last():
    rows = [json.dumps({"at": 1, "features": {"pages": 2, "pages_product": 1, "bounce": False, "month": "mar",
                                              "special_day": 0.2, "traffic": None}, "purchased": True}),
            json.dumps({"at": 2, "features": {"pages": 1, "pages_blog": 1, "bounce": True, "month": "mar",
                                              "special_day": 0.0, "traffic": "search"}, "purchased": False})]
    table = list(csv.reader(io.StringIO(to_csv(rows))))
    assert table[0] == ["pages", "pages_product", "bounce", "month", "special_day", "traffic", "pages_blog", "purchased"]
    assert table[1] == ["2", "1", "FALSE", "mar", "0.2", "", "", "TRUE"]
    assert table[2] == ["1", "", "TRUE", "mar", "0", "search", "1", "FALSE"]


def test_a_kept_row_reads_back_as_the_sessions_features_in_a_third_of_the_bytes():
    sessions = [
        SessionState(sid="s", started_ms=at(2026, 2, 8), tz=60, pages=3, dwell_ms=42_500, clicks=7, adds=1,
                     type_pages={"product": 2, "blog": 1}, type_dwell_ms={"product": 40_000}, traffic="search",
                     device="mobile", purchases=1, page_type="cart"),
        SessionState(sid="s"),  # not started: its calendar columns are missing
    ]
    for state in sessions:
        for page_types in ([], ["product", "cart"]):
            kept = archive_row(state, page_types, 5)
            assert read_row(kept) == (features(state, page_types), state.purchases > 0)
            named = json.dumps({"at": 5, "features": features(state, page_types), "purchased": state.purchases > 0},
                               separators=(",", ":"))
            assert len(kept) < len(named) / 2, (kept, named)
    # Rows kept before this format and rows of it make one CSV.
    old = json.dumps({"at": 1, "features": features(sessions[0], ["cart"]), "purchased": True})
    table = list(csv.reader(io.StringIO(to_csv([old, archive_row(sessions[0], ["cart"], 2)]))))
    assert table[1] == table[2] and table[1][-1] == "TRUE"


async def shop(ws_url: str, vid: str, buys: bool) -> str:
    """A visit: a product page for 12 s and an add to cart, then the cart page, then (maybe) an order."""
    v = await Visitor.arrive(ws_url, vid=vid)
    await v.events({"e": "dwell", "ms": 12_000}, {"e": "add_to_cart", "sku": "LS-01"})
    await asyncio.sleep(0.2)
    await v.leave()
    cart = await Visitor.arrive(ws_url, vid=vid, sid=v.sid, path="/demo/cart")
    assert cart.sid == v.sid
    await cart.events({"e": "dwell", "ms": 5_000}, *([{"e": "purchase", "value": 59.9, "cur": "EUR"}] if buys else []))
    await asyncio.sleep(0.2)
    await cart.leave()
    return v.sid


@pytest.mark.parametrize("engine", ["memory", "redis"])
async def test_export_sessions_writes_ended_sessions_that_kairos_train_reads(serve, engine, tmp_path):
    server = serve(engine)
    await shop(server.ws_url, "v_export001", buys=True)
    await shop(server.ws_url, "v_export002", buys=False)
    await shop(server.ws_url, "v_export001", buys=False)  # the buyer again, a new visit: returning
    out = tmp_path / "sessions.csv"
    cmd = [sys.executable, "-m", "kairos", "export-sessions", "--url", server.base, "--token", server.admin_token]
    deadline = asyncio.get_running_loop().time() + 5
    while True:  # the last socket's close is recorded as the server sees it
        done = subprocess.run([*cmd, "--all", "-o", str(out)], capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        if "3 sessions" in done.stderr or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.2)
    assert "3 sessions (1 with an order) written to" in done.stderr
    rows = list(csv.DictReader(out.open()))
    assert [r["purchased"] for r in rows] == ["TRUE", "FALSE", "FALSE"]
    first = rows[0]
    assert (first["pages"], first["pages_product"], first["pages_cart"], first["dwell_s_product"], first["dwell_s_cart"]) \
        == ("2", "1", "1", "12", "5")
    assert (first["bounce"], first["adds_to_cart"], first["page_type"], first["traffic"]) == ("FALSE", "1", "cart", "direct")
    assert [r["visitor"] for r in rows] == ["new", "new", "returning"]
    text = out.read_text()
    for secret in ("v_export001", "127.0.0.1", "linen-shirt", "/demo/"):
        assert secret not in text, f"{secret} reached the export"
    # Without --all, only sessions quiet for a session TTL (30 min): none of these yet, and no header-only file.
    again = tmp_path / "ended.csv"
    done = subprocess.run([*cmd, "-o", str(again)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 1 and done.stdout == "" and not again.exists()
    assert done.stderr.startswith("kairos export-sessions: nothing written, no session has ended yet: "), done.stderr
    assert "--all also exports the sessions that may still go on" in done.stderr
    # The shape kairos train reads, label and all.
    from kairos.intent import train

    data = train.prepare(train.read_table(out), "purchased")
    assert data.y.tolist() == [1, 0, 0] and "purchased" not in [f.column for f in data.features]


def test_export_sessions_says_what_went_wrong(serve):
    server = serve("memory")
    cmd = [sys.executable, "-m", "kairos", "export-sessions", "--url", server.base]
    refused = subprocess.run([*cmd, "--token", "wrong"], capture_output=True, text=True, timeout=30)
    assert refused.returncode == 1 and "admin token was refused" in refused.stderr and "Traceback" not in refused.stderr
    gone = subprocess.run([sys.executable, "-m", "kairos", "export-sessions", "--url", "http://127.0.0.1:9"],
                          capture_output=True, text=True, timeout=30)
    assert gone.returncode == 1 and "cannot reach" in gone.stderr
    empty = subprocess.run([*cmd, "--token", server.admin_token, "--all"], capture_output=True, text=True, timeout=30)
    assert empty.returncode == 1 and empty.stdout == ""
    assert empty.stderr == ("kairos export-sessions: nothing written, the server keeps no session yet: a session is kept "
                            "when a page load ends (and none when the server runs with KAIROS_ARCHIVE_TTL_S=0)\n")

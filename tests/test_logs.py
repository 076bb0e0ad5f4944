"""What a running `kairos serve` writes to its log: never a URL's query string.

A query can carry a token a client put in a websocket URL, or a visitor's
email in a page's URL; the paths stay, so the log still says what was asked.
"""

from __future__ import annotations

import logging

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from kairos.cli import NoClientAddress, NoQueryString, redact_queries

SECRET = "s3cr3t-in-the-query"


def test_query_strings_never_reach_the_server_log(serve):
    server = serve("memory")
    ws_base = f"ws://127.0.0.1:{server.port}"
    # A visitor's socket (accepted) and a staff feed without a login (refused): uvicorn logs both.
    with connect(f"{ws_base}/ws?token={SECRET}&email=bob%40example.com", compression=None, open_timeout=5):
        pass
    with pytest.raises(InvalidStatus):
        with connect(f"{ws_base}/dashboard/feed?token={SECRET}", compression=None, open_timeout=5):
            pass
    assert httpx.get(f"{server.base}/healthz?x={SECRET}", timeout=5).status_code == 200
    assert httpx.get(f"{server.base}/demo/?email=bob%40example.com&x={SECRET}", timeout=5).status_code == 200
    # A change from another site is refused and logged by its origin, not by the whole Referer.
    refused = httpx.post(f"{server.base}/api/rules/check", content=b"version: 1",
                         headers={"Referer": f"https://elsewhere.example/page?token={SECRET}"}, timeout=5)
    assert refused.status_code == 403

    server.stop()  # every line written
    log = server.log_path.read_text(errors="replace")
    assert SECRET not in log and "bob" not in log, log
    # The lines are there, their paths kept: the redaction is what hid the secret.
    assert '"WebSocket /ws?…" [accepted]' in log, log
    assert '"WebSocket /dashboard/feed?…" 401' in log, log
    assert "it comes from https://elsewhere.example, not from" in log, log


def _record(msg: str, args: tuple) -> logging.LogRecord:
    return logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, msg, args, None)


def test_an_access_log_line_keeps_the_path_and_drops_the_query_and_the_address():
    # The shape of uvicorn's access lines, should the access log ever be turned on.
    record = _record('%s - "%s %s HTTP/%s" %d', ("203.0.113.9:51234", "GET", f"/healthz?x={SECRET}", "1.1", 200))
    assert NoClientAddress().filter(record) and NoQueryString().filter(record)
    assert record.getMessage() == '- - "GET /healthz?… HTTP/1.1" 200'


@pytest.mark.parametrize("text, redacted", [
    ("/ws?token=abc", "/ws?…"),
    ('"WebSocket /dashboard/feed?token=abc&day=1" 403', '"WebSocket /dashboard/feed?…" 403'),
    ("http://shop.test/checkout?email=bob@example.com done", "http://shop.test/checkout?… done"),
    ("did you mean `limit`?", "did you mean `limit`?"),
    ("/healthz", "/healthz"),
])
def test_redact_queries(text, redacted):
    assert redact_queries(text) == redacted

"""Events a page sends while Redis is away are sent again once it is back (issue 15, finding 8).

Before, the server answered `server_error` without the batch's seq and the
snippet logged a warning and dropped the events: an add-to-cart made during a
short outage was never recorded.
"""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import Page

from conftest import OwnRedis, Server, connected

PRODUCT = "/demo/products/linen-shirt"


@pytest.mark.browser
def test_an_add_to_cart_refused_in_a_redis_outage_is_recorded_once_when_redis_is_back(page: Page, tmp_path):
    # With an append-only file, so the session outlives the restart and the test
    # sees what the resend alone does (without one, the session is opened again
    # from the page: tests/test_redis_data_loss.py).
    own = OwnRedis(aof_dir=tmp_path)
    own.start()
    server = Server("redis", own.url)
    warnings: list[str] = []
    page.on("console", lambda msg: warnings.append(msg.text) if msg.type == "warning" else None)
    try:
        page.goto(server.base + PRODUCT)
        sid = connected(page)
        time.sleep(1.5)  # the AOF is written every second: the session is on disk
        own.kill()
        page.locator("#add-to-cart").click()  # a cart event goes at once: into the outage
        deadline = time.monotonic() + 10
        while not any("server_error" in w for w in warnings) and time.monotonic() < deadline:
            page.wait_for_timeout(100)
        assert any("server_error" in w for w in warnings), warnings
        own.start()
        state = server.session_when(sid, lambda s: s["cart_items"] == 1, timeout_s=30)
        assert state["cart_items"] == 1, "the add-to-cart refused in the outage was sent again"
        page.wait_for_timeout(2000)  # any duplicate would have arrived by now
        state = server.session(sid)
        adds = [e for e in state["log"] if e.get("e") == "add_to_cart"]
        assert (state["cart_items"], len(adds), state["lost"]) == (1, 1, 0)
    finally:
        server.stop()
        own.kill()

"""A staff login is a record on the server: logging out ends it everywhere, a new token ends them all.

Against real `kairos serve` processes on both engines: a copy of the session
cookie taken before logging out is refused afterwards (a page sends it to the
login form, the API answers 401, the feed's handshake 401), by every process
sharing the Redis; a live feed opened with the cookie is closed (4001) once its
login ends; and restarting with another admin token refuses the old cookie.
"""

from __future__ import annotations

import contextlib
import time
from typing import Iterator

import httpx
import pytest
import redis
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from conftest import redis_contents
from kairos.staff import CLOSE_LOGGED_OUT, CSRF_COOKIE, SESSION_COOKIE, SESSION_RECHECK_S

ENGINES = ["memory", "redis"]


@contextlib.contextmanager
def logged_in(server) -> Iterator[httpx.Client]:
    """A browser-like client of `server` logged in through the form."""
    with httpx.Client(base_url=server.base, timeout=5) as c:
        c.get("/dashboard/login")
        r = c.post("/dashboard/login", data={"token": server.admin_token, "csrf": c.cookies[CSRF_COOKIE]},
                   headers={"Origin": server.base})
        assert r.status_code == 303 and SESSION_COOKIE in c.cookies
        yield c


def log_out(c: httpx.Client) -> None:
    r = c.post("/dashboard/logout", data={"csrf": c.cookies[CSRF_COOKIE]}, headers={"Origin": str(c.base_url).rstrip("/")})
    assert (r.status_code, r.headers["location"]) == (303, "/dashboard/login")


def with_cookie(server, value: str) -> httpx.Client:
    """Someone else holding a copy of a session cookie."""
    return httpx.Client(base_url=server.base, timeout=5, cookies={SESSION_COOKIE: value})


def feed(server, cookie: str):
    return connect(server.base.replace("http://", "ws://") + "/dashboard/feed", open_timeout=5,
                   additional_headers={"Cookie": f"{SESSION_COOKIE}={cookie}", "Origin": server.base})


def feed_status(server, cookie: str) -> int:
    try:
        with feed(server, cookie):
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


def assert_refused(server, cookie: str) -> None:
    with with_cookie(server, cookie) as copy:
        assert copy.get("/api/sessions").status_code == 401
        page = copy.get("/dashboard")
        assert (page.status_code, page.headers["location"]) == (303, "/dashboard/login?next=/dashboard")
    assert feed_status(server, cookie) == 401


def assert_admitted(server, cookie: str) -> None:
    with with_cookie(server, cookie) as copy:
        assert copy.get("/api/sessions").status_code == 200
        assert copy.get("/dashboard").status_code == 200
    assert feed_status(server, cookie) == 101


def closed_with(ws) -> int | None:
    """Read the feed until the server closes it: the close code; None if it is still open long after."""
    # The login is looked at every SESSION_RECHECK_S; the feed sends rows and summaries meanwhile.
    give_up = time.monotonic() + 10 * SESSION_RECHECK_S
    try:
        while time.monotonic() < give_up:
            ws.recv(timeout=10 * SESSION_RECHECK_S)
    except ConnectionClosed as exc:
        return exc.rcvd.code if exc.rcvd else None
    except TimeoutError:
        pass
    return None


@pytest.mark.parametrize("engine", ENGINES)
def test_a_copy_of_the_cookie_is_refused_after_logging_out(serve, engine):
    server = serve(engine)
    with logged_in(server) as browser:
        cookie = browser.cookies[SESSION_COOKIE]
        assert_admitted(server, cookie)
        log_out(browser)
    assert_refused(server, cookie)


def test_logging_out_on_one_process_ends_the_login_on_another(serve):
    a = serve("redis")
    b = serve("redis", extra=["--admin-token", a.admin_token])
    with logged_in(a) as browser:
        cookie = browser.cookies[SESSION_COOKIE]
        assert_admitted(b, cookie)
        log_out(browser)
    assert_refused(b, cookie)
    assert_refused(a, cookie)


@pytest.mark.parametrize("engine", ENGINES)
def test_a_live_feed_is_closed_when_its_login_ends(serve, engine):
    server = serve(engine)
    with logged_in(server) as browser, feed(server, browser.cookies[SESSION_COOKIE]) as ws:
        assert '"t":"snapshot"' in ws.recv(timeout=5)
        log_out(browser)
        assert closed_with(ws) == CLOSE_LOGGED_OUT


def test_a_live_feed_on_another_process_is_closed_when_its_login_ends(serve):
    a = serve("redis")
    b = serve("redis", extra=["--admin-token", a.admin_token])
    with logged_in(a) as browser, feed(b, browser.cookies[SESSION_COOKIE]) as ws:
        assert '"t":"snapshot"' in ws.recv(timeout=5)
        log_out(browser)
        assert closed_with(ws) == CLOSE_LOGGED_OUT
    assert "closed a websocket to /dashboard/feed: its login ended" in b.output()


@pytest.mark.parametrize("engine", ENGINES)
def test_a_new_admin_token_refuses_the_old_cookie(serve, engine):
    server = serve(engine)
    with logged_in(server) as browser:
        cookie = browser.cookies[SESSION_COOKIE]
    if engine == "redis":
        server.restart()
        assert_admitted(server, cookie)  # a restart (a deploy) keeps logins that Redis keeps
    server.admin_token = "a-new-admin-token-after-a-leak-0123"
    server.cmd[server.cmd.index("--admin-token") + 1] = server.admin_token
    server.restart()
    assert_refused(server, cookie)
    with logged_in(server) as after:
        assert after.get("/api/sessions").status_code == 200


def test_a_login_is_kept_in_redis_under_a_digest_that_expires_with_it(serve, redis_url):
    server = serve("redis")
    with logged_in(server) as browser:
        cookie = browser.cookies[SESSION_COOKIE]
        stored = {k: v for k, v in redis_contents(redis_url).items() if k.startswith("kairos:staff:session:")}
        assert len(stored) == 1
        assert not any(part in key + value for key, value in stored.items() for part in cookie.split(".")[1:])
        ttl_s = redis.Redis.from_url(redis_url).ttl(next(iter(stored)))
        assert 11 * 3600 < ttl_s <= 12 * 3600
        log_out(browser)
    assert not [k for k in redis_contents(redis_url) if k.startswith("kairos:staff:session:")]


@pytest.mark.browser
def test_a_dashboard_tab_goes_to_the_login_form_when_another_tab_logs_out(serve, browser):
    from playwright.sync_api import expect

    from conftest import login

    server = serve("memory")
    context = browser.new_context()
    try:
        live = context.new_page()
        login(live, server)
        expect(live.locator("#status")).to_have_attribute("data-state", "ok")
        other = context.new_page()
        other.goto(server.base + "/dashboard/rules")
        other.click("#logout button")
        other.wait_for_url(f"{server.base}/dashboard/login")
        # Its feed is closed within SESSION_RECHECK_S; the page then finds the login gone.
        live.wait_for_url(f"{server.base}/dashboard/login**", timeout=15_000)
    finally:
        context.close()

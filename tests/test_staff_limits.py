"""One limit on wrong admin tokens per client address, however the token is presented.

Against real `kairos serve` processes on both engines: a bearer on /api, /admin
or a staff websocket's handshake, and the login form, count against the same
limit; past it even the right token is answered 429 with Retry-After; a right
token is never counted; processes sharing a Redis share the count; and no
address is kept in Redis or the log.
"""

from __future__ import annotations

import re

import httpx
import pytest
from starlette.requests import HTTPConnection
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from conftest import redis_contents
from kairos import lockout
from kairos.staff import CSRF_COOKIE

ENGINES = ["memory", "redis"]
WRONG = {"Authorization": "Bearer not-the-admin-token"}
LIMIT = lockout.MAX_FAILURES


def client(server, address: str = "127.0.0.1") -> httpx.Client:
    """A client of `server` whose requests come from `address` (any of 127.0.0.0/8 reaches it)."""
    return httpx.Client(base_url=server.base, timeout=5, transport=httpx.HTTPTransport(local_address=address))


def handshake(server, path: str, headers: dict[str, str]) -> tuple[int, httpx.Headers | dict]:
    """The status a websocket handshake is answered with (101 when accepted), and its headers."""
    try:
        with connect(server.base.replace("http://", "ws://") + path, additional_headers=headers, open_timeout=5):
            return 101, {}
    except InvalidStatus as exc:
        return exc.response.status_code, exc.response.headers


def retry_after(headers) -> int:
    value = int(headers["Retry-After"])
    assert 0 < value <= lockout.FAILURE_WINDOW_S, value
    return value


def login_form(c: httpx.Client, token: str) -> httpx.Response:
    c.get("/dashboard/login")
    return c.post("/dashboard/login", data={"token": token, "csrf": c.cookies[CSRF_COOKIE]},
                  headers={"Origin": str(c.base_url).rstrip("/")})


def assert_locked_out(server, c: httpx.Client) -> None:
    """Every way of presenting the right token is refused with 429 for this client."""
    for path in ("/api/sessions", "/admin/rules", "/dashboard"):
        r = c.get(path, headers=server.auth)
        assert (path, r.status_code) == (path, 429), r.text
        retry_after(r.headers)
    r = login_form(c, server.admin_token)
    assert r.status_code == 429 and "Too many wrong tokens" in r.text
    retry_after(r.headers)


# --- the limit, however the token is presented ---------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_wrong_bearers_on_the_api_lock_the_address_out_even_for_the_right_token(serve, engine):
    server = serve(engine)
    with client(server) as guesser, client(server, "127.0.0.2") as colleague:
        for _ in range(LIMIT):
            assert guesser.get("/api/sessions", headers=WRONG).status_code == 401
        r = guesser.get("/api/sessions", headers=WRONG)
        assert r.status_code == 429 and "too many wrong tokens" in r.json()["error"]
        retry_after(r.headers)
        assert_locked_out(server, guesser)
        status, headers = handshake(server, "/dashboard/feed", server.auth)
        assert status == 429
        retry_after(headers)
        assert colleague.get("/api/sessions", headers=server.auth).status_code == 200, "another address is not held back"


@pytest.mark.parametrize("engine", ENGINES)
def test_wrong_bearers_on_admin_rules_count_against_the_same_limit(serve, engine):
    server = serve(engine)
    with client(server) as guesser:
        for _ in range(LIMIT):
            assert guesser.get("/admin/rules", headers=WRONG).status_code == 401
        assert guesser.put("/admin/rules", headers=WRONG, content="version: 1\n").status_code == 429
        assert_locked_out(server, guesser)


@pytest.mark.parametrize("engine", ENGINES)
def test_wrong_bearers_on_the_feed_websocket_are_refused_then_locked_out(serve, engine):
    server = serve(engine)
    for _ in range(LIMIT):
        assert handshake(server, "/dashboard/feed", WRONG)[0] == 401
    status, headers = handshake(server, "/dashboard/feed", WRONG)
    assert status == 429
    retry_after(headers)
    assert handshake(server, "/dashboard/feed", server.auth)[0] == 429, "even with the right token"
    with client(server) as same_address:
        assert_locked_out(server, same_address)


@pytest.mark.parametrize("engine", ENGINES)
def test_wrong_tokens_in_the_login_form_lock_out_the_bearer_too(serve, engine):
    server = serve(engine)
    with client(server) as guesser:
        for _ in range(LIMIT):
            assert login_form(guesser, "a-guess").status_code == 401
        assert_locked_out(server, guesser)


@pytest.mark.parametrize("engine", ENGINES)
def test_the_right_bearer_is_never_counted_nor_clears_the_count(serve, engine):
    server = serve(engine)
    with client(server) as c:
        for _ in range(LIMIT - 1):
            assert c.get("/api/sessions", headers=WRONG).status_code == 401
        for _ in range(3 * LIMIT):
            assert c.get("/api/sessions", headers=server.auth).status_code == 200
        assert c.get("/api/sessions", headers=WRONG).status_code == 401, "the last wrong token the limit allows"
        assert c.get("/api/sessions", headers=server.auth).status_code == 429


def test_guesses_on_one_process_lock_the_address_out_on_another(serve, redis_url):
    a = serve("redis")
    b = serve("redis", extra=["--admin-token", a.admin_token])  # the same installation: one token
    with client(a) as on_a, client(b) as on_b:
        assert on_b.get("/api/sessions", headers=b.auth).status_code == 200
        for _ in range(LIMIT):
            assert on_a.get("/api/sessions", headers=WRONG).status_code == 401
        assert on_b.get("/api/sessions", headers=WRONG).status_code == 429
        assert_locked_out(b, on_b)


# --- whose address, and where it is kept ------------------------------------------------------


def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_limit(serve):
    # uvicorn trusts X-Forwarded-For from 127.0.0.1 (FORWARDED_ALLOW_IPS' default): the proxy here.
    server = serve("memory")
    with client(server) as proxy:
        guesser = {"X-Forwarded-For": "203.0.113.5"}
        for _ in range(LIMIT):
            assert proxy.get("/api/sessions", headers={**WRONG, **guesser}).status_code == 401
        assert proxy.get("/api/sessions", headers={**server.auth, **guesser}).status_code == 429
        staff = {"X-Forwarded-For": "203.0.113.6"}
        assert proxy.get("/api/sessions", headers={**server.auth, **staff}).status_code == 200


def test_a_client_that_is_not_a_trusted_proxy_cannot_escape_by_naming_another_address(serve):
    server = serve("memory")
    with client(server, "127.0.0.3") as guesser:
        for i in range(LIMIT):
            r = guesser.get("/api/sessions", headers={**WRONG, "X-Forwarded-For": f"198.51.100.{i}"})
            assert r.status_code == 401
        r = guesser.get("/api/sessions", headers={**server.auth, "X-Forwarded-For": "198.51.100.99"})
        assert r.status_code == 429


def test_no_address_is_kept_in_redis_or_written_to_the_log(serve, redis_url):
    server = serve("redis")
    with client(server, "127.0.0.4") as guesser:
        for _ in range(LIMIT + 2):
            guesser.get("/api/sessions", headers=WRONG)
        login_form(guesser, "a-guess")
    stored = redis_contents(redis_url)
    limits = [key for key in stored if key.startswith("kairos:staff:failures:")]
    assert len(limits) == 1 and re.fullmatch(r"kairos:staff:failures:[0-9a-f]{32}", limits[0])
    assert not any("127.0.0.4" in key or "127.0.0.4" in value for key, value in stored.items())
    output = server.output()
    assert "too many wrong tokens from one client" in output
    assert "127.0.0.4" not in output


# --- pure: which address a request is counted under ---------------------------------------------


def conn_from(host: str) -> HTTPConnection:
    return HTTPConnection({"type": "http", "client": (host, 50000), "headers": [], "path": "/", "query_string": b""})


@pytest.mark.parametrize("host, counted_as", [
    ("203.0.113.7", "203.0.113.7"),
    ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::/64"),
    ("2001:db8:1:2::1", "2001:db8:1:2::/64"),
    ("::ffff:203.0.113.7", "203.0.113.7"),
])
def test_an_ipv6_client_is_counted_by_its_64_block(host, counted_as):
    assert lockout.client_address(conn_from(host)) == counted_as


def test_clients_are_named_by_a_keyed_hash_shared_by_processes_with_one_token():
    one, other = lockout.limiter_key("token-one-0123456789"), lockout.limiter_key("token-two-0123456789")
    assert lockout.client_name(one, "203.0.113.7") == lockout.client_name(lockout.limiter_key("token-one-0123456789"),
                                                                          "203.0.113.7")
    assert lockout.client_name(one, "203.0.113.7") != lockout.client_name(other, "203.0.113.7")
    assert lockout.client_name(one, "203.0.113.7") != lockout.client_name(one, "203.0.113.8")

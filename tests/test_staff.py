"""Staff only: the dashboard, its API and /admin/* need a login (or the admin token), and changes need CSRF proof.

Most promises are checked in-process (httpx over ASGI, the app's start-up run);
those that depend on the real server (uvicorn's websocket handshake, the token
file that `kairos serve` makes, what it prints) run against `kairos serve`
processes, and the login form is filled in by real Chromium.
"""

from __future__ import annotations

import logging
import re
import stat
import time
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import pytest
from starlette.routing import Mount, Route, WebSocketRoute
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from conftest import DEMO_RULES, login as log_in_browser
from kairos import lockout, staff
from kairos.app import create_app
from kairos.settings import Settings
from kairos.staff import CSRF_COOKIE, SESSION_COOKIE, SESSION_S, new_session, session_key, stored_admin_token
from wsclient import Visitor

TOKEN = "the-right-token-for-these-tests"
ORIGIN = "http://testserver"
EVIL = "https://evil.example"

# Everything a visitor's browser or a monitor may reach without logging in. A
# route outside the staff prefixes that is not here fails the enumeration test:
# adding one is a decision, made here, in review.
VISITOR_PATHS = ("/", "/k.js", "/k-overlay.js", "/healthz", "/ws", "/b", "/static/dashboard")
VISITOR_PREFIXES = ("/demo",)


def app_for(token: str | None = TOKEN):
    return create_app(Settings(rules=DEMO_RULES, admin_token=token))


@pytest.fixture
async def app():
    app = app_for()
    async with app.router.lifespan_context(app):
        yield app


def client_for(app, base_url: str = ORIGIN, host: str = "127.0.0.1") -> httpx.AsyncClient:
    """A browser-like client (it keeps cookies) that has not logged in."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(host, 50000)), base_url=base_url)


@pytest.fixture
async def client(app):
    async with client_for(app) as c:
        yield c


async def csrf_of(client: httpx.AsyncClient) -> str:
    """The CSRF cookie, fetched with the login page when the client has none yet."""
    if CSRF_COOKIE not in client.cookies:
        assert (await client.get("/dashboard/login")).status_code == 200
    return client.cookies[CSRF_COOKIE]


async def log_in(client: httpx.AsyncClient, token: str = TOKEN, origin: str = ORIGIN,
                 next_url: str = "/dashboard") -> httpx.Response:
    return await client.post("/dashboard/login", data={"token": token, "csrf": await csrf_of(client), "next": next_url},
                             headers={"Origin": origin})


def cookie_attributes(response: httpx.Response, name: str) -> dict[str, str]:
    """The attributes of the Set-Cookie header for `name`, lower-cased; the value under '='."""
    for header in response.headers.get_list("set-cookie"):
        first, *attrs = [part.strip() for part in header.split(";")]
        if first.split("=", 1)[0] == name:
            out = {"=": first.split("=", 1)[1]}
            for attr in attrs:
                key, _, value = attr.partition("=")
                out[key.lower()] = value.lower()
            return out
    raise AssertionError(f"no Set-Cookie for {name}: {response.headers.get_list('set-cookie')}")


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x", path)


def staff_routes(app) -> list[tuple[str, str]]:
    """(method or 'WEBSOCKET', path) for every staff-only route of the app, login and logout aside.

    Fails on a route that is neither staff-only nor a listed visitor path.
    """
    out: list[tuple[str, str]] = []
    for route in app.routes:
        path = concrete(route.path)
        zone = staff.staff_zone(path)
        if zone is None:
            assert path in VISITOR_PATHS or path.startswith(VISITOR_PREFIXES), \
                f"{route.path} is open to anyone: list it in VISITOR_PATHS, or move it under {staff.STAFF_PREFIXES}"
        elif zone == "login":
            continue
        elif isinstance(route, WebSocketRoute):
            out.append(("WEBSOCKET", path))
        elif isinstance(route, Mount):
            out += [("GET", path + "/x"), ("POST", path + "/x")]
        else:
            assert isinstance(route, Route)
            out += [(method, path) for method in sorted(route.methods or ())]
    return out


# --- nothing staff-only without a login -----------------------------------------------------


async def test_every_staff_route_is_refused_without_a_login(client, app):
    routes = staff_routes(app)
    assert {("GET", "/dashboard"), ("GET", "/api/sessions/x"), ("PUT", "/admin/rules")} <= set(routes)
    ws_paths = [path for method, path in routes if method == "WEBSOCKET"]
    assert ws_paths == list(STAFF_WEBSOCKETS), "a new staff websocket: add it to STAFF_WEBSOCKETS"
    for method, path in routes:
        r = await client.request(method, path, headers={"Origin": ORIGIN})
        if method in ("GET", "HEAD") and path.startswith("/dashboard"):
            assert (method, path, r.status_code) == (method, path, 303)
            assert r.headers["location"] == "/dashboard/login?next=" + quote(path, safe="/")
        elif method in ("GET", "HEAD", "OPTIONS"):
            assert (method, path, r.status_code) == (method, path, 401)
            assert r.headers["www-authenticate"].startswith("Bearer")
        else:
            assert (method, path, r.status_code) == (method, path, 401)
            cross_site = await client.request(method, path, headers={"Origin": EVIL})
            assert (method, path, cross_site.status_code) == (method, path, 403)


async def test_the_bearer_token_and_a_login_each_open_every_staff_route(app):
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    async with client_for(app) as scripted, client_for(app) as browser:
        assert (await log_in(browser)).status_code == 303
        for method, path in staff_routes(app):
            r = await scripted.request(method, path, headers=bearer)
            assert r.status_code not in (303, 401, 403), (method, path, r.status_code)
            r = await browser.request(method, path, headers={"Origin": ORIGIN, "X-CSRF-Token": await csrf_of(browser)})
            assert r.status_code not in (303, 401, 403), (method, path, r.status_code)


async def test_a_page_remembers_where_it_was_going(client):
    r = await client.get("/dashboard?sid=s_1")
    assert r.headers["location"] == "/dashboard/login?next=/dashboard%3Fsid%3Ds_1"
    next_url = parse_qs(urlsplit(r.headers["location"]).query)["next"][0]
    assert (await log_in(client, next_url=next_url)).headers["location"] == "/dashboard?sid=s_1"


@pytest.mark.parametrize("next_url", ["https://evil.example/", "//evil.example/dashboard", "/demo/",
                                      "/dashboard@evil.example", "/dashboard/login", "/dashboard/\\evil.example"])
async def test_after_logging_in_only_a_dashboard_page_is_a_destination(client, next_url):
    assert (await log_in(client, next_url=next_url)).headers["location"] == "/dashboard"


async def test_visitor_endpoints_stay_open(client):
    for path in ("/healthz", "/demo/", "/static/dashboard/dashboard.js", "/static/dashboard/dashboard.css",
                 "/dashboard/login"):
        assert (path, (await client.get(path)).status_code) == (path, 200)
    for path in ("/k.js", "/k-overlay.js"):
        assert (await client.get(path)).status_code in (200, 503)  # 503: the snippet is not built in this checkout


async def test_without_an_admin_token_nobody_gets_in():
    async with client_for(app_for(None)) as c:
        assert "nobody can log in" in (await c.get("/dashboard/login")).text
        assert (await log_in(c, token="")).status_code == 401
        assert (await log_in(c, token="None")).status_code == 401
        assert (await c.get("/api/sessions", headers={"Authorization": "Bearer "})).status_code == 401
        assert (await c.get("/dashboard")).status_code == 303


# --- logging in and out -----------------------------------------------------------------------


async def test_the_login_page_has_a_form_with_a_csrf_token_and_a_strict_csp(client):
    r = await client.get("/dashboard/login")
    assert r.status_code == 200
    csrf = cookie_attributes(r, CSRF_COOKIE)
    assert "httponly" not in csrf, "the dashboard's script reads it"
    assert (csrf["samesite"], csrf["path"]) == ("strict", "/")
    assert f'name="csrf" value="{csrf["="]}"' in r.text
    policy = r.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "style-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy
    assert "<script" not in r.text and "style=" not in r.text and "<style" not in r.text
    assert r.headers["cache-control"] == "no-store"


async def test_a_wrong_token_is_refused_with_the_form_again_and_a_log_line(client, caplog):
    with caplog.at_level(logging.WARNING, logger="kairos"):
        r = await log_in(client, token="not-the-token")
    assert r.status_code == 401
    assert "That is not the admin token." in r.text and 'id="login"' in r.text
    assert SESSION_COOKIE not in client.cookies
    assert any("login refused: wrong admin token" in rec.getMessage() for rec in caplog.records)
    assert (await client.get("/api/sessions")).status_code == 401


async def test_the_right_token_logs_in_with_an_http_only_strict_cookie(client):
    r = await log_in(client)
    assert (r.status_code, r.headers["location"]) == (303, "/dashboard")
    cookie = cookie_attributes(r, SESSION_COOKIE)
    assert "httponly" in cookie and cookie["samesite"] == "strict" and cookie["path"] == "/"
    assert cookie["max-age"] == str(SESSION_S)
    assert "secure" not in cookie, "plain http: a Secure cookie would never come back"
    assert "domain" not in cookie
    page = await client.get("/dashboard")
    assert page.status_code == 200 and 'id="sessions"' in page.text
    assert (await client.get("/api/sessions")).json() == {"sessions": []}
    assert (await client.get("/admin/rules")).status_code == 200


async def test_over_https_the_cookies_are_secure(app):
    async with client_for(app, base_url="https://testserver") as c:
        r = await log_in(c, origin="https://testserver")
        assert r.status_code == 303
        assert "secure" in cookie_attributes(r, SESSION_COOKIE)
        assert "secure" in cookie_attributes(r, CSRF_COOKIE)
        assert (await c.get("/api/sessions")).status_code == 200


async def test_a_forwarded_proto_header_alone_does_not_make_a_request_https(client):
    # Trusting X-Forwarded-Proto is uvicorn's job, for the proxies FORWARDED_ALLOW_IPS names.
    r = await client.post("/dashboard/login", data={"token": TOKEN, "csrf": await csrf_of(client)},
                          headers={"Origin": ORIGIN, "X-Forwarded-Proto": "https"})
    assert r.status_code == 303 and "secure" not in cookie_attributes(r, SESSION_COOKIE)


async def test_logging_in_gives_a_new_csrf_token(client):
    before = await csrf_of(client)
    assert cookie_attributes(await log_in(client), CSRF_COOKIE)["="] != before


@pytest.mark.parametrize("cookie", ["forged", "expired", "other token", "garbage", "empty"])
async def test_a_session_cookie_the_server_did_not_sign_or_that_expired_is_refused(client, cookie):
    await log_in(client)
    key, now, good = session_key(TOKEN), time.time(), client.cookies[SESSION_COOKIE]
    expires, nonce, mac = good.split(".")
    value = {
        "forged": f"{int(expires) + 3600}.{nonce}.{mac}",
        "expired": new_session(key, now - SESSION_S - 1),
        "other token": new_session(session_key("another-token-entirely-0123"), now),
        "garbage": "x.y.z",
        "empty": "",
    }[cookie]
    client.cookies.set(SESSION_COOKIE, value)
    assert (await client.get("/api/sessions")).status_code == 401
    assert (await client.get("/dashboard")).status_code == 303
    client.cookies.set(SESSION_COOKIE, good)
    assert (await client.get("/api/sessions")).status_code == 200, "the same client with a good cookie gets in"


async def test_a_new_admin_token_logs_everyone_out(client):
    await log_in(client)
    async with client_for(app_for("a-new-admin-token-after-a-leak")) as after_the_change:
        after_the_change.cookies.set(SESSION_COOKIE, client.cookies[SESSION_COOKIE])
        assert (await after_the_change.get("/api/sessions")).status_code == 401


async def test_logout_ends_the_session_in_this_browser(client):
    await log_in(client)
    assert (await client.post("/dashboard/logout", headers={"Origin": ORIGIN})).status_code == 403, "no CSRF token"
    assert (await client.get("/api/sessions")).status_code == 200
    r = await client.post("/dashboard/logout", data={"csrf": await csrf_of(client)}, headers={"Origin": ORIGIN})
    assert (r.status_code, r.headers["location"]) == (303, "/dashboard/login")
    cleared = cookie_attributes(r, SESSION_COOKIE)
    assert (cleared["="], cleared["max-age"], "httponly" in cleared) == ("", "0", True)
    assert SESSION_COOKIE not in client.cookies
    assert (await client.get("/api/sessions")).status_code == 401
    assert (await client.get("/dashboard")).status_code == 303


async def test_the_dashboard_page_has_a_logout_form_and_a_strict_csp(client):
    await log_in(client)
    r = await client.get("/dashboard")
    assert '<form class="logout" id="logout" method="post" action="/dashboard/logout">' in r.text
    assert f'name="csrf" value="{client.cookies[CSRF_COOKIE]}"' in r.text
    policy = r.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "connect-src 'self'" in policy and "unsafe-inline" not in policy
    assert "style=" not in r.text and "<style" not in r.text
    assert re.findall(r"<script[^>]*>", r.text) == ['<script src="/static/dashboard/dashboard.js" defer>']
    assert (await client.get("/api/sessions")).headers["cache-control"] == "no-store"


async def test_guessing_is_slowed_per_client(app, caplog):
    async with client_for(app, host="203.0.113.7") as guesser, client_for(app, host="198.51.100.2") as other:
        for _ in range(lockout.MAX_FAILURES):
            assert (await log_in(guesser, token="guess")).status_code == 401
        with caplog.at_level(logging.WARNING, logger="kairos"):
            r = await log_in(guesser)  # even the right token, once the client is over its limit
        assert r.status_code == 429 and 0 < int(r.headers["retry-after"]) <= lockout.FAILURE_WINDOW_S
        assert "Too many wrong tokens" in r.text
        assert any("too many wrong tokens" in rec.getMessage() for rec in caplog.records)
        assert "203.0.113.7" not in caplog.text, "no address is logged"
        assert (await log_in(other)).status_code == 303, "another client is not held back"


# --- CSRF -------------------------------------------------------------------------------------


async def test_a_cross_site_form_post_is_refused(client, caplog):
    await log_in(client)
    csrf = await csrf_of(client)
    with caplog.at_level(logging.WARNING, logger="kairos"):
        r = await client.post("/dashboard/logout", data={"csrf": csrf}, headers={"Origin": EVIL})
    assert r.status_code == 403
    assert any("refused POST /dashboard/logout" in rec.getMessage() and EVIL in rec.getMessage()
               for rec in caplog.records)
    assert (await client.get("/api/sessions")).status_code == 200, "still logged in"
    r = await client.put("/admin/rules", content=DEMO_RULES.read_text(),
                         headers={"Origin": EVIL, "X-CSRF-Token": csrf, "Content-Type": "text/plain"})
    assert r.status_code == 403
    async with client_for(client._transport.app) as fresh:  # logging someone in from another site
        assert (await log_in(fresh, origin=EVIL)).status_code == 403


async def test_a_same_origin_change_needs_the_csrf_token(client):
    await log_in(client)
    rules = DEMO_RULES.read_text()
    yaml = {"Content-Type": "application/yaml", "Origin": ORIGIN}
    assert (await client.put("/admin/rules", content=rules, headers=yaml)).status_code == 403
    wrong = {**yaml, "X-CSRF-Token": "not-the-cookie"}
    assert (await client.put("/admin/rules", content=rules, headers=wrong)).status_code == 403
    r = await client.put("/admin/rules", content=rules, headers={**yaml, "X-CSRF-Token": await csrf_of(client)})
    assert (r.status_code, r.json()["version"]) == (200, 2)


async def test_without_an_origin_the_referer_must_be_our_own(client):
    await log_in(client)
    yaml = {"Content-Type": "application/yaml", "X-CSRF-Token": await csrf_of(client)}
    rules = DEMO_RULES.read_text()
    for headers, status in (({}, 403), ({"Referer": EVIL + "/x"}, 403), ({"Origin": "null"}, 403),
                            ({"Referer": ORIGIN + "/dashboard"}, 200)):
        r = await client.put("/admin/rules", content=rules, headers={**yaml, **headers})
        assert (headers, r.status_code) == (headers, status)


async def test_bearer_requests_need_no_csrf_proof(client):
    r = await client.put("/admin/rules", content=DEMO_RULES.read_text(),
                         headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/yaml", "Origin": EVIL})
    assert r.status_code == 200
    assert (await client.get("/api/sessions", headers={"Authorization": f"Bearer {TOKEN}"})).status_code == 200


async def test_a_wrong_bearer_is_refused_even_with_a_login(client):
    await log_in(client)
    assert (await client.get("/api/sessions", headers={"Authorization": "Bearer wrong"})).status_code == 401


async def test_an_oversized_form_is_refused(client):
    r = await client.post("/dashboard/logout", data={"csrf": await csrf_of(client), "pad": "x" * staff.MAX_FORM_BYTES},
                          headers={"Origin": ORIGIN})
    assert r.status_code == 413


# --- origins and cookies, pure ----------------------------------------------------------------


@pytest.mark.parametrize("url, origin", [
    ("http://Example.com", "http://example.com"),
    ("https://example.com:443/path?q", "https://example.com"),
    ("http://example.com:80", "http://example.com"),
    ("http://127.0.0.1:8000/dashboard", "http://127.0.0.1:8000"),
    ("http://[::1]:8000", "http://[::1]:8000"),
    ("null", None), ("javascript:alert(1)", None), ("http://", None), ("http://example.com:99999", None),
])
def test_origin_of(url, origin):
    assert staff.origin_of(url) == origin


def test_a_session_is_valid_until_it_expires():
    key = session_key(TOKEN)
    value = new_session(key, 1000.0, ttl_s=60)
    assert staff.session_valid(key, value, 1059.0)
    assert not staff.session_valid(key, value, 1060.0)
    assert not staff.session_valid(None, value, 1000.0)


# --- the token kept between runs -------------------------------------------------------------


def test_the_first_run_makes_a_private_token_file_and_later_runs_reuse_it(tmp_path):
    state = tmp_path / "state"
    token, created = stored_admin_token(state)
    assert created and len(token) >= 32
    assert stat.S_IMODE((state / "admin-token").stat().st_mode) == 0o600
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert stored_admin_token(state) == (token, False)
    assert [p.name for p in state.iterdir()] == ["admin-token"], "no temporary file left behind"


def test_an_empty_token_file_stops_the_server_from_starting(tmp_path):
    (tmp_path / "admin-token").write_text("\n")
    with pytest.raises(staff.TokenFileError, match="is empty"):
        stored_admin_token(tmp_path)


def test_kairos_serve_generates_the_token_once_and_reuses_it(serve, tmp_path, monkeypatch):
    monkeypatch.delenv("KAIROS_ADMIN_TOKEN", raising=False)
    state = tmp_path / "state"
    server = serve("memory", extra=["--state-dir", str(state)], own_token=False)
    token_file = state / "admin-token"
    token = token_file.read_text().strip()
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert f"log in:     with the admin token {token} (new, kept in {token_file})" in server.output()
    server.admin_token = token
    assert server.api("/api/sessions").status_code == 200
    assert httpx.get(f"{server.base}/api/sessions").status_code == 401, "loopback gets no pass"

    server.restart()
    later = server.output().split("Kairos is running")[-1]
    assert f"log in:     with the admin token in {token_file}" in later
    assert token not in later, "printed on the first run only"
    assert token_file.read_text().strip() == token
    assert server.api("/api/sessions").status_code == 200


# --- against the running server ---------------------------------------------------------------


def ws_status(url: str, headers: dict[str, str] | None = None) -> int:
    """The HTTP status a websocket handshake is answered with (101 when it is accepted)."""
    try:
        with connect(url, additional_headers=headers or {}, open_timeout=5):
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


# Every staff websocket: the running-server test below opens each with and without a login.
STAFF_WEBSOCKETS = ("/dashboard/feed",)


def test_the_running_server_refuses_staff_websockets_without_a_login(serve):
    server = serve("memory")
    ws_base = server.base.replace("http://", "ws://")
    with httpx.Client(base_url=server.base, timeout=5) as browser:
        browser.get("/dashboard/login")
        r = browser.post("/dashboard/login", data={"token": server.admin_token, "csrf": browser.cookies[CSRF_COOKIE]},
                         headers={"Origin": server.base})
        assert r.status_code == 303
        cookie = f"{SESSION_COOKIE}={browser.cookies[SESSION_COOKIE]}"
    # The guard answers 401 for any websocket under the prefixes without a login; one that
    # gets past it is accepted (101) on a real route, or meets Starlette's 403 for a path with none.
    for path, admitted in [*((p, 101) for p in STAFF_WEBSOCKETS), *((p, 403) for p in ("/api/live", "/admin/live"))]:
        assert (path, ws_status(ws_base + path)) == (path, 401)
        assert (path, ws_status(ws_base + path, {"Authorization": "Bearer wrong"})) == (path, 401)
        assert (path, ws_status(ws_base + path, {"Cookie": cookie, "Origin": EVIL})) == (path, 401)
        assert (path, ws_status(ws_base + path, {"Cookie": cookie})) == (path, 401), "no Origin: not from our page"
        assert (path, ws_status(ws_base + path, {"Cookie": cookie, "Origin": server.base})) == (path, admitted)
        assert (path, ws_status(ws_base + path, server.auth)) == (path, admitted)


async def test_visitors_still_connect_without_a_login(serve):
    server = serve("memory")
    v = await Visitor.arrive(server.ws_url)
    assert server.session(v.sid)["sid"] == v.sid
    await v.leave()


def test_the_running_server_refuses_a_cross_site_form_post_and_logs_it(serve):
    server = serve("memory")
    with httpx.Client(base_url=server.base, timeout=5) as browser:
        browser.get("/dashboard/login")
        csrf = browser.cookies[CSRF_COOKIE]
        r = browser.post("/dashboard/login", data={"token": server.admin_token, "csrf": csrf}, headers={"Origin": server.base})
        assert r.status_code == 303
        assert browser.get("/api/sessions").status_code == 200
        r = browser.post("/dashboard/logout", data={"csrf": browser.cookies[CSRF_COOKIE]}, headers={"Origin": EVIL})
        assert r.status_code == 403
        assert browser.get("/api/sessions").status_code == 200
        r = browser.post("/dashboard/login", data={"token": "wrong", "csrf": browser.cookies[CSRF_COOKIE]},
                         headers={"Origin": server.base})
        assert r.status_code == 401
    lines = server.output().splitlines()
    assert any("refused POST /dashboard/logout" in line and EVIL in line for line in lines)
    assert any("login refused: wrong admin token" in line for line in lines)


# --- in real Chromium -------------------------------------------------------------------------


@pytest.mark.browser
def test_staff_log_in_through_the_form_and_see_the_live_sessions(serve, browser):
    server = serve("memory")
    visitor = browser.new_context()
    staff_context = browser.new_context()
    try:
        shopper = visitor.new_page()
        shopper.goto(server.base + "/demo/products/linen-shirt")
        shopper.wait_for_function("() => window.kairos && window.kairos.state === 'open' && !!window.kairos.sid")
        sid = shopper.evaluate("window.kairos.sid")

        page = staff_context.new_page()
        violations: list[str] = []
        page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
        page.goto(server.base + "/dashboard")
        assert page.url == f"{server.base}/dashboard/login?next=/dashboard"
        page.fill("#token", "not-the-token")
        page.click("#login button[type=submit]")
        from playwright.sync_api import expect

        expect(page.locator("#login-error")).to_have_text("That is not the admin token.")
        log_in_browser(page, server)
        row = page.locator(f'#sessions-body tr[data-sid="{sid}"]')
        expect(row).to_contain_text("/demo/products/linen-shirt")
        expect(page.locator("#status")).to_have_attribute("data-state", "ok")
        cookies = {c["name"]: c for c in staff_context.cookies()}
        assert cookies[SESSION_COOKIE]["httpOnly"] and cookies[SESSION_COOKIE]["sameSite"] == "Strict"
        assert page.evaluate("document.cookie").find(SESSION_COOKIE) == -1, "scripts cannot read the session"
        assert violations == []

        page.click("#logout button")
        page.wait_for_url(f"{server.base}/dashboard/login")
        page.goto(server.base + "/dashboard")
        assert page.url.startswith(f"{server.base}/dashboard/login")
    finally:
        visitor.close()
        staff_context.close()

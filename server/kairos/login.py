"""The staff login page: GET and POST /dashboard/login, POST /dashboard/logout.

The secret is the admin token (kairos.staff explains the session cookie and
CSRF proof the guard checks before a request gets here). Wrong tokens are
counted per client and slowed down: guessing a generated token is hopeless,
a short one chosen by hand is not.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from collections import OrderedDict, deque
from typing import Any
from urllib.parse import parse_qs, urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from .staff import (CSRF_COOKIE, LOGIN_PATH, LOGOUT_PATH, MAX_FORM_BYTES, SESSION_COOKIE, SESSION_S, Staff, is_https,
                    new_session, set_cookie_header, staff_zone)

log = logging.getLogger("kairos")

# Wrong tokens: this many per client in this window, then 429 until the oldest ages out.
MAX_FAILURES = 10
FAILURE_WINDOW_S = 300.0


class LoginFailures:
    """Wrong tokens per client, to slow guessing: `max_failures` in `window_s`, then wait.

    Clients are known by a salted hash of their address, and only the
    `max_clients` most recent are remembered: bounded memory, and no address is kept.
    """

    def __init__(self, max_failures: int = MAX_FAILURES, window_s: float = FAILURE_WINDOW_S,
                 max_clients: int = 10_000) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self.max_clients = max_clients
        self._salt = secrets.token_bytes(16)
        self._failures: OrderedDict[bytes, deque[float]] = OrderedDict()

    def _key(self, client: str) -> bytes:
        return hashlib.blake2b(client.encode(), key=self._salt, digest_size=12).digest()

    def wait_s(self, client: str, now_s: float) -> float:
        """Seconds before this client may try a token again; 0 when it may now."""
        times = self._failures.get(self._key(client))
        if times is None or len(times) < self.max_failures:
            return 0.0
        return max(0.0, times[0] + self.window_s - now_s)

    def failed(self, client: str, now_s: float) -> None:
        key = self._key(client)
        times = self._failures.get(key)
        if times is None:
            times = self._failures[key] = deque(maxlen=self.max_failures)
            if len(self._failures) > self.max_clients:
                self._failures.popitem(last=False)
        else:
            self._failures.move_to_end(key)
        times.append(now_s)

    def forget(self, client: str) -> None:
        self._failures.pop(self._key(client), None)


def _safe_next(value: str | None) -> str:
    """Where to go after logging in: a dashboard path only, never another site."""
    if value and staff_zone(urlsplit(value).path) == "page" and value.startswith("/dashboard") \
            and not any(c in value for c in "\\\r\n\t"):
        return value
    return "/dashboard"


def _client(request: Request) -> str:
    return request.client.host if request.client else "?"


def _login_page(request: Request, next_url: str, error: str | None = None, status_code: int = 200,
                headers: dict[str, str] | None = None) -> Response:
    context: dict[str, Any] = {"csrf": request.state.kairos_csrf, "next": next_url, "error": error,
                               "configured": request.app.state.staff.token is not None}
    return request.app.state.templates.TemplateResponse(request, "dashboard/login.html", context,
                                                        status_code=status_code, headers=headers)


async def login(request: Request) -> Response:
    """GET: the login form. POST: check the admin token; on success a session cookie and the page asked for."""
    staff: Staff = request.app.state.staff
    failures: LoginFailures = request.app.state.login_failures
    if request.method in ("GET", "HEAD"):
        next_url = _safe_next(request.query_params.get("next"))
        if staff.logged_in(request):
            return RedirectResponse(next_url, status_code=303)
        return _login_page(request, next_url)
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        return JSONResponse({"ok": False, "error": f"a login form is at most {MAX_FORM_BYTES} bytes"}, status_code=413)
    form = parse_qs(body.decode("utf-8", "replace"), max_num_fields=20)
    next_url = _safe_next(form.get("next", [None])[0])
    now = time.monotonic()
    wait = failures.wait_s(_client(request), now)
    if wait > 0:
        log.warning("staff: login refused: too many wrong tokens from one client; it may try again in %d s", wait)
        return _login_page(request, next_url, f"Too many wrong tokens. Try again in {int(wait) + 1} s.", 429,
                           {"Retry-After": str(int(wait) + 1)})
    if not staff.token_matches(form.get("token", [""])[0].strip()):
        failures.failed(_client(request), now)
        log.warning("staff: login refused: wrong admin token")
        return _login_page(request, next_url, "That is not the admin token.", 401)
    assert staff.key is not None  # the token matched, so there is one
    failures.forget(_client(request))
    log.info("staff: logged in")
    response = RedirectResponse(next_url, status_code=303)
    secure = is_https(request)
    response.headers.append("set-cookie", set_cookie_header(
        SESSION_COOKIE, new_session(staff.key, time.time()), secure, http_only=True, max_age_s=SESSION_S))
    # A new CSRF token with the new session: one planted before the login is no use after it.
    response.headers.append("set-cookie", set_cookie_header(CSRF_COOKIE, secrets.token_urlsafe(24), secure, http_only=False))
    return response


async def logout(request: Request) -> Response:
    """End the session in this browser (POST, with CSRF proof) and go back to the login form."""
    response = RedirectResponse(LOGIN_PATH, status_code=303)
    response.headers.append("set-cookie", set_cookie_header(SESSION_COOKIE, "", is_https(request), http_only=True, max_age_s=0))
    return response


routes = [
    Route(LOGIN_PATH, login, methods=["GET", "POST"]),
    Route(LOGOUT_PATH, logout, methods=["POST"]),
]

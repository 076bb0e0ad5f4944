"""The staff login page: GET and POST /dashboard/login, POST /dashboard/logout.

The secret is the admin token (kairos.staff explains the session cookie and
CSRF proof the guard checks before a request gets here). Wrong tokens count
against the client's limit, the one a bearer token counts against too
(kairos.lockout): guessing a generated token is hopeless, a short one chosen
by hand is not. Logging out ends the login on the server, not only in this browser.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from . import bodies
from .lockout import retry_after_s
from .staff import (CSRF_COOKIE, LOGIN_PATH, LOGOUT_PATH, MAX_FORM_BYTES, SESSION_COOKIE, SESSION_S, Staff, is_https,
                    set_cookie_header, staff_zone)

log = logging.getLogger("kairos")


def _safe_next(value: str | None) -> str:
    """Where to go after logging in: a dashboard path only, never another site."""
    if value and staff_zone(urlsplit(value).path) == "page" and value.startswith("/dashboard") \
            and not any(c in value for c in "\\\r\n\t"):
        return value
    return "/dashboard"


def _login_page(request: Request, next_url: str, error: str | None = None, status_code: int = 200,
                headers: dict[str, str] | None = None) -> Response:
    context: dict[str, Any] = {"csrf": request.state.kairos_csrf, "next": next_url, "error": error,
                               "configured": request.app.state.staff.token is not None}
    return request.app.state.templates.TemplateResponse(request, "dashboard/login.html", context,
                                                        status_code=status_code, headers=headers)


async def login(request: Request) -> Response:
    """GET: the login form. POST: check the admin token; on success a session cookie and the page asked for."""
    staff: Staff = request.app.state.staff
    if request.method in ("GET", "HEAD"):
        next_url = _safe_next(request.query_params.get("next"))
        if await staff.logged_in(request):
            return RedirectResponse(next_url, status_code=303)
        return _login_page(request, next_url)
    try:
        form = bodies.parse_form(await bodies.read(request, MAX_FORM_BYTES))
    except bodies.TooLarge:
        return JSONResponse({"ok": False, "error": f"a login form is at most {MAX_FORM_BYTES} bytes"}, status_code=413)
    except ValueError as exc:
        return JSONResponse({"ok": False, "error": f"not a login form: {exc}"}, status_code=400)
    next_url = _safe_next(form.get("next", [None])[0])
    right = staff.token_matches(form.get("token", [""])[0].strip())
    # Counted, and refused past the limit, whether right or wrong: a guesser learns nothing from a late right guess.
    wait = await staff.attempt(request, failed=not right)
    if wait > 0:
        log.warning("staff: login refused: too many wrong tokens from one client; it may try again in %d s", wait)
        retry = retry_after_s(wait)
        return _login_page(request, next_url, f"Too many wrong tokens. Try again in {retry} s.", 429,
                           {"Retry-After": str(retry)})
    if not right:
        log.warning("staff: login refused: wrong admin token")
        return _login_page(request, next_url, "That is not the admin token.", 401)
    log.info("staff: logged in")
    response = RedirectResponse(next_url, status_code=303)
    secure = is_https(request)
    response.headers.append("set-cookie", set_cookie_header(
        SESSION_COOKIE, await staff.start_session(), secure, http_only=True, max_age_s=SESSION_S))
    # A new CSRF token with the new session: one planted before the login is no use after it.
    response.headers.append("set-cookie", set_cookie_header(CSRF_COOKIE, secrets.token_urlsafe(24), secure, http_only=False))
    return response


async def logout(request: Request) -> Response:
    """End the session (POST, with CSRF proof): on the server, so any copy of the cookie dies too;
    and in this browser. Then back to the login form."""
    await request.app.state.staff.end_session(request)
    response = RedirectResponse(LOGIN_PATH, status_code=303)
    response.headers.append("set-cookie", set_cookie_header(SESSION_COOKIE, "", is_https(request), http_only=True, max_age_s=0))
    return response


routes = [
    Route(LOGIN_PATH, login, methods=["GET", "POST"]),
    Route(LOGOUT_PATH, logout, methods=["POST"]),
]

"""Who may see the dashboard, its API and /admin/*: the staff login, its session cookie, and CSRF.

Everything staff-only sits under four prefixes: /dashboard (the pages), /api
(the JSON they read), /admin (rules replacement) and /metrics (kairos.scrape:
the main address is public, and a scraper without the token uses the metrics
address). One ASGI middleware, `StaffGuard`, stands in front of all four, so a
route added under them later is protected without doing anything. Everything
else — the snippet, /ws, /b, the demo store, /healthz — is for visitors and
stays open.

A request gets in with either

- `Authorization: Bearer <admin token>` (scripts, tests, /admin/* as before), or
- the `kairos_staff` cookie from logging in at /dashboard/login with the admin
  token: `<expiry>.<id>.<HMAC-SHA256>`, keyed by a key derived from the token.
  HttpOnly, SameSite=Strict, Secure over https. The login is also a record in
  the engine (under a digest of the random id, with the token's fingerprint,
  expiring with the cookie), read on every staff request: logging out deletes
  it, so a copy of the cookie is refused by every process from then on, and a
  new token ends every login twice over (the key and the fingerprint change).
  A staff websocket opened with the cookie looks at the record every
  SESSION_RECHECK_S and is closed (4001) once it is gone.

Wrong tokens, as a bearer or in the login form, are limited per client
(kairos.lockout): past the limit even the right one is answered 429.

A state-changing request (anything but GET, HEAD, OPTIONS) with the session
cookie, and the login and logout forms, must also come from this server's own
origin (its Origin header, or its Referer when there is none) and echo the
`kairos_csrf` cookie in an `X-CSRF-Token` header or a `csrf` form field (double
submit). A cross-site page can do neither: it cannot read the cookie, and the
browser names its origin. Any change whose Origin is another site's is refused
(403), logged in or not. Bearer requests need no such proof, as no cross-site
page can set that header (there is no CORS here to let it).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import secrets
import time
from pathlib import Path
from typing import TYPE_CHECKING, AsyncIterator
from urllib.parse import quote, urlsplit

from starlette.datastructures import MutableHeaders
from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .bodies import FORM_BYTES, TooLarge, parse_form, read_chunks
from . import lockout
from .secrets_file import SecretFileError, stored_secret

if TYPE_CHECKING:
    from .engine import Engine

log = logging.getLogger("kairos")

TOKEN_FILE = "admin-token"
SESSION_COOKIE = "kairos_staff"
CSRF_COOKIE = "kairos_csrf"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf"
# A working day: long enough not to log staff out mid-shift, short enough that a
# cookie left on a shared machine dies overnight.
SESSION_S = 12 * 3600
LOGIN_PATH = "/dashboard/login"
LOGOUT_PATH = "/dashboard/logout"
STAFF_PREFIXES = ("/dashboard", "/api", "/admin", "/metrics")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# The login and logout forms are a few short fields; /admin/rules takes YAML, not forms.
MAX_FORM_BYTES = FORM_BYTES
# How often a staff websocket opened with the cookie looks whether its login still
# holds: one engine read per open dashboard every 2 s, and a logout reaches its
# feed within that.
SESSION_RECHECK_S = 2.0
# Closes a staff websocket whose login ended (logged out, expired, a new token).
CLOSE_LOGGED_OUT = 4001
# A configured token shorter than this draws a warning: the rate limit slows
# guessing, it does not make a short token safe.
SHORT_TOKEN = 16

# What the dashboard's pages may load: their own script and stylesheet, the
# JSON API. No inline script or style anywhere, as on the demo store.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    # Sessions are private: no shared or browser cache keeps them.
    "cache-control": "no-store",
}


# --- the admin token when none is configured -------------------------------------------------


# The stored admin token cannot be used.
TokenFileError = SecretFileError


def stored_admin_token(state_dir: Path) -> tuple[str, bool]:
    """The admin token kept in `state_dir`/admin-token (192 bits), made on first use; and whether it was made now."""
    return stored_secret(Path(state_dir) / TOKEN_FILE, "the admin token", 24)


# --- signed session cookies (pure: time is a parameter) ---------------------------------------


def session_key(token: str) -> bytes:
    """The key that signs staff sessions: derived from the admin token, so a new token ends every session."""
    return hmac.new(token.encode(), b"kairos staff session v1", hashlib.sha256).digest()


def _sign(key: bytes, payload: str) -> str:
    mac = hmac.new(key, payload.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def new_session(key: bytes, now_s: float, ttl_s: int = SESSION_S) -> str:
    """A session cookie value valid for `ttl_s` from `now_s`, with a random id (128 bits)."""
    payload = f"{int(now_s) + ttl_s}.{secrets.token_urlsafe(16)}"
    return f"{payload}.{_sign(key, payload)}"


def session_id(key: bytes | None, value: str | None, now_s: float) -> str | None:
    """The id of `value` when it is a session signed with `key` that has not expired at `now_s`; else None."""
    if key is None or not value:
        return None
    payload, _, mac = value.rpartition(".")
    expires, _, sid = payload.partition(".")
    if not (expires.isdigit() and sid and mac):
        return None
    return sid if hmac.compare_digest(mac, _sign(key, payload)) and int(expires) > now_s else None


def session_valid(key: bytes | None, value: str | None, now_s: float) -> bool:
    """Whether `value` is a session signed with `key` that has not expired at `now_s` (its signature only)."""
    return session_id(key, value, now_s) is not None


def session_name(sid: str) -> str:
    """What the engine keeps a login under: a digest of its id, so what is stored cannot be replayed as a cookie."""
    return hashlib.sha256(sid.encode()).hexdigest()[:32]


def token_fingerprint(token: str) -> str:
    """Which admin token a login was made with, without telling anything of the token."""
    return hmac.new(token.encode(), b"kairos staff fingerprint v1", hashlib.sha256).hexdigest()[:16]


def set_cookie_header(name: str, value: str, secure: bool, http_only: bool, max_age_s: int | None = None) -> str:
    """A Set-Cookie value: host-only, whole site, SameSite=Strict."""
    parts = [f"{name}={value}", "Path=/", "SameSite=Strict"]
    if max_age_s is not None:
        parts.append(f"Max-Age={max_age_s}")
    if http_only:
        parts.append("HttpOnly")
    if secure:
        parts.append("Secure")
    return "; ".join(parts)


# --- origins ----------------------------------------------------------------------------------


def origin_of(url: str) -> str | None:
    """`scheme://host[:port]` of an http(s) URL, the default port left out; None when it is not one."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    default = 80 if parts.scheme == "http" else 443
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None and port != default else "")


def own_origin(conn: HTTPConnection) -> str | None:
    """The origin this request was sent to, from its scheme and Host header.

    The scheme is https behind a TLS proxy only when uvicorn was told to trust
    the proxy's X-Forwarded-Proto (FORWARDED_ALLOW_IPS; 127.0.0.1 by default).
    """
    scheme = {"ws": "http", "wss": "https"}.get(conn.url.scheme, conn.url.scheme)
    host = conn.headers.get("host")
    return origin_of(f"{scheme}://{host}") if host else None


def cross_origin(conn: HTTPConnection) -> str | None:
    """Why this request cannot be trusted to come from our own pages; None when it can."""
    own = own_origin(conn)
    origin = conn.headers.get("origin")
    if origin is None:
        referer = conn.headers.get("referer")
        if referer is None:
            return "it names no Origin or Referer"
        origin = referer
    if own is None or origin_of(origin) != own:
        # Named by its origin alone: a Referer's path and query can carry a token or an e-mail address.
        return f"it comes from {origin_of(origin) or 'an address that is not an http(s) URL'}, not from {own}"
    return None


def is_https(conn: HTTPConnection) -> bool:
    return conn.url.scheme in ("https", "wss")


# --- the guard --------------------------------------------------------------------------------


class Staff:
    """The admin token and what is derived from it, and the engine that keeps logins and
    wrong-token counts. Without a token nobody can log in."""

    def __init__(self, token: str | None, engine: Engine) -> None:
        self.token = token or None
        self.engine = engine
        self.key = session_key(self.token) if self.token else None
        self.fingerprint = token_fingerprint(self.token) if self.token else None
        # Without a token there is nothing to share between processes: any key will do.
        self._limiter = lockout.limiter_key(self.token) if self.token else secrets.token_bytes(32)
        if self.token and len(self.token) < SHORT_TOKEN:
            log.warning("staff: the admin token is %d characters long: use %d or more (`python -c "
                        "'import secrets; print(secrets.token_hex(24))'`)", len(self.token), SHORT_TOKEN)

    def token_matches(self, given: str) -> bool:
        """Constant-time comparison with the admin token; never true without one."""
        if self.token is None:
            return False
        return hmac.compare_digest(given.encode(), self.token.encode())

    def bearer(self, conn: HTTPConnection) -> bool | None:
        """True for the right bearer token, False for a wrong one, None when none is given."""
        header = conn.headers.get("authorization")
        if header is None:
            return None
        scheme, _, given = header.partition(" ")
        return scheme.lower() == "bearer" and self.token_matches(given.strip())

    async def attempt(self, conn: HTTPConnection, failed: bool) -> float:
        """Count a presentation of the token by this client: seconds it must wait first (0: go ahead)."""
        client = lockout.client_name(self._limiter, lockout.client_address(conn))
        return await self.engine.staff_attempt(client, failed, lockout.MAX_FAILURES, lockout.FAILURE_WINDOW_S)

    async def session_of(self, conn: HTTPConnection) -> str | None:
        """The engine's name for the login whose cookie this request carries, if it still holds; else None."""
        sid = session_id(self.key, conn.cookies.get(SESSION_COOKIE), time.time())
        if sid is None:
            return None
        name = session_name(sid)
        return name if await self.session_holds(name) else None

    async def session_holds(self, name: str) -> bool:
        """Whether the login kept under `name` was made with this token and has neither ended nor expired."""
        record = await self.engine.staff_session(name)
        return (record is not None and self.fingerprint is not None
                and hmac.compare_digest(record.get("fp", ""), self.fingerprint)
                and int(record.get("expires_ms", "0")) > time.time() * 1000)

    async def logged_in(self, conn: HTTPConnection) -> bool:
        return await self.session_of(conn) is not None

    async def start_session(self, ttl_s: int = SESSION_S) -> str:
        """Record a new login; the cookie value that carries it."""
        assert self.key is not None and self.fingerprint is not None, "nobody logs in without a token"
        now = time.time()
        value = new_session(self.key, now, ttl_s)
        sid = session_id(self.key, value, now)
        assert sid is not None
        record = {"fp": self.fingerprint, "created_ms": str(int(now * 1000)), "expires_ms": str(int(now + ttl_s) * 1000)}
        await self.engine.add_staff_session(session_name(sid), record, ttl_s)
        return value

    async def end_session(self, conn: HTTPConnection) -> None:
        """End the login this request's cookie carries, everywhere (a copy of the cookie dies with it)."""
        sid = session_id(self.key, conn.cookies.get(SESSION_COOKIE), time.time())
        if sid is not None:
            await self.engine.end_staff_session(session_name(sid))


def staff_zone(path: str) -> str | None:
    """'login' (open, CSRF-checked), 'page' (HTML), 'api' (JSON), or None (visitors')."""
    if path in (LOGIN_PATH, LOGOUT_PATH):
        return "login"
    for prefix in STAFF_PREFIXES:
        if path == prefix or path.startswith(prefix + "/"):
            return "page" if prefix == "/dashboard" else "api"
    return None


def _route_path(scope: Scope) -> str:
    # Behind a root_path, Starlette routes on the path without it: judge the same path.
    path, root = scope["path"], scope.get("root_path", "")
    return path[len(root):] if root and path.startswith(root) else path


class StaffGuard:
    """Pure-ASGI middleware: staff-only paths need a login or the bearer token; changes need CSRF proof."""

    def __init__(self, app: ASGIApp, staff: Staff) -> None:
        self.app = app
        self.staff = staff

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        zone = staff_zone(_route_path(scope))
        if zone is None:
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
        else:
            await self._http(scope, receive, send, zone)

    async def _http(self, scope: Scope, receive: Receive, send: Send, zone: str) -> None:
        conn = HTTPConnection(scope)
        method = scope["method"]
        bearer = self.staff.bearer(conn)
        if bearer is not None:
            wait = await self.staff.attempt(conn, failed=not bearer)
            if wait > 0:
                log.warning("staff: refused %s %s: too many wrong tokens from one client", method, scope["path"])
                await too_many_tries(wait)(scope, receive, send)
                return
        if bearer is False:
            await unauthorized("the bearer token is not the admin token")(scope, receive, send)
            return
        csrf = conn.cookies.get(CSRF_COOKIE) or ""
        if method not in SAFE_METHODS and not bearer:
            why = None
            if zone == "login" or SESSION_COOKIE in conn.cookies:
                why = cross_origin(conn)
                if why is None:
                    try:
                        why, receive = await _csrf_problem(conn, receive, csrf)
                    except TooLarge:
                        error = f"a form here is at most {MAX_FORM_BYTES} bytes"
                        await JSONResponse({"ok": False, "error": error}, status_code=413)(scope, receive, send)
                        return
            elif "origin" in conn.headers or "referer" in conn.headers:
                # Without a session it is refused below anyway; a cross-site post is told so.
                why = cross_origin(conn)
            if why is not None:
                log.warning("staff: refused %s %s: %s", method, scope["path"], why)
                await JSONResponse({"ok": False, "error": f"refused: {why}"}, status_code=403)(scope, receive, send)
                return
        if zone != "login" and not bearer and not await self.staff.logged_in(conn):
            if zone == "page" and method in ("GET", "HEAD"):
                here = scope["path"] + (f"?{scope['query_string'].decode('latin-1')}" if scope.get("query_string") else "")
                response: Response = RedirectResponse(f"{LOGIN_PATH}?next={quote(here, safe='/')}", status_code=303)
            else:
                response = unauthorized("log in at /dashboard/login, or send 'Authorization: Bearer <admin token>'")
            await response(scope, receive, send)
            return
        # Pages need a CSRF cookie for their forms and scripts: give one to a browser that has none.
        new_csrf = None
        if zone != "api" and not csrf:
            new_csrf = csrf = secrets.token_urlsafe(24)
        scope.setdefault("state", {})["kairos_csrf"] = csrf
        secure = is_https(conn)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    if name not in headers:
                        headers[name] = value
                if new_csrf is not None:
                    headers.append("set-cookie", set_cookie_header(CSRF_COOKIE, new_csrf, secure, http_only=False))
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        conn = HTTPConnection(scope)
        bearer = self.staff.bearer(conn)
        if bearer is not None:
            wait = await self.staff.attempt(conn, failed=not bearer)
            if wait > 0:
                log.warning("staff: refused a websocket to %s: too many wrong tokens from one client", scope["path"])
                await _deny(scope, receive, send, too_many_tries(wait), CLOSE_TRY_LATER, "too many wrong tokens")
                return
            if bearer:
                await self.app(scope, receive, send)
                return
        # Browsers do not apply the same-origin policy to websockets: a cookie is
        # only good from our own pages.
        elif cross_origin(conn) is None and (session := await self.staff.session_of(conn)) is not None:
            await self._while_logged_in(session, scope, receive, send)
            return
        log.info("staff: refused a websocket to %s without a login", scope["path"])
        await _deny(scope, receive, send, unauthorized("log in first, or send 'Authorization: Bearer <admin token>'"),
                    4003, "staff only")

    async def _while_logged_in(self, session: str, scope: Scope, receive: Receive, send: Send) -> None:
        """Run a staff websocket opened with the cookie, closing it once its login ends.

        The endpoint is waiting in `receive` whenever it is not sending (the
        feed page sends nothing), so that is where the login is looked at,
        every SESSION_RECHECK_S. Once it has ended, the browser gets
        CLOSE_LOGGED_OUT and the endpoint a disconnect; what the endpoint sends
        after that goes nowhere.
        """
        closed = False
        pending: asyncio.Future[Message] | None = None

        async def watched_receive() -> Message:
            nonlocal closed, pending
            while not closed:
                if pending is None:
                    pending = asyncio.ensure_future(receive())
                done, _ = await asyncio.wait({pending}, timeout=SESSION_RECHECK_S)
                if done:
                    message, pending = pending.result(), None
                    return message
                if not await self.staff.session_holds(session):
                    log.info("staff: closed a websocket to %s: its login ended", scope["path"])
                    closed = True
                    # The browser's close comes back through the pending receive: nobody awaits it now.
                    pending.add_done_callback(lambda f: f.cancelled() or f.exception())
                    await send({"type": "websocket.close", "code": CLOSE_LOGGED_OUT, "reason": "logged out"})
            return {"type": "websocket.disconnect", "code": CLOSE_LOGGED_OUT}

        async def watched_send(message: Message) -> None:
            if not closed:
                await send(message)

        try:
            await self.app(scope, watched_receive, watched_send)
        finally:
            if pending is not None and not pending.done():
                pending.cancel()  # the endpoint is done with the socket: nobody will read it


def unauthorized(error: str) -> Response:
    return JSONResponse({"ok": False, "error": error}, status_code=401,
                        headers={"WWW-Authenticate": 'Bearer realm="kairos staff"'})


# Refuses a websocket for too many wrong tokens where the server cannot answer the
# handshake with a status (no websocket.http.response extension): 4000 + HTTP's 429.
CLOSE_TRY_LATER = 4029


def too_many_tries(wait_s: float) -> Response:
    """429 for a client past its limit of wrong tokens, whatever it sent this time."""
    retry = lockout.retry_after_s(wait_s)
    return JSONResponse({"ok": False, "error": f"too many wrong tokens from here: try again in {retry} s"},
                        status_code=429, headers={"Retry-After": str(retry)})


async def _deny(scope: Scope, receive: Receive, send: Send, response: Response, code: int, reason: str) -> None:
    """Refuse a websocket before accepting it: with `response` where the server can send one."""
    if "websocket.http.response" in scope.get("extensions", {}):
        await response(scope, receive, send)
    else:  # refused before it is accepted: the server answers 403
        await send({"type": "websocket.close", "code": code, "reason": reason})


class _WentAway(Exception):
    """The client disconnected before the end of its body."""


async def _chunks(receive: Receive) -> AsyncIterator[bytes]:
    """A request body's chunks as the server hands them over, for bodies.read_chunks."""
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise _WentAway
        yield message.get("body", b"")
        if not message.get("more_body", False):
            return


async def _csrf_problem(conn: HTTPConnection, receive: Receive, cookie: str) -> tuple[str | None, Receive]:
    """Why the request lacks CSRF proof (None when it has it), and the receive to pass on.

    The proof is the CSRF cookie echoed in the X-CSRF-Token header, or in the
    `csrf` field of a URL-encoded form; a form body is read here and replayed.
    """
    if not cookie:
        return "it carries no CSRF cookie", receive
    given = conn.headers.get(CSRF_HEADER)
    if given is None and conn.headers.get("content-type", "").split(";")[0].strip() == "application/x-www-form-urlencoded":
        length = conn.headers.get("content-length", "")
        if length.isdigit() and int(length) > MAX_FORM_BYTES:
            raise TooLarge(MAX_FORM_BYTES)  # refused before a byte is read
        try:
            body = await read_chunks(_chunks(receive), MAX_FORM_BYTES)
        except _WentAway:
            return "the client went away", receive
        try:
            given = parse_form(body).get(CSRF_FIELD, [None])[0]
        except ValueError:
            return "the form has too many fields", receive
        receive = _replay(body, receive)
    if given is None:
        return f"it sends no CSRF token (an {CSRF_HEADER} header or a {CSRF_FIELD} field)", receive
    if not hmac.compare_digest(given.encode(), cookie.encode()):
        return "its CSRF token does not match its CSRF cookie", receive
    return None, receive


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay

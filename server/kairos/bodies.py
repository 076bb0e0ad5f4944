"""Request bodies read up to a limit: no endpoint holds more than its limit, whatever a client sends.

Every endpoint that takes a body reads it with `read`, which refuses a
Content-Length over the limit before reading anything and otherwise stops at
the first chunk that takes the total past it (a chunked body names no length,
and a length can lie). The endpoint answers 413 in its own error shape, and
`CloseUnread` closes the connection behind that answer, so the client stops
sending and the server never takes in the rest.

Each endpoint's limit, and why it is that size, is here.
"""

from __future__ import annotations

import json
import logging
from typing import Any, AsyncIterator
from urllib.parse import parse_qs

from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .rules.bounds import MAX_DOCUMENT_BYTES

log = logging.getLogger("kairos.bodies")

# The login and logout forms: a token, a CSRF token and a `next` path; a few
# hundred bytes. 8 KiB leaves room for a long `next` and nothing else.
FORM_BYTES = 8 * 1024
# Fields in one of those forms: they have three.
FORM_FIELDS = 20
# The dashboard's JSON requests (nudge, pause): a rule id, or a chat message of
# at most 280 characters (12 bytes each at worst, as JSON-escaped surrogate pairs).
STAFF_JSON_BYTES = 4 * 1024
# Nesting in those requests: they are flat objects. Python's json parser fails
# with RecursionError past ~1000 levels, which must not become a 500.
STAFF_JSON_DEPTH = 8
# A rules document (PUT /admin/rules, the editor's check and apply): the bound
# a rules file has wherever it comes from (the demo's is 6 KiB).
RULES_BYTES = MAX_DOCUMENT_BYTES
# A beacon (POST /b) is one wire frame: the websocket's limit, settings.max_frame_bytes
# (wire.MAX_FRAME_BYTES, 16 KiB), applies to it, and the beacon endpoint passes it here.


class TooLarge(Exception):
    """A body over its endpoint's limit; nothing past the limit was read."""

    def __init__(self, limit_bytes: int) -> None:
        super().__init__(f"a body here is at most {limit_bytes} bytes")
        self.limit_bytes = limit_bytes


class BadLength(ValueError):
    """A Content-Length that is not a number."""


def declared_length(headers: Headers) -> int | None:
    """The Content-Length a request declares; None without one. Raises BadLength for a broken one."""
    raw = headers.get("content-length")
    if raw is None:
        return None
    if not raw.strip().isdigit():
        raise BadLength(f"Content-Length {raw[:40]!r} is not a number of bytes")
    return int(raw)


async def read_chunks(chunks: AsyncIterator[bytes], limit_bytes: int) -> bytes:
    """Join `chunks` into one body; raise TooLarge at the first chunk past `limit_bytes`, reading no further."""
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > limit_bytes:
            raise TooLarge(limit_bytes)
    return bytes(body)


async def read(request: Request, limit_bytes: int) -> bytes:
    """The request's body, at most `limit_bytes` of it.

    Raises TooLarge (a declared length over the limit is refused before any
    byte is read) or BadLength. A client that goes away raises Starlette's
    ClientDisconnect, as `request.body()` does.
    """
    length = declared_length(request.headers)
    if length is not None and length > limit_bytes:
        raise TooLarge(limit_bytes)
    return await read_chunks(request.stream(), limit_bytes)


def parse_form(body: bytes, max_fields: int = FORM_FIELDS) -> dict[str, list[str]]:
    """A URL-encoded form from bounded bytes. Raises ValueError past `max_fields` fields."""
    try:
        return parse_qs(body.decode("utf-8", "replace"), max_num_fields=max_fields)
    except ValueError:
        raise ValueError(f"a form here has at most {max_fields} fields") from None


def json_depth(text: str, stop_at: int) -> int:
    """How deep `text`'s brackets nest, counting no further than `stop_at` (strings skipped)."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest >= stop_at:
                    break
        elif ch in "]}":
            depth -= 1
    return deepest


def parse_json(body: bytes, max_depth: int = STAFF_JSON_DEPTH) -> Any:
    """A JSON document from bounded bytes. Raises ValueError with the reason: not JSON, or nested too deep."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("the body is not UTF-8 text") from None
    if json_depth(text, max_depth + 1) > max_depth:
        raise ValueError(f"the JSON nests deeper than {max_depth} levels")
    try:
        return json.loads(text)
    except RecursionError:  # the depth check makes this unreachable; kept so a deep document can never be a 500
        raise ValueError(f"the JSON nests deeper than {max_depth} levels") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"the body is not JSON ({exc.msg} at character {exc.pos})") from None


class CloseUnread:
    """Pure-ASGI middleware: an answer sent before its request's body was read to the end closes the connection.

    A keep-alive connection would otherwise wait for the next request, and
    uvicorn would read (and drop) the rest of the refused body first: a client
    stopped at 8 KiB could still make the server take in its 100 MB. Closing
    makes the client stop. Answers after a whole body, or to a request without
    one, keep the connection. A client that goes away before its body ends
    is logged in one line.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        unread = "transfer-encoding" in headers or headers.get("content-length", "0").strip() not in ("", "0")

        async def receive_tracked() -> Message:
            nonlocal unread
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                unread = False
            return message

        async def send_closing(message: Message) -> None:
            if message["type"] == "http.response.start" and unread:
                message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
            await send(message)

        try:
            await self.app(scope, receive_tracked, send_closing)
        except ClientDisconnect:
            # A body cut off mid-way (a tab closed during a beacon) is the client's
            # doing: one line, not a traceback; there is no one left to answer.
            log.info("client went away before the end of its request body: %s %s", scope["method"], scope["path"])

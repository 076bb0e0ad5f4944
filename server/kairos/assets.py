"""Built files sent as each request accepts them: `name.br`, `name.gz` or `name` itself.

The snippet's build writes the compressed siblings (client-js/build.mjs: brotli
11 and zopfli gzip), so a request costs a few stat calls and never a compression.
Its size budget is counted in compressed bytes; this is what makes that the
number a visitor downloads.
"""

from __future__ import annotations

import logging
import os
import re
import stat
from pathlib import Path
from typing import Collection

from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("kairos")

# Our order when a client weighs codings alike: the smallest body first.
PREFERENCE = ("br", "gzip", "identity")
SUFFIX = {"br": ".br", "gzip": ".gz"}
# A browser that sniffs may run a file served as text (or a stylesheet as a
# script): every built or static file says its type is the whole truth.
NOSNIFF = ("X-Content-Type-Options", "nosniff")
# RFC 9110 §12.4.2: at most three decimals, never above 1.
_QVALUE = re.compile(r"0(\.[0-9]{0,3})?|1(\.0{0,3})?")
# The lowest weight a client can give: a coding it names with any q > 0 beats an
# identity it does not name (and ties go to PREFERENCE, where identity is last).
_IMPLICIT_IDENTITY_Q = 0.001


def _weights(accept_encoding: str) -> dict[str, float]:
    """Each coding named in an Accept-Encoding value (lower case) and its q."""
    weights: dict[str, float] = {}
    for element in accept_encoding.split(","):
        coding, *params = element.split(";")
        coding = coding.strip().lower()
        if not coding:
            continue  # a list may hold empty elements (RFC 9110 §5.6.1)
        q: float | None = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                value = value.strip()
                q = float(value) if _QVALUE.fullmatch(value) else None
                break  # the weight is the one parameter a coding takes
        if q is None:
            continue  # a weight we cannot read: as if the coding were not named, rather than guess it acceptable
        if coding == "x-gzip":
            coding = "gzip"  # RFC 9110 §8.4.1.3
        # Named twice: the lower weight, so a refusal is never outweighed.
        weights[coding] = min(q, weights.get(coding, q))
    return weights


def choose_coding(accept_encoding: str | None, available: Collection[str]) -> str:
    """The content coding to send for an Accept-Encoding value: one of `available` or "identity".

    RFC 9110 §12.5.3: codings and `*` match case-insensitively, q=0 refuses,
    the highest q wins and ties go to PREFERENCE (br, gzip, identity). `*`
    weighs every coding not named, identity included. An absent header
    (None) or an empty one gets identity: the RFC lets a server send anything
    to a client that names nothing, but such clients (curl, scripts, old
    proxies) are the ones least likely to decode it.
    """
    if not accept_encoding or not accept_encoding.strip():
        return "identity"
    weights = _weights(accept_encoding)
    star = weights.get("*")
    best, best_q = "identity", 0.0
    for coding in PREFERENCE:
        if coding != "identity" and coding not in available:
            continue
        q = weights.get(coding, star)
        if q is None:
            q = _IMPLICIT_IDENTITY_Q if coding == "identity" else 0.0
        if q > best_q:
            best, best_q = coding, q
    # Nothing acceptable (say `identity;q=0` and no coding we hold): identity
    # anyway. RFC 9110 §12.1 lets a server disregard the header instead of
    # answering 406, and a 406 for a <script> tag only breaks the store's page.
    return best


def _etag(st: os.stat_result, coding: str) -> str:
    # The coding is part of the tag: a variant's bytes differ from the plain
    # file's, so a cache must never take one for the other.
    return f'"{st.st_mtime_ns:x}-{st.st_size:x}-{coding}"'


def _none_match(if_none_match: str | None, etag: str) -> bool:
    """Whether If-None-Match names this tag (weak comparison, RFC 9110 §13.1.2) or is `*`."""
    if if_none_match is None:
        return False
    if if_none_match.strip() == "*":
        return True
    return any(tag.strip().removeprefix("W/") == etag for tag in if_none_match.split(","))


class Precompressed:
    """A built file and its precompressed siblings (`k.js.br`, `k.js.gz`), sent as each request accepts."""

    def __init__(self, path: Path, media_type: str, cache_control: str) -> None:
        self.path = path
        self.media_type = media_type
        self.cache_control = cache_control
        # Stale siblings already reported, by (path, its mtime, the plain file's
        # mtime): one warning per stale file, not one per request.
        self._stale_reported: set[tuple[Path, int, int]] = set()

    def _fresh_siblings(self, plain: os.stat_result) -> dict[str, tuple[Path, os.stat_result]]:
        found: dict[str, tuple[Path, os.stat_result]] = {}
        for coding, suffix in SUFFIX.items():
            path = self.path.with_name(self.path.name + suffix)
            try:
                st = os.stat(path)
            except OSError:
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            # Older than the plain file: left by an earlier build, so it would
            # send visitors yesterday's snippet under today's ETag and headers.
            if st.st_mtime_ns < plain.st_mtime_ns:
                key = (path, st.st_mtime_ns, plain.st_mtime_ns)
                if key not in self._stale_reported:
                    self._stale_reported.add(key)
                    log.warning("%s is older than %s: it is not sent until a build writes it again",
                                path, self.path.name)
                continue
            found[coding] = (path, st)
        return found

    def response(self, headers: Headers) -> Response | None:
        """The answer to a GET or HEAD with these request headers; None when the plain file is missing.

        Every answer carries `Vary: Accept-Encoding`, so caches keep the
        variants apart, and an ETag of its own variant; a matching
        If-None-Match gets a 304.
        """
        try:
            plain = os.stat(self.path)
        except OSError:
            return None
        if not stat.S_ISREG(plain.st_mode):
            return None
        siblings = self._fresh_siblings(plain)
        # Repeated header lines are one comma-separated list (RFC 9110 §5.3).
        accept = headers.getlist("accept-encoding")
        coding = choose_coding(", ".join(accept) if accept else None, siblings)
        path, st = siblings.get(coding, (self.path, plain))
        sent = {"Cache-Control": self.cache_control, "Vary": "Accept-Encoding", "ETag": _etag(st, coding),
                NOSNIFF[0]: NOSNIFF[1]}
        # Starlette's FileResponse answers no conditional request itself, and
        # browsers revalidate the snippet every few minutes (Cache-Control).
        if _none_match(headers.get("if-none-match"), sent["ETag"]):
            return Response(status_code=304, headers=sent)
        if coding != "identity":
            sent["Content-Encoding"] = coding
        # The stat already made gives Content-Length and Last-Modified of the bytes sent.
        return FileResponse(path, media_type=self.media_type, headers=sent, stat_result=st)


class NoSniff:
    """Pure-ASGI wrapper for a static mount: every answer it gives carries `X-Content-Type-Options: nosniff`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_marked(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).setdefault(*NOSNIFF)
            await send(message)

        try:
            await self.app(scope, receive, send_marked)
        except HTTPException as exc:
            # StaticFiles raises its 404 (and 405) for the app's exception handler,
            # which is outside this wrapper: answer here, marked like the rest.
            headers = {**(exc.headers or {}), NOSNIFF[0]: NOSNIFF[1]}
            await PlainTextResponse(exc.detail, status_code=exc.status_code, headers=headers)(scope, receive, send)

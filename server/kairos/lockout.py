"""Wrong admin tokens per client address: one limit for every way the token is presented.

The login form, `Authorization: Bearer` on /api, /admin and /dashboard, and a
bearer on a staff websocket's handshake all count against one limit:
MAX_FAILURES wrong tokens from one client in FAILURE_WINDOW_S (the window
starts at the first of them), then every presentation of the token from that
client, right or wrong, is refused (429 with Retry-After) until the window ends.
A right token is never counted, so a script that always sends it is never held
back; nor does it clear the count, or a guesser behind the same NAT could wipe
theirs with every request the script makes.

A session cookie is not a guess at the token: one that does not verify is
refused (401) but not counted, since forging one means guessing a 256-bit key,
and an open dashboard tab left with a cookie that was revoked or expired would
otherwise lock its own office out of logging in again.

The count lives in the engine, so every process sharing a Redis sees it. The
client is named there (and nowhere else) by a keyed hash of its address, never
the address: the key is derived from the admin token, which every process of
one installation shares, so all of them name a client alike. An IPv6 client is
counted by its /64, the block one host is usually given whole.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math

from starlette.requests import HTTPConnection

# Ten wrong tokens in five minutes, as the login form has always allowed: room
# for typos, and about 3,000 guesses a day, hopeless against a generated token.
MAX_FAILURES = 10
FAILURE_WINDOW_S = 300


def limiter_key(token: str) -> bytes:
    """The key that names clients in the engine: from the admin token, so shared by every process."""
    return hmac.new(token.encode(), b"kairos staff limiter v1", hashlib.sha256).digest()


def client_address(conn: HTTPConnection) -> str:
    """The address the limit applies to: the peer uvicorn reports (a trusted proxy's
    X-Forwarded-For already applied), an IPv6 address widened to its /64."""
    host = conn.client.host if conn.client else ""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is None:
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip.ipv4_mapped or ip) if isinstance(ip, ipaddress.IPv6Address) else str(ip)


def client_name(key: bytes, address: str) -> str:
    """How the engine knows a client: HMAC-SHA256 of its address, 128 bits in hex."""
    return hmac.new(key, address.encode(), hashlib.sha256).hexdigest()[:32]


def retry_after_s(wait_s: float) -> int:
    """The Retry-After value for a wait: whole seconds, never 0."""
    return max(1, math.ceil(wait_s))

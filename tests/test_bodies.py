"""Request bodies on a running `kairos serve`: every endpoint that reads one stops at its limit and answers 413.

A body is read chunk by chunk and never held past its endpoint's limit; a
declared length over the limit is refused before a byte is read, and the
connection is closed behind the refusal so the client stops sending.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import AsyncIterator

import httpx
import psutil
import pytest

from conftest import DEMO_RULES, Server
from kairos import bodies, wire

CSRF = "csrf-token-of-this-test"
LIMITS = {
    "login": bodies.FORM_BYTES,
    "login (CSRF in the form)": bodies.FORM_BYTES,
    "nudge": bodies.STAFF_JSON_BYTES,
    "pause": bodies.STAFF_JSON_BYTES,
    "check": bodies.RULES_BYTES,
    "apply": bodies.RULES_BYTES,
    "admin rules": bodies.RULES_BYTES,
    "beacon": wire.MAX_FRAME_BYTES,
}
ENDPOINTS = ["nudge", "pause", "check", "apply", "admin rules", "beacon", "login (CSRF in the form)", "login"]


def request_of(server: Server, endpoint: str) -> tuple[str, str, dict[str, str]]:
    """Method, URL and headers a legitimate client of this endpoint sends (its credentials included)."""
    form = {"Content-Type": "application/x-www-form-urlencoded", "Cookie": f"kairos_csrf={CSRF}", "Origin": server.base}
    json_ = {"Content-Type": "application/json", **server.auth}
    yaml = {"Content-Type": "application/yaml", **server.auth}
    return {
        "login": ("POST", "/dashboard/login", {**form, "X-CSRF-Token": CSRF}),
        "login (CSRF in the form)": ("POST", "/dashboard/login", form),
        "nudge": ("POST", "/api/sessions/s_nobody/nudge", json_),
        "pause": ("POST", "/api/rules/exit-offer/pause", json_),
        "check": ("POST", "/api/rules/check", yaml),
        "apply": ("POST", "/api/rules/apply", yaml),
        "admin rules": ("PUT", "/admin/rules", yaml),
        "beacon": ("POST", "/b", {"Content-Type": "text/plain"}),
    }[endpoint]


def refusal_reason(endpoint: str, response: httpx.Response) -> str:
    """The reason a 413 gives, in the error shape its endpoint documents."""
    body = response.json()
    if endpoint == "beacon":
        assert body["error"] == "too_large"
        return body["msg"]
    assert body["ok"] is False
    return body["error"]


@pytest.fixture(scope="module")
def rules_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's rules in a file of the test's own: a body that got through apply would write it."""
    path = tmp_path_factory.mktemp("rules") / "rules.yaml"
    shutil.copy(DEMO_RULES, path)
    return path


@pytest.fixture(scope="module")
def server(redis_url: str, rules_copy: Path):
    s = Server("memory", redis_url, rules_copy)
    yield s
    s.stop()


# --- one byte over, and a declared length over ------------------------------------------------


@pytest.mark.parametrize("chunked", [False, True], ids=["with Content-Length", "chunked"])
@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_a_body_one_byte_over_its_limit_is_a_413_that_names_the_limit(server, endpoint, chunked):
    method, path, headers = request_of(server, endpoint)
    limit = LIMITS[endpoint]
    body = b"a" * (limit + 1)
    content = iter([body[:1000], body[1000:]]) if chunked else body
    r = httpx.request(method, server.base + path, content=content, headers=headers, timeout=10)
    assert r.status_code == 413, r.text
    assert f"at most {limit} bytes" in refusal_reason(endpoint, r)
    if not chunked:  # refused on its declared length, unread: the connection closes so the client stops sending
        assert r.headers["connection"] == "close"


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_a_body_at_its_limit_is_read(server, endpoint):
    method, path, headers = request_of(server, endpoint)
    r = httpx.request(method, server.base + path, content=b" " * LIMITS[endpoint], headers=headers, timeout=10)
    assert r.status_code not in (413, 500), r.text


async def _status_line_and_headers(server: Server, head: bytes) -> tuple[bytes, bytes]:
    """Send a request's head alone (no body byte) and read the answer until the server closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(head)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10)  # to EOF: the server closes the connection
    finally:
        writer.close()
    status, _, rest = answer.partition(b"\r\n")
    return status, rest.lower()


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_a_declared_length_over_the_limit_is_refused_before_any_byte_is_sent(server, endpoint):
    method, path, headers = request_of(server, endpoint)
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nContent-Length: {100 * 2**20}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    status, rest = await _status_line_and_headers(server, head.encode())
    assert status.startswith(b"HTTP/1.1 413"), status
    assert b"connection: close" in rest


# --- what a body may hold -------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ["nudge", "pause"])
def test_deeply_nested_json_is_a_400_with_a_reason_and_the_server_still_answers(server, endpoint):
    method, path, headers = request_of(server, endpoint)
    # 1,500 levels fit in the 4 KiB limit, and are past Python's json recursion (~1,000).
    deep = '{"a":' + "[" * 1500 + "]" * 1500 + "}"
    assert len(deep) <= bodies.STAFF_JSON_BYTES
    r = httpx.request(method, server.base + path, content=deep, headers=headers, timeout=10)
    assert r.status_code == 400, r.text
    assert "nests deeper than" in r.json()["error"]
    # 100,000 levels are 200 KB: refused by size before any of it is parsed.
    deeper = '{"a":' + "[" * 100_000 + "]" * 100_000 + "}"
    r = httpx.request(method, server.base + path, content=deeper, headers=headers, timeout=10)
    assert r.status_code == 413 and "at most" in r.json()["error"]
    assert httpx.get(f"{server.base}/healthz", timeout=5).status_code == 200
    # And the endpoint still does its work.
    r = httpx.post(f"{server.base}/api/rules/exit-offer/pause", json={"paused": False}, headers=server.auth, timeout=5)
    assert r.status_code == 200 and r.json()["paused"] is False


def test_json_that_is_not_json_is_a_400_that_says_where(server):
    r = httpx.post(f"{server.base}/api/rules/exit-offer/pause", content=b'{"paused": tru', timeout=5,
                   headers={"Content-Type": "application/json", **server.auth})
    assert r.status_code == 400 and "not JSON" in r.json()["error"]


def test_a_login_form_with_too_many_fields_is_a_400_not_a_fault(server):
    method, path, headers = request_of(server, "login")
    form = "&".join(f"f{i}=x" for i in range(bodies.FORM_FIELDS + 1))
    r = httpx.request(method, server.base + path, content=form, headers=headers, timeout=5)
    assert r.status_code == 400 and f"at most {bodies.FORM_FIELDS} fields" in r.json()["error"]


def test_json_depth_skips_brackets_inside_strings():
    assert bodies.json_depth('{"a": "[[[[{{{{", "b": [1, {"c": "\\"]]]"}]}', 100) == 3
    assert bodies.json_depth("[" * 50, 10) == 10  # counting stops at the bound
    with pytest.raises(ValueError, match="nests deeper than 8"):
        bodies.parse_json(b"[" * 9 + b"]" * 9)
    assert bodies.parse_json(b'{"paused": true}') == {"paused": True}


# --- 20 concurrent 100 MB bodies to each endpoint --------------------------------------------------

BODIES = 20
BODY_BYTES = 100 * 2**20
CHUNK = b"a" * 65536
# What the whole attack may add to the server's peak resident memory.
MAX_GROWTH_BYTES = 20 * 2**20


async def hundred_megabytes() -> AsyncIterator[bytes]:
    """100 MB of body, made as it is sent: the test never holds it."""
    for _ in range(BODY_BYTES // len(CHUNK)):
        yield CHUNK


async def _streamed(client: httpx.AsyncClient, server: Server, endpoint: str, declared: bool) -> str:
    method, path, headers = request_of(server, endpoint)
    if declared:
        headers = {**headers, "Content-Length": str(BODY_BYTES)}
    try:
        r = await client.request(method, server.base + path, content=hundred_megabytes(), headers=headers)
    except httpx.TransportError:
        return "reset"  # the server closed the connection behind its 413 while we were still sending
    return str(r.status_code)


async def _lying(server: Server, endpoint: str) -> str:
    """Declare 100 bytes, then send 100 MB: the rest can only be read as a broken next request."""
    method, path, headers = request_of(server, endpoint)
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nContent-Length: 100\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    # The declared 100 bytes log in (a wrong token would count against this client's limit).
    declared = f"csrf={CSRF}&token={server.admin_token}&pad=".ljust(100, "a").encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(head.encode() + declared)
        for _ in range(BODY_BYTES // len(CHUNK) - 1):
            writer.write(CHUNK)
            await writer.drain()
        answer = await asyncio.wait_for(reader.read(200), 30)
        return answer.split(b" ", 2)[1].decode() if answer else "reset"
    except (ConnectionError, asyncio.IncompleteReadError):
        return "reset"
    finally:
        writer.close()


async def _attack(server: Server, n: int) -> dict[str, set[str]]:
    """`n` concurrent 100 MB bodies to each endpoint, chunked, then declared, then with a lying length."""
    seen: dict[str, set[str]] = {}
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=n, max_keepalive_connections=0)) as c:
        for mode in ("chunked", "declared", "lying"):
            for endpoint in ENDPOINTS:
                if mode == "lying":
                    outcomes = await asyncio.gather(*(_lying(server, endpoint) for _ in range(n)))
                else:
                    outcomes = await asyncio.gather(*(_streamed(c, server, endpoint, mode == "declared")
                                                      for _ in range(n)))
                seen[f"{endpoint}, {mode}"] = set(outcomes)
    return seen


def _peak_rss(pid: int) -> int:
    """The process's peak resident memory since its last reset (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc: this test needs Linux")


def _reset_peak_rss(pid: int) -> None:
    # Writing 5 to clear_refs sets VmHWM back to the current RSS (Linux 4.0+).
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")


async def test_20_concurrent_100_mb_bodies_to_each_endpoint_grow_the_server_by_less_than_20_mb(serve, rules_copy):
    server = serve("memory", rules=rules_copy)
    proc = psutil.Process(server.proc.pid)
    await _attack(server, 2)  # a first round loads every code path the attack reaches
    refused = server.metric("kairos_refused_total", code="too_large")
    _reset_peak_rss(proc.pid)
    before = proc.memory_info().rss

    seen = await _attack(server, BODIES)

    peak, after = _peak_rss(proc.pid), proc.memory_info().rss
    print(f"server RSS: {before / 2**20:.1f} MB before, peak {peak / 2**20:.1f} MB during, {after / 2**20:.1f} MB after "
          f"{BODIES} x {len(ENDPOINTS)} endpoints x 3 kinds of 100 MB body")
    assert peak - before < MAX_GROWTH_BYTES, f"peak RSS grew by {(peak - before) / 2**20:.1f} MB"
    for what, outcomes in seen.items():
        if what.endswith("lying"):
            # Only the declared 100 bytes are the body: each endpoint answers them as it would.
            assert "500" not in outcomes, (what, outcomes)
        else:
            assert outcomes <= {"413", "reset"}, (what, outcomes)
    # The client mostly sees its connection reset, not the 413 sent before it: the
    # server's count of refused beacons shows each was answered as too large.
    assert server.metric("kairos_refused_total", code="too_large") == refused + 2 * BODIES
    assert httpx.get(f"{server.base}/healthz", timeout=5).status_code == 200
    r = httpx.post(f"{server.base}/api/rules/exit-offer/pause", json={"paused": True}, headers=server.auth, timeout=5)
    assert r.status_code == 200 and r.json()["paused"] is True

"""Changing the rules of a running server: the watched file, PUT /admin/rules, and `kairos check`.

Real `kairos serve` processes throughout (the promise is about the running
server), except for an app without an admin token, which `kairos serve` never
runs: that one runs in-process, with made-up client addresses.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import httpx
import msgpack
import pytest
from websockets.asyncio.client import connect

from conftest import DEMO_RULES, ROOT, STEADY_DEMO_RULES, Server
from kairos.rules import load_rules
from kairos.rules.describe import describe
from wsclient import Visitor, hello_frame

TEMPLATES = {"offer.html", "bar.html", "chat.html"}
POLL_S = "0.05"

V1 = """\
version: 1
page_types:
  product: /demo/products/*
rules:
  - id: first
    when: exit_intent
    if: {page_type: product}
    then: {show: offer, template: offer.html, params: {body: Welcome.}}
"""

# A second rule, appended to V1 (lines 9-12); the bad versions below spoil it.
SECOND = """\
  - id: second
    when: scroll
    if: {page_type: %s}
    then: {show: bar, template: %s, params: {message: Read on.}}
"""
V2 = V1 + SECOND % ("product", "bar.html")

# name: (document, line, reason) — the line and reason the refusal must name.
INVALID = {
    "unknown field": (V2 + "    colour: red\n", 13, "rules[1].colour: `colour` is not a rule setting"),
    "bad type": (V2 + "    priority: high\n", 13, "rules[1].priority: expected a whole number, got 'high'"),
    "unknown page type": (V1 + SECOND % ("produce", "bar.html"), 11, "rules[1].if.page_type: unknown page type 'produce' — did you mean `product`?"),
    "unknown template": (V1 + SECOND % ("product", "nope.html"), 12, "rules[1].then.template: unknown template 'nope.html'"),
    "broken yaml": (V1 + SECOND.replace("{page_type: %s}", "{page_type: %s") % ("product", "bar.html"), 11,
                    "not valid YAML: ':' inside `{…}` — put the value in quotes, or close the `{` with `}`"),
    "track out of bounds": (V2 + "track:\n  batch_ms: 500\n  rage_n: 50\n", 15,
                            "track.rage_n: expected 0 (off) or 2 to 20, got 50"),
}


# --- helpers -----------------------------------------------------------------------------


def rules_state(server: Server) -> dict:
    r = server.api("/admin/rules")
    r.raise_for_status()
    return r.json()


def ids(state: dict) -> list[str]:
    return [r["id"] for r in state["rules"]]


def rules_when(server: Server, check: Callable[[dict], bool], timeout_s: float = 10.0) -> dict:
    """GET /admin/rules until `check` holds; fails with the last state at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        state = rules_state(server)
        if check(state):
            return state
        if time.monotonic() > deadline:
            pytest.fail(f"the rules did not get there in {timeout_s} s: {state}")
        time.sleep(0.02)


def after_polls(server: Server, n: int = 4) -> dict:
    """The state once the watcher has looked at the file `n` more times."""
    start = rules_state(server)["watching"]["polls"]
    return rules_when(server, lambda s: s["watching"]["polls"] >= start + n)


def write(path: Path, text: str, atomic: bool = False) -> None:
    """Save like an editor: in place, or to a temporary file renamed over the old one."""
    if atomic:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    else:
        path.write_text(text)


def put(server: Server, body: bytes | str, headers: dict | None = None, **kw) -> httpx.Response:
    """PUT /admin/rules with the server's admin token, unless `headers` names another Authorization."""
    return httpx.put(f"{server.base}/admin/rules", content=body,
                     headers={"Content-Type": "application/yaml", **server.auth, **(headers or {})}, timeout=5, **kw)


def log_lines(server: Server, *needles: str) -> list[str]:
    return [line for line in server.output().splitlines() if all(n in line for n in needles)]


@pytest.fixture
def watched(serve, tmp_path, monkeypatch):
    """A server watching a rules file (V1) that the test edits; polled every 50 ms."""
    monkeypatch.setenv("KAIROS_RULES_POLL_S", POLL_S)
    path = tmp_path / "rules.yaml"
    path.write_text(V1)

    def start(text: str = V1, extra: list[str] | None = None) -> tuple[Server, Path]:
        path.write_text(text)
        return serve("memory", rules=path, extra=extra), path

    return start


# --- (a) the watched file ----------------------------------------------------------------


def test_a_valid_edit_is_put_in_force_without_a_restart(watched):
    server, path = watched()
    pid = server.proc.pid
    before = rules_state(server)
    assert (before["version"], ids(before), before["source"]) == (1, ["first"], str(path))
    assert before["watching"]["file"] == str(path)

    write(path, V2)
    state = rules_when(server, lambda s: s["version"] == 2)
    assert ids(state) == ["first", "second"]
    assert state["last_refusal"] is None
    assert log_lines(server, "INFO", f"rules: 2 loaded from {path} (version 2)")

    # Saved the way most editors save: a new file renamed over the old one.
    write(path, V1, atomic=True)
    state = rules_when(server, lambda s: s["version"] == 3)
    assert ids(state) == ["first"]
    assert server.proc.poll() is None and server.proc.pid == pid


def test_the_same_content_saved_again_is_not_a_reload(watched):
    server, path = watched()
    write(path, V1)
    write(path, V1, atomic=True)
    os.utime(path)
    state = after_polls(server)
    assert state["version"] == 1
    assert not log_lines(server, "(version 2)")


def test_a_file_missing_for_a_while_keeps_the_rules_and_is_reported_once(watched):
    server, path = watched()
    path.unlink()
    state = rules_when(server, lambda s: s["last_refusal"] is not None)
    assert "cannot read" in state["last_refusal"]["message"]
    state = after_polls(server, 6)
    assert (state["version"], ids(state)) == (1, ["first"])
    assert len(log_lines(server, "WARNING", "cannot read")) == 1

    path.write_text(V1)  # back as it was: nothing to reload
    assert after_polls(server)["version"] == 1
    write(path, V2)
    assert ids(rules_when(server, lambda s: s["version"] == 2)) == ["first", "second"]


# --- (b) invalid edits are refused --------------------------------------------------------


@pytest.mark.parametrize("case", list(INVALID))
def test_an_invalid_edit_is_refused_and_the_old_rules_stay(watched, case):
    text, line, reason = INVALID[case]
    server, path = watched()
    # Renamed into place: an in-place write caught empty by two polls on a busy machine
    # would be refused for being empty, not for what this case tests.
    write(path, text, atomic=True)
    state = rules_when(server, lambda s: s["last_refusal"] is not None)
    assert (state["version"], ids(state), state["source"]) == (1, ["first"], str(path))
    message = state["last_refusal"]["message"]
    assert f"{path}:{line}: " in message and reason in message, message
    assert state["last_refusal"]["at_ms"] > 0
    warnings = log_lines(server, "WARNING", f"{path}:{line}: ", reason)
    assert len(warnings) == 1, server.output()

    # Refused once, not at every poll.
    assert after_polls(server)["version"] == 1
    assert len(log_lines(server, "WARNING", f"{path}:{line}: ", reason)) == 1

    write(path, V2)
    state = rules_when(server, lambda s: s["version"] == 2)
    assert ids(state) == ["first", "second"]


# --- (c) PUT /admin/rules -------------------------------------------------------------------


def test_put_puts_a_valid_document_in_force(serve):
    server = serve("memory")
    assert ids(rules_state(server)) == ["exit-offer", "cart-exit-shipping", "deep-scroll-proof"]
    r = put(server, V2)
    assert r.status_code == 200, r.text
    assert r.json() == {"ok": True, "version": 2, "rules": ["first", "second"]}
    state = rules_state(server)
    assert (state["version"], state["source"], ids(state)) == (2, "admin", ["first", "second"])
    assert state["rules"][0]["summary"] == (
        "When a visitor shows exit intent on a product page, show offer 'offer.html' (center), "
        "at most once per session, priority 0."
    )
    r = put(server, V1, headers={"Content-Type": "text/plain; charset=utf-8"})
    assert (r.status_code, r.json()["version"]) == (200, 3)


@pytest.mark.parametrize("case", list(INVALID))
def test_put_refuses_an_invalid_document_whole(serve, case):
    text, line, reason = INVALID[case]
    server = serve("memory")
    r = put(server, text)
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["ok"] is False
    assert any(p["line"] == line and reason in f"{p['path']}: {p['reason']}" for p in body["problems"]), body
    assert f"admin:{line}: " in body["message"] and reason in body["message"]
    state = rules_state(server)
    assert (state["version"], state["source"]) == (1, str(STEADY_DEMO_RULES))
    assert ids(state) == ["exit-offer", "cart-exit-shipping", "deep-scroll-proof"]
    assert state["last_refusal"]["message"] == body["message"]


def test_put_refuses_what_is_too_big_or_not_yaml(serve):
    server = serve("memory")
    big = V1 + "#" * (256 * 1024) + "\n"
    assert put(server, big).status_code == 413
    # Without a Content-Length (chunked), the limit holds while reading.
    assert put(server, iter([big[i:i + 65536].encode() for i in range(0, len(big), 65536)])).status_code == 413
    assert put(server, V1, headers={"Content-Type": "application/json"}).status_code == 415
    assert put(server, b"\xff\xfe not text").status_code == 422
    assert put(server, "rules: " + "[" * 100_000).status_code == 422  # nested beyond the parser's depth
    state = rules_state(server)
    assert (state["version"], ids(state)) == (1, ["exit-offer", "cart-exit-shipping", "deep-scroll-proof"])
    # Just under the limit is fine.
    assert put(server, V1 + "#" * (256 * 1024 - len(V1) - 2) + "\n").status_code == 200


def test_the_admin_version_stays_until_the_file_changes(watched):
    server, path = watched()
    assert put(server, V2).status_code == 200
    state = after_polls(server)
    assert (state["version"], state["source"], ids(state)) == (2, "admin", ["first", "second"])
    write(path, V1.replace("id: first", "id: from-file"))
    state = rules_when(server, lambda s: s["version"] == 3)
    assert (state["source"], ids(state)) == (str(path), ["from-file"])


# --- (d) who may use /admin --------------------------------------------------------------


def test_admin_needs_the_admin_token(serve):
    server = serve("memory", extra=["--admin-token", "s3cret-token"])
    assert httpx.put(f"{server.base}/admin/rules", content=V1, headers={"Content-Type": "application/yaml"},
                     timeout=5).status_code == 401
    assert put(server, V1, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert put(server, V1, headers={"Authorization": "Basic s3cret-token"}).status_code == 401
    assert httpx.get(f"{server.base}/admin/rules", timeout=5).status_code == 401
    assert rules_state(server)["version"] == 1
    r = put(server, V1, headers={"Authorization": "Bearer s3cret-token"})
    assert (r.status_code, r.json()["version"]) == (200, 2)


def test_loopback_clients_need_the_token_too(serve):
    """No address is trusted: the test client is on 127.0.0.1 and is refused without the token."""
    server = serve("memory")
    r = httpx.get(f"{server.base}/admin/rules", timeout=5)
    assert (r.status_code, r.headers["www-authenticate"]) == (401, 'Bearer realm="kairos staff"')
    assert httpx.put(f"{server.base}/admin/rules", content=V1, headers={"Content-Type": "application/yaml"},
                     timeout=5).status_code == 401
    assert rules_state(server)["version"] == 1


async def test_without_a_configured_token_nobody_may_use_admin(tmp_path):
    from kairos.app import create_app
    from kairos.settings import Settings

    app = create_app(Settings(rules=DEMO_RULES, admin_token=None, demo=False))
    for host in ("127.0.0.1", "::1", "203.0.113.9"):
        transport = httpx.ASGITransport(app=app, client=(host, 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://kairos") as c:
            assert (host, (await c.get("/admin/rules")).status_code) == (host, 401)
            r = await c.put("/admin/rules", content=V1, headers={"Content-Type": "application/yaml"})
            assert (host, r.status_code) == (host, 401)
            r = await c.get("/admin/rules", headers={"Authorization": "Bearer "})
            assert (host, r.status_code) == (host, 401)


# --- (e) kairos check ----------------------------------------------------------------------


def check(path: Path | str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kairos", "check", str(path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def test_check_lists_each_rule_in_plain_words():
    out = check("examples/demo.yaml")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "examples/demo.yaml: 3 rules OK"
    ruleset = load_rules(DEMO_RULES, TEMPLATES)
    rule_lines = [ln for ln in lines[1:] if not ln.startswith(("  tracking: ", "  score "))]
    assert [ln.split(":")[0] for ln in lines if ln.startswith("  score ")] == ["  score purchase_intent", "  score exit_risk"]
    assert "  score exit_risk: bias -2, half-life 2 min; exit_intent +1.5, idle +0.8" in lines[2] + lines[3]
    assert rule_lines == [f"  {r.id}: {describe(r, ruleset.page_types)}" for r in ruleset.rules]
    assert rule_lines[0] == ("  exit-offer: When a visitor shows exit intent on a product page, show offer 'offer.html' "
                             "(center), at most once per session, priority 10.")


@pytest.mark.parametrize("case", list(INVALID))
def test_check_names_file_line_and_reason_of_each_problem(tmp_path, case):
    text, line, reason = INVALID[case]
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    out = check(path)
    assert out.returncode == 1
    assert "OK" not in out.stdout
    assert any(ln.startswith(f"{path}:{line}: ") and reason in ln for ln in out.stderr.splitlines()), out.stderr


def test_check_shows_the_tracking_settings_the_file_sets(tmp_path):
    path = tmp_path / "track.yaml"
    path.write_text(V1 + "track:\n  rage_n: 5\n  copy: true\n  exit_back: false\n")
    out = check(path)
    assert out.returncode == 0, out.stderr
    assert "  tracking: exit_back off, rage_n 5, copy on" in out.stdout.splitlines()


def test_check_refuses_a_missing_file(tmp_path):
    out = check(tmp_path / "nope.yaml")
    assert out.returncode == 1 and "cannot read" in out.stderr


# --- (f) a running session across a reload ------------------------------------------------

QUIET = """\
version: 1
page_types:
  product: /demo/products/*
rules:
  - id: scroll-bar
    when: scroll
    then: {show: bar, template: bar.html, params: {message: Read on.}}
"""
LOUD = QUIET + """\
  - id: exit-now
    when: exit_intent
    if: {page_type: product}
    then: {show: offer, template: offer.html, params: {headline: Wait, body: Take 10% off., code: NOW10}}
"""


@pytest.mark.parametrize("engine", ["memory", "redis"])
async def test_a_session_keeps_going_across_a_reload_and_gets_the_new_rule(serve, tmp_path, monkeypatch, engine):
    monkeypatch.setenv("KAIROS_RULES_POLL_S", POLL_S)
    path = tmp_path / "rules.yaml"
    path.write_text(QUIET)
    server = serve(engine, rules=path)
    v = await Visitor.arrive(server.ws_url)

    await v.events({"e": "exit_intent"})
    state = await asyncio.to_thread(server.session_when, v.sid, lambda s: s["exit_intents"] == 1)
    assert state["exit_intents"] == 1
    with pytest.raises(asyncio.TimeoutError):  # nothing shows on exit intent yet
        await v.recv(timeout=0.3)

    write(path, LOUD)
    await asyncio.to_thread(rules_when, server, lambda s: s["version"] == 2)

    await v.events({"e": "exit_intent"})
    show = await v.expect("show")
    assert (show["rule"], show["kind"]) == ("exit-now", "offer")
    assert "NOW10" in show["html"]
    state = await asyncio.to_thread(server.session_when, v.sid, lambda s: s["exit_intents"] == 2)
    assert state["exit_intents"] == 2 and state["pages"] == 1
    await v.leave()


# --- (g) tracking settings in the welcome ----------------------------------------------------


async def welcome_of(server: Server) -> dict:
    async with connect(server.ws_url, compression=None) as ws:
        await ws.send(msgpack.packb(hello_frame("v_tracking01")))
        return msgpack.unpackb(await asyncio.wait_for(ws.recv(), 5))


async def test_the_welcome_carries_the_tracking_settings_of_the_rules_in_force(watched):
    server, path = watched(V1 + "track:\n  rage_n: 5\n  copy: true\n  idle_ms: 0\n")
    track = (await welcome_of(server))["track"]
    assert (track["rage_n"], track["copy"], track["idle_ms"]) == (5, True, 0)
    assert (track["batch_ms"], track["exit_back"], track["spa"]) == (1000, False, True), "the rest are the defaults"
    assert set(track) == {"batch_ms", "dwell_ms", "scroll_step", "idle_ms", "exit", "exit_min_ms", "exit_gap_ms",
                          "exit_scroll", "exit_back", "exit_hidden", "clicks", "click_text", "rage_n", "rage_ms",
                          "hes_ms", "copy", "spa"}

    write(path, V1 + "track:\n  rage_n: 0\n  hes_ms: 20000\n")
    await asyncio.to_thread(rules_when, server, lambda s: s["version"] == 2)
    track = (await welcome_of(server))["track"]
    assert (track["rage_n"], track["hes_ms"], track["copy"], track["idle_ms"]) == (0, 20000, False, 30000)

    write(path, V1 + "track:\n  rage_n: 50\n")  # refused: the settings in force stay
    await asyncio.to_thread(rules_when, server, lambda s: s["last_refusal"] is not None)
    assert (await welcome_of(server))["track"]["rage_n"] == 0


async def test_the_idle_threshold_is_scaled_but_off_stays_off(serve, tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text(V1 + "track:\n  idle_ms: 20000\n")
    server = serve("memory", rules=path, extra=["--delay-scale", "0.1"])
    assert (await welcome_of(server))["track"]["idle_ms"] == 2000
    assert put(server, V1 + "track:\n  idle_ms: 0\n").status_code == 200
    assert (await welcome_of(server))["track"]["idle_ms"] == 0

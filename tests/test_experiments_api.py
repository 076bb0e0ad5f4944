"""The experiments API: results for staff, ship and stop through the editor's validated path, the
session's arm, and `kairos experiments`.

The app runs in this process (httpx's ASGI transport) where a test needs the
runtime itself — its engine's counters, the rules in force; visitors, the
session API and the command line use a real `kairos serve`.
"""

from __future__ import annotations

import asyncio
import calendar
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from conftest import ROOT
from kairos.app import create_app
from kairos.dashboard import visitor_arms
from kairos.engine.base import ARM_STATS_DAY_MS, arm_day
from kairos.experiments.assign import PROGRAM, arm_at, arm_of, held_from_all, point, salt_from
from kairos.experiments.edit import end_experiment
from kairos.experiments.report import reports, table
from kairos.reload import RulesWatcher
from kairos.rules import parse_rules
from kairos.runtime import Runtime, now_ms
from kairos.settings import Settings
from kairos import rules_history
from wsclient import Visitor

TOKEN = "experiments-test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ORIGIN = "http://testserver"
RULES = """\
version: 1
holdout: 5%   # the whole program, measured
rules:
  - id: exit-offer
    when: exit_intent
    then:
      show: offer
      template: offer.html
      params: {headline: "10% off", body: Take 10% off today., code: SAVE10, cta: Keep shopping}
    limit: {per_session: 1}
    # Which words keep them? Half read each; one in ten sees nothing.
    experiment:
      variants:
        a: {}
        b: {then: {params: {headline: "Free shipping"}}}
      holdout: 10%
"""


def in_force(rt: Runtime, vid: str) -> str:
    """The headline the rule in force shows visitor `vid` (none: held out)."""
    rule = rt.rules.rule("exit-offer")
    arm = arm_of(rule, vid, rt.arm_salt)
    return "" if arm == "holdout" else rule.then_for(arm).params["headline"]


@pytest.fixture
async def kairos(request, tmp_path):
    """The app in this process on a rules file, with the runtime and a scripted staff client (bearer)."""
    engine = getattr(request, "param", "memory")
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    redis_url = request.getfixturevalue("clean_redis") if engine == "redis" else "redis://unused"
    settings = Settings(rules=rules, engine=engine, redis_url=redis_url, admin_token=TOKEN, demo=False,
                        state_dir=tmp_path / "state", rules_poll_s=0)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ORIGIN, headers=AUTH) as c:
            yield SimpleNamespace(app=app, rt=app.state.kairos, client=c, rules=rules, state=tmp_path / "state")


def history(k) -> list[dict]:
    return rules_history.recent(k.state)


# --- staff only --------------------------------------------------------------------------------


async def test_the_experiments_page_and_api_are_staff_only_and_a_login_needs_the_csrf_proof(kairos):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=kairos.app), base_url=ORIGIN) as anyone:
        assert (await anyone.get("/api/experiments")).status_code == 401
        assert (await anyone.get("/dashboard/experiments")).status_code == 303
        for path in ("/api/experiments/exit-offer/ship", "/api/experiments/exit-offer/stop"):
            assert (await anyone.post(path, json={"arm": "b"}, headers={"Origin": ORIGIN})).status_code == 401
        # Logged in, a change still needs the CSRF cookie echoed.
        await anyone.get("/dashboard/login")
        r = await anyone.post("/dashboard/login", data={"token": TOKEN, "csrf": anyone.cookies["kairos_csrf"]},
                              headers={"Origin": ORIGIN})
        assert r.status_code == 303
        r = await anyone.post("/api/experiments/exit-offer/ship", json={"arm": "b"}, headers={"Origin": ORIGIN})
        assert r.status_code == 403
    assert kairos.rules.read_text() == RULES and kairos.rt.rules_version == 1 and history(kairos) == []


# --- results -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kairos", ["memory", "redis"], indirect=True)
async def test_the_results_are_the_engines_day_counters_read_as_reports(kairos):
    rt, now = kairos.rt, now_ms()
    days = [arm_day(now) - i * ARM_STATS_DAY_MS for i in (2, 1, 0)]
    for day in days:
        for arm, exposed, converted in (("a", 450, 20), ("b", 450, 32), ("holdout", 100, 3)):
            rt.engine.count_arm(day + 1000, "exit-offer", arm, "exposed", exposed)
            rt.engine.count_arm(day + 1000, "exit-offer", arm, "converted", converted)
            rt.engine.count_arm(day + 1000, "exit-offer", arm, "revenue", converted * 5990)
        rt.engine.count_arm(day + 1000, "exit-offer", "b", "shown", 450)
        rt.engine.count_arm(day + 1000, "exit-offer", "b", "clicked", 45)
        rt.engine.count_arm(day + 1000, PROGRAM, "nudged", "exposed", 950)
        rt.engine.count_arm(day + 1000, PROGRAM, "holdout", "exposed", 50)
    r = await kairos.client.get("/api/experiments")
    assert r.status_code == 200
    got = r.json()["experiments"]
    assert [x["id"] for x in got] == [PROGRAM, "exit-offer"]
    x = got[1]
    assert (x["rule"], x["running"], x["control"], x["srm"]["mismatch"]) == ("exit-offer", True, "holdout", False)
    arms = {a["name"]: a for a in x["arms"]}
    assert {n: (a["exposed"], a["converted"]) for n, a in arms.items()} == {
        "a": (1350, 60), "b": (1350, 96), "holdout": (300, 9)}
    assert arms["b"]["click_rate"] == pytest.approx(0.1) and arms["b"]["revenue_per_visitor"] == pytest.approx(96 * 59.9 / 1350)
    assert [c["arm"] for c in x["comparisons"]] == ["a", "b"]
    assert [h["day"] for h in x["comparisons"][1]["history"]] == days
    assert x["comparisons"][1]["verdict"]  # in words: experiments.stats says which
    # The same as the pure report of what the engine holds.
    mine = reports(rt.rules, await rt.engine.arm_stats(now - 400 * 86_400_000, now_ms()), now_ms())
    assert [m["arms"] for m in mine] == [g["arms"] for g in got]


# --- ship and stop -------------------------------------------------------------------------------


async def test_shipping_a_variant_rewrites_the_rules_puts_them_in_force_everywhere_and_says_so_in_the_history(kairos):
    rt = kairos.rt
    rt.engine.count_arm(now_ms(), "exit-offer", "b", "exposed", 7)
    vids = [f"v{i}" for i in range(200)]
    assert {in_force(rt, v) for v in vids} == {"10% off", "Free shipping", ""}
    # Another process watching the same file.
    other = Runtime(Settings(rules=kairos.rules, admin_token=TOKEN, demo=False, state_dir=kairos.state))
    watcher = RulesWatcher(other, kairos.rules, 1.0, other.rules_file_seen)

    r = await kairos.client.post("/api/experiments/exit-offer/ship", json={"arm": "b"})
    assert (r.status_code, r.json()["ok"], r.json()["version"]) == (200, True, 2), r.text
    rule = rt.rules.rule("exit-offer")
    ended = rule.experiment.ended
    assert (rule.experiment.running, rule.experiment.shipped) == (False, "b")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\dZ", ended)
    assert abs(calendar.timegm(time.strptime(ended, "%Y-%m-%dT%H:%MZ")) - time.time()) < 120
    assert kairos.rules.read_text() == end_experiment(RULES, "exit-offer", "b", ended)
    assert "# Which words keep them?" in kairos.rules.read_text()
    # Everyone who reaches the moment now sees b, the holdout included.
    assert {in_force(rt, v) for v in vids} == {"Free shipping"}
    [entry] = history(kairos)
    assert (entry["what"], entry["version"], entry["via"]) == ("experiment exit-offer: shipped b", 2, "dashboard")
    assert (await kairos.client.get("/api/rules/history")).json()["history"] == [entry]
    # The results stay readable, marked ended.
    x = (await kairos.client.get("/api/experiments")).json()["experiments"][1]
    assert (x["running"], x["ended"], x["shipped"]) == (False, ended, "b")
    assert {a["name"]: a["exposed"] for a in x["arms"]}["b"] == 7
    # The other process reads the file at its next polls (once to see it change, once to see it whole).
    await watcher.poll()
    await watcher.poll()
    assert other.rules.rule("exit-offer").experiment.shipped == "b"


async def test_stopping_shows_the_rule_as_written_to_everyone(kairos):
    r = await kairos.client.post("/api/experiments/exit-offer/stop")
    assert r.status_code == 200, r.text
    x = kairos.rt.rules.rule("exit-offer").experiment
    assert (x.running, x.shipped) == (False, None)
    assert "shipped" not in kairos.rules.read_text() and f"      ended: {x.ended}\n" in kairos.rules.read_text()
    assert {in_force(kairos.rt, f"v{i}") for i in range(200)} == {"10% off"}
    assert [h["what"] for h in history(kairos)] == ["experiment exit-offer: stopped"]


async def test_the_programs_holdout_can_be_stopped_but_not_shipped(kairos):
    r = await kairos.client.post("/api/experiments/*/ship", json={"arm": "nudged"})
    assert r.status_code == 400 and "nothing to ship" in r.json()["error"]
    r = await kairos.client.post("/api/experiments/*/stop")
    assert r.status_code == 200, r.text
    assert kairos.rt.rules.holdout == 0
    text = kairos.rules.read_text()
    assert "holdout: 0%   # the whole program, measured" in text and "the program's holdout was 5%, stopped" in text
    assert not any(held_from_all(kairos.rt.rules.holdout, f"v{i}", kairos.rt.arm_salt) for i in range(500))
    assert [x["id"] for x in (await kairos.client.get("/api/experiments")).json()["experiments"]] == ["exit-offer"]
    assert [h["what"] for h in history(kairos)] == ["experiment *: stopped"]
    r = await kairos.client.post("/api/experiments/*/stop")
    assert r.status_code == 409 and "nothing to stop" in r.json()["error"]


@pytest.mark.parametrize("path, body, status, says", [
    ("/api/experiments/exit-offer/ship", b"not json", 400, "JSON object"),
    ("/api/experiments/exit-offer/ship", b'{"arm": 3}', 400, "which variant to ship"),
    ("/api/experiments/exit-offer/ship", b"{}", 400, "which variant to ship"),
    ("/api/experiments/exit-offer/ship", b'{"arm": "c"}', 400, "it has no variant 'c'; its variants are a, b"),
    ("/api/experiments/exit-offer/ship", b'{"arm": "holdout"}', 400, "the holdout is shown nothing"),
    ("/api/experiments/no-such/ship", b'{"arm": "b"}', 404, "no experiment 'no-such'"),
    ("/api/experiments/no-such/stop", b"", 404, "no experiment 'no-such'"),
])
async def test_a_bad_ship_or_stop_is_refused_with_its_reason_and_changes_nothing(kairos, path, body, status, says):
    r = await kairos.client.post(path, content=body, headers={"Content-Type": "application/json"})
    assert (r.status_code, r.json()["ok"]) == (status, False) and says in r.json()["error"], r.text
    assert kairos.rules.read_text() == RULES and kairos.rt.rules_version == 1 and history(kairos) == []


async def test_an_experiment_with_its_own_id_is_shipped_by_that_id(kairos):
    renamed = RULES.replace("    experiment:\n", "    experiment:\n      id: exit-words-2\n")
    assert (await kairos.client.post("/api/rules/apply", content=renamed)).status_code == 200
    r = await kairos.client.post("/api/experiments/exit-offer/ship", json={"arm": "b"})
    assert r.status_code == 404 and "no experiment 'exit-offer'" in r.json()["error"]
    r = await kairos.client.post("/api/experiments/exit-words-2/ship", json={"arm": "b"})
    assert r.status_code == 200, r.text
    assert kairos.rt.rules.rule("exit-offer").experiment.shipped == "b"
    assert [h["what"] for h in history(kairos)] == ["experiment exit-words-2: shipped b", "edited in the rules editor"]


async def test_an_ended_experiment_cannot_be_ended_again(kairos):
    assert (await kairos.client.post("/api/experiments/exit-offer/ship", json={"arm": "a"})).status_code == 200
    after = kairos.rules.read_text()
    for path, body in (("ship", {"arm": "b"}), ("stop", {})):
        r = await kairos.client.post(f"/api/experiments/exit-offer/{path}", json=body)
        assert r.status_code == 409 and "has already ended" in r.json()["error"] and "shipped a" in r.json()["error"]
    assert kairos.rules.read_text() == after and kairos.rt.rules_version == 2


async def test_a_rules_file_that_no_longer_validates_is_refused_whole(kairos):
    broken = RULES.replace("per_session: 1", "per_session: lots")
    kairos.rules.write_text(broken)  # saved by hand, not yet reloaded (the watcher is off here)
    r = await kairos.client.post("/api/experiments/exit-offer/ship", json={"arm": "b"})
    assert r.status_code == 422 and r.json()["problems"][0]["path"].endswith("per_session"), r.text
    assert kairos.rules.read_text() == broken and kairos.rt.rules.rule("exit-offer").experiment.running
    # And a file whose rule has gone: the edit itself is refused.
    kairos.rules.write_text(RULES.replace("id: exit-offer", "id: exit-offer-2"))
    r = await kairos.client.post("/api/experiments/exit-offer/stop")
    assert r.status_code == 409 and "no rule 'exit-offer' in the rules document" in r.json()["error"]
    assert history(kairos) == []


async def test_without_a_rules_file_ship_edits_the_document_kept_in_memory(tmp_path):
    app = create_app(Settings(admin_token=TOKEN, demo=False, state_dir=tmp_path))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ORIGIN, headers=AUTH) as c:
            assert (await c.get("/api/experiments")).json() == {"experiments": []}
            r = await c.put("/admin/rules", content=RULES, headers={"Content-Type": "application/yaml"})
            assert r.status_code == 200
            r = await c.post("/api/experiments/exit-offer/ship", json={"arm": "b"})
            assert r.status_code == 200, r.text
            rt = app.state.kairos
            assert rt.rules.rule("exit-offer").experiment.shipped == "b" and "shipped: b" in rt.rules_text
            assert "shipped: b" in (await c.get("/api/rules")).json()["text"]
    assert [h["what"] for h in rules_history.recent(tmp_path)] == [
        "experiment exit-offer: shipped b", "replaced through /admin/rules"]


async def test_an_apply_from_the_rules_editor_is_in_the_history_too(kairos):
    r = await kairos.client.post("/api/rules/apply", content=RULES.replace("10% off", "15% off"))
    assert r.status_code == 200
    assert [(h["what"], h["version"]) for h in history(kairos)] == [("edited in the rules editor", 2)]
    assert "15% off" in kairos.rules.read_text()


def test_the_history_keeps_its_latest_lines(tmp_path, monkeypatch):
    monkeypatch.setattr(rules_history, "KEEP_LINES", 3)
    for n in range(1, 9):
        rules_history.record(tmp_path, f"change {n}", "text", n, "rules.yaml", "dashboard", "node")
    # Past twice KEEP_LINES (at the 7th) the file keeps the last 3; the 8th is appended to them.
    assert [h["what"] for h in rules_history.recent(tmp_path)] == ["change 8", "change 7", "change 6", "change 5"]
    assert len(rules_history.path(tmp_path).read_text().splitlines()) == 4


# --- the session's arm --------------------------------------------------------------------------


def test_a_visitors_arm_is_the_recorded_one_else_the_one_they_would_be_drawn_into():
    rules, salt = parse_rules(RULES, "rules.yaml"), b"an installation's salt"
    vids = [f"visitor-{i}" for i in range(2000)]
    vid = next(v for v in vids if not held_from_all(0.05, v, salt))
    drawn = arm_of(rules.rule("exit-offer"), vid, salt)
    assert visitor_arms(rules, vid, salt, {}) == [
        {"id": "*", "rule": "", "arm": "nudged", "exposed": False},
        {"id": "exit-offer", "rule": "exit-offer", "arm": drawn, "exposed": False}]
    kept = "a" if drawn != "a" else "b"  # weights changed since: the record wins
    assert visitor_arms(rules, vid, salt, {"*": "nudged", "exit-offer": kept}) == [
        {"id": "*", "rule": "", "arm": "nudged", "exposed": True},
        {"id": "exit-offer", "rule": "exit-offer", "arm": kept, "exposed": True}]
    held = next(v for v in vids if held_from_all(0.05, v, salt))
    program, rule = visitor_arms(rules, held, salt, {})
    assert program["arm"] == "holdout" and rule["held_by_program"] is True
    ended = parse_rules(end_experiment(RULES, "exit-offer", "b", "2026-12-06T11:30Z"), "rules.yaml")
    assert [x["id"] for x in visitor_arms(ended, vid, salt, {})] == ["*"], "an ended experiment assigns no one"


# --- against a running server: visitors, the session's arm, the command line ----------------------


def salt_of(state_dir: Path) -> bytes:
    """The running server's assignment salt: from the identify secret `kairos serve` keeps there."""
    return salt_from((state_dir / "identify-secret").read_text().strip().encode())


def started(serve, engine: str, tmp_path: Path):
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    state = tmp_path / "state"
    server = serve(engine, rules=rules, extra=["--state-dir", str(state), "--no-demo"])
    return server, rules, state


def visitor_in(salt: bytes, arm: str) -> str:
    """A visitor id that the program nudges and exit-offer's experiment puts in `arm`."""
    for i in range(10_000):
        vid = f"visitor-{arm}-{i}"
        if point(salt, PROGRAM, vid) >= 0.05 and arm_at((("a", 0.45), ("b", 0.45), ("holdout", 0.1)),
                                                        point(salt, "exit-offer", vid)) == arm:
            return vid
    raise AssertionError(f"no visitor in {arm}")


@pytest.mark.parametrize("engine", ["memory", "redis"])
async def test_the_session_api_says_which_arm_the_visitor_is_in_before_and_after_the_moment(serve, tmp_path, engine):
    server, _, state = started(serve, engine, tmp_path)
    salt = salt_of(state)
    held, treated = visitor_in(salt, "holdout"), visitor_in(salt, "b")
    v = await Visitor.arrive(server.ws_url, vid=held)
    s = server.session(v.sid)
    assert s["experiments"] == [{"id": "*", "rule": "", "arm": "nudged", "exposed": False},
                                {"id": "exit-offer", "rule": "exit-offer", "arm": "holdout", "exposed": False}]
    await v.events({"e": "exit_intent", "how": "top"})
    s = server.session_when(v.sid, lambda s: any(e["kind"] == "held" for e in s["log"]))
    assert [x["exposed"] for x in s["experiments"]] == [True, True]
    held_line = next(e for e in s["log"] if e["kind"] == "held")
    assert (held_line["rule"], held_line["arm"], held_line["experiment"]) == ("exit-offer", "holdout", "exit-offer")
    with pytest.raises(asyncio.TimeoutError):
        await v.recv(timeout=0.3)  # held out: nothing reaches the page
    await v.leave()

    w = await Visitor.arrive(server.ws_url, vid=treated)
    await w.events({"e": "exit_intent", "how": "top"})
    assert "Free shipping" in (await w.expect("show"))["html"]
    s = server.session_when(w.sid, lambda s: any(e["kind"] == "show" for e in s["log"]))
    assert s["experiments"][1] == {"id": "exit-offer", "rule": "exit-offer", "arm": "b", "exposed": True}
    shown = next(e for e in s["log"] if e["kind"] == "show")
    assert (shown["arm"], shown["experiment"]) == ("b", "exit-offer")
    await w.leave()


async def test_after_shipping_every_visitor_who_reaches_the_moment_sees_the_shipped_text(serve, tmp_path):
    server, rules, state = started(serve, "memory", tmp_path)
    salt = salt_of(state)
    r = httpx.post(f"{server.base}/api/experiments/exit-offer/ship", json={"arm": "b"}, headers=server.auth, timeout=5)
    assert r.status_code == 200, r.text
    assert "shipped: b" in rules.read_text()
    for arm in ("a", "holdout"):
        v = await Visitor.arrive(server.ws_url, vid=visitor_in(salt, arm))
        await v.events({"e": "exit_intent", "how": "top"})
        assert "Free shipping" in (await v.expect("show"))["html"], arm
        s = server.session(v.sid)
        assert [x["id"] for x in s["experiments"]] == ["*"]  # an ended experiment assigns no one
        await v.leave()


def kairos_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kairos", "experiments", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


async def test_kairos_experiments_prints_the_table_or_the_json(serve, tmp_path, redis_url):
    from kairos.engine.redis import RedisEngine

    server, _, _ = started(serve, "redis", tmp_path)
    engine = RedisEngine(redis_url, session_ttl_s=60)
    await engine.start()
    try:
        for arm, n, bought in (("a", 1200, 60), ("b", 1180, 83), ("holdout", 260, 12)):
            engine.count_arm(now_ms(), "exit-offer", arm, "exposed", n)
            engine.count_arm(now_ms(), "exit-offer", arm, "converted", bought)
        await engine.arm_stats(now_ms() - 1000, now_ms())  # written to Redis now, not at the next flush
    finally:
        await engine.close()
    api = server.api("/api/experiments").json()["experiments"]

    out = kairos_cli("--url", server.base, "--token", server.admin_token)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("experiment * — every rule (the program's holdout), running")
    assert any(line.startswith("experiment exit-offer — rule exit-offer, running") for line in lines)
    assert any(line.split()[:5] == ["b", "45%", "1,180", "83", "7.0%"] for line in lines), out.stdout
    assert any(line.split()[:4] == ["holdout", "*", "10%", "260"] for line in lines), out.stdout
    assert out.stdout == table(api)

    out = kairos_cli("--json", "--url", server.base, "--token", server.admin_token)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert [x["arms"] for x in got] == [x["arms"] for x in api]

    out = kairos_cli("--url", server.base, "--token", "wrong")
    assert out.returncode == 1 and "admin token was refused" in out.stderr

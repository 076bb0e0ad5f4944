"""The Experiments page and a session's arm, in real headless Chromium against a real `kairos serve`.

Staff read each arm's numbers side by side, the verdicts, the lift chart (its
axes, its band, the zero line) and a sample-ratio warning; watch a number move
without reloading; and ship a variant, which asks first, ends the experiment and
shows in the rules history. Counts come from the engine's own `count_arm`
(days of them, on Redis) or from real visitors on the demo store. Screenshots
go under ARTEFACTS.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import threading
import time
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from conftest import ROOT, connected, exit_through_the_top, login
from kairos.engine.base import ARM_STATS_DAY_MS, arm_day
from kairos.experiments.assign import PROGRAM, arm_at, point, salt_from
from test_experiments_api import RULES as API_RULES

pytestmark = pytest.mark.browser

ARTEFACTS = Path(os.environ.get("KAIROS_ARTEFACTS", ROOT / "artefacts"))
OVERLAY = "#kairos-host .k-overlay"
# The API tests' rules, with exit intent counted at once (as the demo's): a test's pointer leaves at once.
RULES = API_RULES.replace("rules:\n", "track:\n  exit_min_ms: 0\nrules:\n", 1)
# Every report of a refused resource, kept across the page's navigations.
CSP_LISTENER = """
document.addEventListener('securitypolicyviolation', (e) => {
  const seen = JSON.parse(sessionStorage.getItem('csp') || '[]');
  seen.push(e.violatedDirective + ' ' + (e.blockedURI || 'inline'));
  sessionStorage.setItem('csp', JSON.stringify(seen));
});
"""


def started(serve, engine: str, tmp_path: Path):
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    state = tmp_path / "state"
    return serve(engine, rules=rules, extra=["--state-dir", str(state)]), rules, state


def counted(redis_url: str, rows: list[tuple[int, str, str, str, int]]) -> None:
    """Count with the Redis engine's own count_arm, as the server's claim does, and write it to Redis.

    In a thread of its own: Playwright's sync API holds this one's event loop.
    """
    from kairos.engine.redis import RedisEngine

    async def write() -> None:
        engine = RedisEngine(redis_url, session_ttl_s=60)
        await engine.start()
        try:
            for row in rows:
                engine.count_arm(*row)
            now = int(time.time() * 1000)
            await engine.arm_stats(now - 10 * ARM_STATS_DAY_MS, now)  # this process's counts written first
        finally:
            await engine.close()

    t = threading.Thread(target=asyncio.run, args=(write(),))
    t.start()
    t.join(30)


def staff_page(browser, server) -> tuple[Page, list[str]]:
    page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.add_init_script(CSP_LISTENER)
    page.clock.install()  # the page's refresh timer, moved on by the test
    login(page, server)
    return page, errors


def shoot(locator, name: str) -> None:
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    locator.screenshot(path=str(ARTEFACTS / f"{name}.png"))


def utc_label(day_ms: int) -> str:
    d = dt.datetime.fromtimestamp(day_ms / 1000, dt.timezone.utc)
    return f"{d:%b} {d.day}"


def test_staff_read_the_arms_and_the_lift_over_five_days_watch_it_move_and_ship_b(serve, browser, tmp_path):
    server, rules, _ = started(serve, "redis", tmp_path)
    now = int(time.time() * 1000)
    days = [arm_day(now) - i * ARM_STATS_DAY_MS for i in (4, 3, 2, 1, 0)]
    rows = []
    for day in days:
        for arm, exposed, converted in (("a", 400, 16), ("b", 400, 26), ("holdout", 100, 3)):
            rows += [(day + 60_000, "exit-offer", arm, "exposed", exposed), (day + 60_000, "exit-offer", arm, "converted", converted)]
        rows += [(day + 60_000, "exit-offer", "b", "shown", 400), (day + 60_000, "exit-offer", "b", "clicked", 60)]
        # The program's 5% holdout got twice its share: a sample-ratio mismatch.
        rows += [(day + 60_000, PROGRAM, "nudged", "exposed", 900), (day + 60_000, PROGRAM, "holdout", "exposed", 100)]
    counted(server.redis_url, rows)
    api = {x["id"]: x for x in server.api("/api/experiments").json()["experiments"]}

    staff, errors = staff_page(browser, server)
    staff.click("nav a:has-text('Experiments')")
    staff.wait_for_url(f"{server.base}/dashboard/experiments")
    expect(staff.locator("nav a[aria-current=page]")).to_have_text("Experiments")
    x = staff.locator('section[data-experiment="exit-offer"]')
    expect(x.locator("thead th[data-arm]")).to_have_count(3)
    assert x.locator("thead th[data-arm] .arm-name").all_text_contents() == ["a", "b", "holdout"]
    expect(x.locator('thead th[data-arm="holdout"] .tag')).to_have_text("control")
    expect(x.locator('tr[data-metric="exposed"] td[data-arm="b"]')).to_have_text("2,000")
    expect(x.locator('tr[data-metric="converted"] td[data-arm="b"]')).to_have_text("130")
    expect(x.locator('tr[data-metric="rate"] td[data-arm="b"]')).to_have_text("6.5%")
    expect(x.locator('tr[data-metric="rate"] td[data-arm="a"]')).to_have_text("4.0%")
    expect(x.locator('tr[data-metric="share"] td[data-arm="holdout"]')).to_have_text("10%")
    expect(x.locator('tr[data-metric="click_rate"] td[data-arm="b"]')).to_have_text("15.0%")
    expect(x.locator('tr[data-metric="click_rate"] td[data-arm="holdout"]')).to_have_text("shown nothing")
    a_vs, b_vs = api["exit-offer"]["comparisons"]
    assert b_vs["verdict"].startswith("b beats holdout: +117% conversion"), b_vs["verdict"]
    expect(x.locator('.verdicts li[data-arm="b"] .verdict')).to_have_text(b_vs["verdict"])
    expect(x.locator('.verdicts li[data-arm="b"]')).to_have_class("better")
    # A verdict that does not name its arm is said to be whose.
    assert a_vs["verdict"].startswith("not enough data"), a_vs["verdict"]
    expect(x.locator('.verdicts li[data-arm="a"] .verdict')).to_have_text("a against holdout: " + a_vs["verdict"])
    expect(x.locator(".srm-warning")).to_have_count(0)
    expect(staff.locator('section[data-experiment="*"] .srm-warning')).to_contain_text("Sample-ratio mismatch")

    # The chart: a point a day, the days on x and the lift in % on y, the band and the zero line.
    chart = x.locator('figure[data-arm="b"] svg.lift-chart')
    expect(chart).to_have_attribute("data-points", "5")
    expect(chart.locator(".axis-label.x")).to_have_text("day (UTC)")
    expect(chart.locator(".axis-label.y")).to_have_text("lift (%)")
    assert chart.locator(".tick.x").all_text_contents() == [utc_label(d) for d in days]
    assert "0%" in chart.locator(".tick.y").all_text_contents()
    assert all(t.endswith("%") for t in chart.locator(".tick.y").all_text_contents())
    expect(chart.locator("line.zero")).to_have_count(1)
    expect(chart.locator("polygon.band")).to_have_count(1)
    expect(chart.locator("circle.lift-dot")).to_have_count(5)
    # Each day's point sits at its lift: b's is the same every day here, +117% over the holdout.
    lift = api["exit-offer"]["comparisons"][1]["history"][-1]["lift"]
    expect(chart.locator("circle.lift-dot").last.locator("title")).to_contain_text(f"+{lift * 100:.0f}%")
    ys = {round(float(c.get_attribute("cy")), 1) for c in chart.locator("circle.lift-dot").all()}
    assert len(ys) == 1
    zero_y = float(chart.locator("line.zero").get_attribute("y1"))
    assert ys.pop() < zero_y, "a positive lift is drawn above the zero line"
    shoot(x, "experiments")
    shoot(staff.locator("main"), "experiments-page")

    # Live: one more visitor exposed to b shows without a reload, at the next refresh.
    counted(server.redis_url, [(int(time.time() * 1000), "exit-offer", "b", "exposed", 1)])
    staff.clock.fast_forward(11_000)
    expect(x.locator('tr[data-metric="exposed"] td[data-arm="b"]')).to_have_text("2,001")

    # Ship b: the page asks first; saying no changes nothing.
    asked: list[str] = []
    staff.once("dialog", lambda d: (asked.append(d.message), d.dismiss()))
    x.locator('button[data-action="ship"][data-arm="b"]').click()
    expect(x).to_have_attribute("data-state", "running")
    assert asked and asked[0].startswith("Ship b and end experiment exit-offer?"), asked
    assert rules.read_text() == RULES
    staff.once("dialog", lambda d: d.accept())
    x.locator('button[data-action="ship"][data-arm="b"]').click()
    expect(staff.locator("#experiments-result")).to_contain_text("Shipped b: experiment exit-offer has ended")
    expect(x).to_have_attribute("data-state", "ended")
    expect(x.locator(".tag.state")).to_contain_text("shipped b")
    expect(x.locator(".ended")).to_contain_text("everyone who reaches the moment sees b")
    expect(x.locator("button[data-action]")).to_have_count(0)
    expect(x.locator('thead th[data-arm="b"] .tag.shipped')).to_have_text("shipped")
    expect(x.locator('tr[data-metric="exposed"] td[data-arm="b"]')).to_have_text("2,001")  # results stay readable
    assert "      shipped: b\n" in rules.read_text() and "# Which words keep them?" in rules.read_text()

    staff.click("nav a:has-text('Rules')")
    expect(staff.locator("#rules-history tbody tr").first).to_contain_text("experiment exit-offer: shipped b")
    assert staff.evaluate("JSON.parse(sessionStorage.getItem('csp') || '[]')") == []
    assert errors == []
    staff.context.close()


def visitor_in(salt: bytes, arm: str) -> str:
    """A visitor id the program nudges and exit-offer's experiment puts in `arm`."""
    for i in range(10_000):
        vid = f"visitor-{arm}-{i}"
        if point(salt, PROGRAM, vid) >= 0.05 and arm_at((("a", 0.45), ("b", 0.45), ("holdout", 0.1)),
                                                        point(salt, "exit-offer", vid)) == arm:
            return vid
    raise AssertionError(f"no visitor in {arm}")


def shopper(browser, server, vid: str) -> tuple[Page, str]:
    """A visitor with this visitor id (as the snippet keeps it) on a product page; their page and session id."""
    page = browser.new_context(viewport={"width": 1100, "height": 760}).new_page()
    page.add_init_script(f"localStorage.setItem('kairos.vid', {vid!r})")
    page.goto(f"{server.base}/demo/products/linen-shirt")
    return page, connected(page)


@pytest.mark.parametrize("engine", ["memory", "redis"])
def test_the_session_page_says_each_visitors_arm_and_the_timeline_says_who_was_held_out(serve, browser, tmp_path, engine):
    server, _, state = started(serve, engine, tmp_path)
    salt = salt_from((state / "identify-secret").read_text().strip().encode())
    staff, errors = staff_page(browser, server)

    held, sid = shopper(browser, server, visitor_in(salt, "holdout"))
    staff.goto(f"{server.base}/dashboard/sessions/{sid}")
    mine = staff.locator('#detail-experiments li[data-experiment="exit-offer"]')
    expect(mine).to_contain_text("would be holdout (not yet exposed)")
    expect(staff.locator('#detail-experiments li[data-experiment="*"]')).to_contain_text("would be nudged (not yet exposed)")
    exit_through_the_top(held)
    expect(staff.locator("#detail-log tr.kind-held").first).to_contain_text(
        "held out: exit-offer (experiment exit-offer, arm holdout) — would have shown")
    expect(mine).to_contain_text("arm holdout (shown nothing)")
    expect(mine).to_have_attribute("data-exposed", "true")
    expect(held.locator(OVERLAY)).to_have_count(0)

    treated, sid = shopper(browser, server, visitor_in(salt, "b"))
    exit_through_the_top(treated)
    expect(treated.locator(OVERLAY)).to_contain_text("Free shipping")
    staff.goto(f"{server.base}/dashboard/sessions/{sid}")
    expect(staff.locator("#detail-log tr.kind-show").first).to_contain_text("exit-offer (experiment exit-offer, arm b)")
    expect(staff.locator('#detail-experiments li[data-experiment="exit-offer"]')).to_contain_text("arm b")
    shoot(staff.locator("main"), f"session-experiments-{engine}")

    # The experiments page counts them: one visitor exposed in each of the two arms.
    staff.goto(f"{server.base}/dashboard/experiments")
    x = staff.locator('section[data-experiment="exit-offer"]')
    for arm, n in (("a", "0"), ("b", "1"), ("holdout", "1")):
        expect(x.locator(f'tr[data-metric="exposed"] td[data-arm="{arm}"]')).to_have_text(n)
    expect(staff.locator('section[data-experiment="*"] tr[data-metric="exposed"] td[data-arm="nudged"]')).to_have_text("2")
    # Two visitors say nothing yet: no lift, but the chart still has its axes.
    chart = x.locator('figure[data-arm="b"] svg.lift-chart')
    expect(chart).to_have_attribute("data-points", "0")
    expect(chart.locator(".axis-label.y")).to_have_text("lift (%)")
    expect(chart.locator(".nothing")).to_contain_text("No lift yet")
    assert staff.evaluate("JSON.parse(sessionStorage.getItem('csp') || '[]')") == []
    assert errors == []
    for page in (staff, held, treated):
        page.context.close()

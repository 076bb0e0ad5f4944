"""Experiments end to end: assignment, exposure at the moment in every arm, caps alike for
the holdout and a shown arm, conversions and revenue per arm. Real servers, both engines."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from kairos.engine.base import arm_field
from kairos.experiments import assign
from kairos.experiments.stats import chi2_sf, srm_p
from kairos.rules import parse_rules
from test_engine_contract import engine, make_engine, open_session, session_id  # noqa: F401  (the engines fixture)
from wsclient import Visitor

SECRET = "experiments-test-secret"
SALT = assign.salt_from(SECRET.encode())
CART = "/demo/cart"

RULES = """
version: 1
page_types: {product: /demo/products/*, cart: /demo/cart}
rules:
  - id: cart-offer
    when: add_to_cart
    priority: 10
    then: {show: offer, template: offer.html, params: {headline: Ten percent off, body: Today only.}}
    experiment:
      variants:
        a: {weight: %(a)s}
        b: {weight: %(b)s, then: {params: {headline: Free shipping}}}
      holdout: 10%%
  - id: scroll-bar
    when: scroll
    priority: 1
    limit: {per_session: 5}
    then: {show: bar, template: bar.html, params: {message: People like this}}
"""


def rules_text(a: int = 45, b: int = 45) -> str:
    return RULES % {"a": a, "b": b}


def rule(a: int = 45, b: int = 45):
    return parse_rules(rules_text(a, b)).rule("cart-offer")


def visitor_in(arm: str, a: int = 45, b: int = 45, start: int = 0) -> str:
    """A visitor id the server (salted with SECRET) puts in `arm`."""
    r = rule(a, b)
    return next(vid for n in range(start, start + 10_000) if assign.arm_of(r, vid := f"v_exp{n:06d}", SALT) == arm)


# --- assignment (pure) --------------------------------------------------------------


def test_100000_visitors_split_45_45_10_as_set():
    r = rule()
    got = Counter(assign.arm_of(r, f"v_{n:08x}", SALT) for n in range(100_000))
    observed = [got["a"], got["b"], got["holdout"]]
    p = srm_p(observed, [0.45, 0.45, 0.10])
    print(f"100,000 visitors: {observed}, chi-square p = {p:.3f}")
    assert p > 0.01, observed
    # The test can fail: a skewed split (the holdout taken from the top) is caught.
    assert srm_p([observed[0] + 2_000, observed[1], observed[2] - 2_000], [0.45, 0.45, 0.10]) < 0.001
    assert chi2_sf(0, 2) == 1.0


def test_the_same_visitor_gets_the_same_arm_and_keeps_it_when_the_weights_change():
    before, after = rule(45, 45), rule(10, 80)
    moved = [f"v_{n:06d}" for n in range(2_000)
             if assign.arm_of(before, f"v_{n:06d}", SALT) != assign.arm_of(after, f"v_{n:06d}", SALT)]
    assert moved, "new weights move some visitors who were never recorded"
    for vid in moved:
        kept = assign.arm_of(before, vid, SALT)
        assert assign.arm_of(after, vid, SALT, {"cart-offer": kept}) == kept
    # Another installation (another secret) splits its visitors otherwise.
    other = assign.salt_from(b"another installation")
    assert sum(assign.arm_of(before, f"v_{n}", SALT) != assign.arm_of(before, f"v_{n}", other) for n in range(500)) > 100


@pytest.mark.parametrize("block, said", [
    ("holdout: 10", "rules[0].experiment.holdout: expected a share such as 10% or 0.1, got 10 — write `10%`"),
    ("variants: {a: {}}", "rules[0].experiment.variants: one variant and no holdout compares nothing"),
    ("variants: {}\n      holdout: 10%", "rules[0].experiment.variants: expected at least one variant"),
    ("variants: {a: {}, holdout: {}}", "rules[0].experiment.variants.holdout: `holdout` is the arm shown nothing"),
    ("variants: {a: {}, b: {then: {colour: red}}}", "rules[0].experiment.variants.b.then.colour: unknown key"),
    ("variants: {a: {}, b: {after: 5m}}", "rules[0].experiment.variants.b.after: a variant's `after` changes a "
                                          "delayed rule's delay"),
    ("variants: {a: {}, b: {then: {template: nope.html}}}", "rules[0].experiment.variants.b.then.template: "
                                                            "unknown template 'nope.html'"),
    ("variants: {a: {}, b: {then: {params: {href: 'javascript:alert(1)'}}}}",
     "rules[0].experiment.variants.b.then.params.href:"),
    ("variants: {a: {}, b: {}}\n      shipped: c", "rules[0].experiment.shipped: unknown variant 'c'"),
])
def test_a_mistaken_experiment_is_refused_with_its_place_and_reason(block, said):
    from kairos.rules import RulesError

    text = f"""
version: 1
rules:
  - id: cart-offer
    when: add_to_cart
    then: {{show: offer, template: offer.html, params: {{body: Hi}}}}
    experiment:
      {block}
"""
    with pytest.raises(RulesError) as refused:
        parse_rules(text, templates={"offer.html", "bar.html"})
    assert said in str(refused.value), str(refused.value)


def test_the_report_compares_each_arm_with_the_holdout_and_keeps_a_stopped_program_holdout():
    from kairos.experiments.report import reports, table

    day = 1_765_000_000_000 - 1_765_000_000_000 % 86_400_000
    days = {day: {"cart-offer@a|exposed": 4_000, "cart-offer@a|converted": 200,
                  "cart-offer@b|exposed": 4_000, "cart-offer@b|converted": 320,
                  "cart-offer@holdout|exposed": 4_000, "cart-offer@holdout|converted": 200,
                  "*@nudged|exposed": 900, "*@holdout|exposed": 100}}
    plain = parse_rules(rules_text())  # no file-level holdout: the program's is stopped, its counts stay
    got = reports(plain, days, day + 86_400_000)
    assert [(r["id"], r["running"]) for r in got] == [("*", False), ("cart-offer", True)]
    offer = got[1]
    assert [c["arm"] for c in offer["comparisons"]] == ["a", "b"] and offer["control"] == "holdout"
    b = offer["comparisons"][1]
    assert b["significant"] and b["lift"] == pytest.approx(0.6) and b["low"] > 0
    assert b["verdict"].startswith("b beats holdout: +60% conversion")
    assert not offer["comparisons"][0]["significant"]
    assert offer["srm"]["mismatch"] is True, "45/45/10 set, a third each counted"
    text = table(got)
    assert "b beats holdout" in text and "sample-ratio mismatch" in text


# --- the engines ---------------------------------------------------------------------


async def test_an_exposure_is_recorded_once_and_read_back_with_the_visitor(engine):
    now = int(time.time() * 1000)
    await open_session(engine)
    assert await engine.expose("v_visitor01", "cart-offer", "b", now) == ("b", True)
    assert await engine.expose("v_visitor01", "cart-offer", "a", now + 1) == ("b", False), "the first arm stays"
    assert await engine.arms("v_visitor01") == {"cart-offer": "b"}
    seen = await engine.visit("v_visitor01", session_id("contract1"), "/demo/cart", "cart", True, now + 2)
    assert seen.arms == {"cart-offer": "b"}
    # A purchase within the window: one conversion however many purchases, revenue for each.
    await engine.record_conversion("v_visitor01", now + 10, 3_600_000, 4_990)
    await engine.record_conversion("v_visitor01", now + 20, 3_600_000, 1_000)
    # Another visitor exposed long before the window: no credit.
    await engine.expose("v_visitor02", "cart-offer", "a", now - 7_200_000)
    await engine.record_conversion("v_visitor02", now, 3_600_000, 500)
    days = await engine.arm_stats(now - 86_400_000, now + 1000)
    total = Counter()
    for day in days.values():
        total.update(day)
    assert total[arm_field("cart-offer", "b", "converted")] == 1
    assert total[arm_field("cart-offer", "b", "revenue")] == 5_990
    assert total[arm_field("cart-offer", "b", "revenue_sq")] == 4_990 ** 2 + 1_000 ** 2
    assert total[arm_field("cart-offer", "a", "converted")] == 0
    await engine.forget("v_visitor01", None)
    assert await engine.arms("v_visitor01") == {}, "forgetting a visitor forgets their arms"


# --- on a real server ----------------------------------------------------------------


def write_rules(tmp_path: Path, a: int = 45, b: int = 45) -> Path:
    path = tmp_path / f"rules-{a}-{b}.yaml"
    path.write_text(rules_text(a, b))
    return path


def arm_counts(server, counters: tuple[str, ...] = ("exposed", "shown", "converted", "revenue")) -> Counter:
    """The experiments' counters as the server reports them (GET /api/experiments)."""
    r = httpx.get(f"{server.base}/api/experiments", headers=server.auth, timeout=5)
    r.raise_for_status()
    out = Counter()
    for x in r.json()["experiments"]:
        for a in x["arms"]:
            for counter in counters:
                out[f"{x['id']}@{a['name']}|{counter}"] = a[counter]
    return out


async def nothing_comes(v: Visitor, within_s: float = 0.6) -> None:
    """No nudge for the page within `within_s` (the batch's acknowledgements aside)."""
    deadline = time.monotonic() + within_s
    while (left := deadline - time.monotonic()) > 0:
        try:
            frame = await v.recv(left)
        except asyncio.TimeoutError:
            return
        assert frame["t"] not in ("show", "hide"), frame


@pytest.mark.parametrize("kind", ["memory", "redis"])
async def test_the_holdout_is_claimed_like_a_shown_arm_and_sent_nothing(serve, tmp_path, monkeypatch, kind):
    monkeypatch.setenv("KAIROS_IDENTIFY_SECRET", SECRET)
    server = serve(kind, rules=write_rules(tmp_path))
    held, treated = visitor_in("holdout"), visitor_in("b")
    seen = {}
    for vid in (held, treated):
        v = await Visitor.arrive(server.ws_url, vid, path=CART)
        await v.events({"e": "add_to_cart", "sku": "linen", "qty": 1, "price": 49.0})
        if vid == treated:
            show = await v.expect("show")
            assert "Free shipping" in show["html"] and "Ten percent" not in show["html"], "variant b's text"
        else:
            await nothing_comes(v)
        # A lower-priority nudge while the first one is (or would be) on screen: neither gets it.
        await v.events({"e": "scroll", "pct": 80})
        await nothing_comes(v)
        # The per-session cap is spent in both arms: a second add_to_cart shows nothing.
        await v.events({"e": "add_to_cart", "sku": "oxford", "qty": 1, "price": 39.9})
        await nothing_comes(v)
        seen[vid] = server.session(v.sid)
        await v.leave()
    for vid in (held, treated):
        state = seen[vid]
        assert state["fired"] == {"cart-offer": 1}, "the holdout's show is recorded, and capped, as the treated one's"
        skips = [e for e in state["log"] if e.get("kind") == "skip"]
        assert {(e["rule"], e["why"]) for e in skips} == {("scroll-bar", "busy")}, "the bar waits in both arms"
    held_log = [e for e in seen[held]["log"] if e.get("kind") in ("held", "show")]
    assert [(e["kind"], e.get("arm")) for e in held_log] == [("held", "holdout")]
    counts = arm_counts(server)
    assert counts["cart-offer@holdout|exposed"] == 1 and counts["cart-offer@b|exposed"] == 1
    assert counts["cart-offer@holdout|shown"] == 0 and counts["cart-offer@b|shown"] == 1


@pytest.mark.parametrize("kind", ["memory", "redis"])
async def test_a_purchase_after_the_moment_is_credited_to_the_visitors_arm(serve, tmp_path, monkeypatch, kind):
    monkeypatch.setenv("KAIROS_IDENTIFY_SECRET", SECRET)
    server = serve(kind, rules=write_rules(tmp_path))
    held = visitor_in("holdout")
    v = await Visitor.arrive(server.ws_url, held, path=CART)
    await v.events({"e": "add_to_cart", "sku": "linen", "qty": 1, "price": 49.0})
    await v.events({"e": "purchase", "value": 49.0, "cur": "EUR"})
    await v.events({"e": "purchase", "value": 10.5, "cur": "EUR"})
    deadline = time.monotonic() + 5
    while (counts := arm_counts(server))["cart-offer@holdout|revenue"] < 5_950 and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert counts["cart-offer@holdout|converted"] == 1, "a visitor converts once"
    assert counts["cart-offer@holdout|revenue"] == 5_950, "every purchase's value counts, in cents"
    assert counts["cart-offer@a|converted"] == counts["cart-offer@b|converted"] == 0
    # The rule's own counters do not credit it with a purchase its nudge never showed for.
    totals = httpx.get(f"{server.base}/api/stats", headers=server.auth, timeout=5).json()["totals"]
    assert totals["cart-offer"].get("converted", 0) == 0 and totals["cart-offer"].get("shown", 0) == 0, totals
    await v.leave()


async def test_two_processes_and_a_weight_change_keep_a_visitors_arm(serve, tmp_path, monkeypatch):
    monkeypatch.setenv("KAIROS_IDENTIFY_SECRET", SECRET)
    first = serve("redis", rules=write_rules(tmp_path, 45, 45))
    second = serve("redis", rules=write_rules(tmp_path, 5, 85), extra=[])
    # Visitors in `a` under the first weights whom the second weights would put in `b`.
    movers = [vid for n in range(3_000) if assign.arm_of(rule(45, 45), vid := f"v_mv{n:05d}", SALT) == "a"
              and assign.arm_of(rule(5, 85), vid, SALT) == "b"][:3]
    assert len(movers) == 3
    for vid in movers:
        v = await Visitor.arrive(first.ws_url, vid, path=CART)
        await v.events({"e": "add_to_cart", "sku": "linen", "qty": 1, "price": 49.0})
        assert "Ten percent off" in (await v.expect("show"))["html"]
        await v.leave()
        # The same page load reconnecting (to the other process): the session page names its arm.
        r = await Visitor.arrive(second.ws_url, vid, sid=v.sid, path=CART)
        assert r.sid == v.sid
        assert [(x["id"], x["arm"], x["exposed"]) for x in second.session(v.sid)["experiments"]] == [
            ("cart-offer", "a", True)]
        await r.leave()
        # A new session (another tab, a later visit) on the other process, under the new weights.
        w = await Visitor.arrive(second.ws_url, vid, path=CART)
        await w.events({"e": "add_to_cart", "sku": "linen", "qty": 1, "price": 49.0})
        assert "Ten percent off" in (await w.expect("show"))["html"], "arm a, as recorded, not b"
        await w.leave()
    # Each process writes its counts to Redis within a second (engine.redis.STATS_FLUSH_S).
    deadline = time.monotonic() + 5
    while (counts := arm_counts(second))["cart-offer@a|shown"] < 6 and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    assert counts["cart-offer@a|exposed"] == 3 and counts["cart-offer@b|exposed"] == 0, "each exposed once, in a"
    assert counts["cart-offer@a|shown"] == 6


@pytest.mark.parametrize("kind", ["memory", "redis"])
async def test_a_visitor_who_leaves_right_after_the_moment_is_counted_and_one_who_goes_on_is_not(
        serve, tmp_path, monkeypatch, kind):
    monkeypatch.setenv("KAIROS_IDENTIFY_SECRET", SECRET)
    # --delay-scale 0.05: the 30 s the server waits for a next page is 1.5 s here.
    server = serve(kind, rules=write_rules(tmp_path), extra=["--delay-scale", "0.05"])
    leaver, stayer = visitor_in("b"), visitor_in("b", start=5_000)
    for vid in (leaver, stayer):
        v = await Visitor.arrive(server.ws_url, vid, path=CART)
        await v.events({"e": "add_to_cart", "sku": "linen", "qty": 1, "price": 49.0})
        await v.expect("show")
        await v.leave()
        if vid == stayer:  # the next page of the same visit says hello at once
            w = await Visitor.arrive(server.ws_url, vid, sid=v.sid, path="/demo/products/linen-shirt")
            assert w.sid == v.sid
    deadline = time.monotonic() + 8
    while (counts := arm_counts(server, ("left", "exposed")))["cart-offer@b|left"] < 1 and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    await asyncio.sleep(2)  # the stayer's check is due by now too
    counts = arm_counts(server, ("left", "exposed"))
    assert counts["cart-offer@b|exposed"] == 2
    assert counts["cart-offer@b|left"] == 1, "only the visitor who opened no other page left"
    await w.leave()

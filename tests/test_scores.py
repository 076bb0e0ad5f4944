"""Intent scores: one table of event sequences, the expected scores, and both engines agreeing to 1e-9.

The expected values are computed here from the definition (a part decays by
half every half-life; the score is the logistic of bias + the parts), not by
the code under test; the memory engine (Python) and the Redis engine (Lua)
must each match them, and each other, to 1e-9 — across time gaps too.
"""

from __future__ import annotations

import math

import pytest

from kairos.scores import ScoreDef, Scores, add_part, signals_of, squash
from kairos.session import event_ops, hello_ops
from kairos.wire import Event, Hello, Page
from test_engine_contract import make_engine

T0 = 1_767_225_600_000
MIN = 60_000
INTENT = ScoreDef("purchase_intent", half_life_ms=10 * MIN, bias=-3.0,
                  weights={"page_view.product": 0.6, "add_to_cart": 1.5, "checkout": 2.0, "dwell_s": 0.01,
                           "exit_intent": -0.5, "custom.wishlist_add": 0.8})
RISK = ScoreDef("exit_risk", half_life_ms=2 * MIN, bias=-1.0, weights={"exit_intent": 1.2, "idle": 0.7, "scroll": -0.1})
DEFS = [INTENT, RISK]


def classify(path: str, declared: str = "") -> str:
    return declared or ("product" if path.startswith("/p/") else "other")


def view(path: str) -> Event:
    return Event("page_view", 0, {"url": f"https://s.example{path}", "path": path, "title": ""})


E = {
    "product": view("/p/linen"),
    "home": view("/"),
    "add": Event("add_to_cart", 0, {"sku": "LS-01"}),
    "checkout": Event("checkout", 0, {"step": "payment"}),
    "dwell30": Event("dwell", 0, {"ms": 30_000}),
    "exit": Event("exit_intent", 0, {"how": "top"}),
    "idle": Event("idle", 0, {"ms": 30_000}),
    "scroll": Event("scroll", 0, {"pct": 40}),
    "wish": Event("custom", 0, {"name": "wishlist_add"}),
    "other": Event("custom", 0, {"name": "size_guide"}),
}

# name: [(minutes after T0, [events]), ...]; the hello (a product page) is at T0
TABLE = {
    "hello only": [],
    "one batch": [(0.5, ["dwell30", "add"])],
    "browse then buy": [(1, ["product", "dwell30"]), (3, ["product", "add"]), (4, ["checkout"])],
    "decay over an hour's gap": [(1, ["add", "add"]), (61, ["home"])],
    "a day later, nearly nothing left": [(0, ["add"]), (24 * 60, ["scroll"])],
    "negative weights and two scores": [(0.2, ["exit", "idle"]), (0.4, ["exit"]), (5, ["scroll", "scroll"])],
    "unweighted events change nothing": [(1, ["other", "home"]), (2, ["wish"])],
    "same millisecond, several parts": [(2, ["add", "add", "add", "checkout", "exit"])],
}


def expected(steps: list[tuple[float, list[str]]], now_ms: int) -> dict[str, float]:
    """The scores at now_ms, straight from the definition, with no code from kairos.scores but the event-to-signal map."""
    adds: list[tuple[int, str, float]] = [(T0, "page_view.product", 1.0), (T0, "page_view", 1.0)]
    for minutes, names in steps:
        t = T0 + int(minutes * MIN)
        for name in names:
            ev = E[name]
            page_type = classify(ev.fields["path"]) if ev.type == "page_view" else ""
            adds += [(t, sig, amount) for sig, amount in signals_of(ev.type, ev.fields, page_type)]
    out = {}
    for d in DEFS:
        raw = d.bias + math.fsum(d.weights.get(sig, 0.0) * amount * 0.5 ** ((now_ms - t) / d.half_life_ms)
                                 for t, sig, amount in adds)
        out[d.name] = 1 / (1 + math.exp(-raw))
    return out


async def run(engine, sid: str, steps: list[tuple[float, list[str]]]):
    page = Page(url="https://s.example/p/linen", path="/p/linen", title="Linen")
    hello = Hello(site="demo", vid="v_scores01", sid=sid, page=page, consent=True, dnt=False, gpc=False)
    state = await engine.apply(sid, hello_ops(hello, "product", T0, scores=DEFS), [], T0)
    for minutes, names in steps:
        t = T0 + int(minutes * MIN)
        state = await engine.apply(sid, event_ops([E[n] for n in names], classify, t, "demo", scores=DEFS), [], t)
    return state


@pytest.mark.parametrize("case", list(TABLE))
async def test_both_engines_compute_the_scores_of_the_definition(case, clean_redis):
    steps = TABLE[case]
    last = T0 + int(max([m for m, _ in steps], default=0) * MIN)
    results = {}
    for kind in ("memory", "redis"):
        engine = make_engine(kind, clean_redis)
        await engine.start()
        try:
            results[kind] = await run(engine, f"s_score_{kind}", steps)
        finally:
            await engine.close()
    for at in (last, last + 7 * MIN, last + 90 * MIN):  # read now, and after more time without signals
        want = expected(steps, at)
        for d in DEFS:
            mem, red = results["memory"].score(d.name, at), results["redis"].score(d.name, at)
            assert abs(mem - red) <= 1e-9, (case, d.name, mem, red)
            assert abs(mem - want[d.name]) <= 1e-9, (case, d.name, mem, want[d.name])
    # the parts themselves: the same signals, the same decayed values, in both engines
    for d in DEFS:
        mem = results["memory"].scores.contributions(d.name, last)
        red = results["redis"].scores.contributions(d.name, last)
        assert [s for s, _ in mem] == [s for s, _ in red]
        assert all(abs(a - b) <= 1e-12 for (_, a), (_, b) in zip(mem, red))


async def test_the_top_contributions_explain_the_score(clean_redis):
    engine = make_engine("memory", clean_redis)
    await engine.start()
    state = await run(engine, "s_explain", [(1, ["dwell30", "add"]), (2, ["exit"])])
    top = state.scores.contributions("purchase_intent", T0 + 2 * MIN)
    assert [sig for sig, _ in top] == ["add_to_cart", "page_view.product", "exit_intent", "dwell_s"]
    assert top[0][1] == pytest.approx(1.5 * 0.5 ** (1 / 10))
    assert top[2][1] == pytest.approx(-0.5)
    shown = state.scores_json(T0 + 2 * MIN)
    assert set(shown) == {"purchase_intent", "exit_risk"}
    assert shown["purchase_intent"]["top"][0][0] == "add_to_cart"
    assert 0 < shown["exit_risk"]["value"] < 1
    await engine.close()


def test_a_score_with_no_signal_yet_is_its_bias():
    s = Scores(stored_bias={"purchase_intent": "-3.0"})
    assert s.value("purchase_intent", T0) == pytest.approx(1 / (1 + math.exp(3)))
    assert s.contributions("purchase_intent", T0) == []


def test_add_part_halves_per_half_life_and_squash_is_safe_at_the_extremes():
    part = add_part(None, f"{1.0!r} {T0} {MIN}")
    later = add_part(part, f"{0.0!r} {T0 + MIN} {MIN}")
    assert float(later.split()[0]) == pytest.approx(0.5, abs=1e-15)
    assert squash(-1000.0) == 0.0 and squash(1000.0) == 1.0 and squash(0.0) == 0.5


# --- scores in the rules file, and in conditions ---------------------------------

RULES = """
version: 1
page_types:
  product: /p/*
scores:
  purchase_intent:
    half_life: 10m
    bias: -3
    weights:
      page_view.product: 0.6
      add_to_cart: 1.5
      dwell_s: 0.01
      custom.wishlist_add: 0.8
rules:
  - id: ready-to-buy
    when: add_to_cart
    if:
      purchase_intent: {gte: 0.6}
    then: {show: offer, template: offer.html, params: {body: Free shipping today}}
"""


async def test_a_rule_fires_on_a_score_computed_from_the_rules_file(clean_redis):
    from kairos.rules import evaluate, parse_rules

    ruleset = parse_rules(RULES)
    assert [d.name for d in ruleset.scores] == ["purchase_intent"]
    assert ruleset.scores[0].half_life_ms == 600_000
    engine = make_engine("redis", clean_redis)
    await engine.start()
    page = Page(url="https://s.example/p/linen", path="/p/linen", title="Linen")
    hello = Hello(site="demo", vid="v_scores02", sid="s_rules01", page=page, consent=True, dnt=False, gpc=False)
    await engine.apply("s_rules01", hello_ops(hello, "product", T0, scores=ruleset.scores), [], T0)
    add = Event("add_to_cart", T0, {})
    state = await engine.apply("s_rules01", event_ops([add], ruleset.classify, T0 + MIN, "demo", ruleset.scores), [], T0 + MIN)
    # -3 + 0.6 * 0.5^0.1 + 1.5 = -0.94: about 0.28, below the threshold
    assert state.score("purchase_intent", T0 + MIN) == pytest.approx(squash(-3 + 0.6 * 0.5 ** 0.1 + 1.5))
    assert evaluate(ruleset, state, [add], T0 + MIN) == []
    state = await engine.apply("s_rules01", event_ops([add], ruleset.classify, T0 + 2 * MIN, "demo", ruleset.scores), [], T0 + 2 * MIN)
    assert state.score("purchase_intent", T0 + 2 * MIN) > 0.6
    assert [d.rule.id for d in evaluate(ruleset, state, [add], T0 + 2 * MIN)] == ["ready-to-buy"]
    await engine.close()


@pytest.mark.parametrize(("change", "message"), [
    ("custom.size_guide: 0.2", None),
    ("page_view.blog: 0.6", "unknown signal 'page_view.blog'"),
    ("add_to_kart: 1.5", "unknown signal 'add_to_kart'"),
    ("checkout: 1000", "weight between -100 and 100"),
    ("checkout: lots", "weight between -100 and 100"),
])
def test_score_weights_are_checked_when_the_file_is_loaded(change, message):
    from kairos.rules import RulesError, parse_rules

    text = RULES.replace("custom.wishlist_add: 0.8", change)
    if message is None:
        parse_rules(text)
        return
    with pytest.raises(RulesError) as err:
        parse_rules(text)
    assert message in str(err.value)


def test_conditions_name_a_declared_score_and_scores_are_named_well():
    from kairos.rules import RulesError, parse_rules

    with pytest.raises(RulesError) as err:
        parse_rules(RULES.replace("purchase_intent: {gte: 0.6}", "buy_intent: {gte: 0.6}"))
    assert "unknown signal 'buy_intent'" in str(err.value) and "purchase_intent" in str(err.value)
    with pytest.raises(RulesError) as err:
        parse_rules(RULES.replace("  purchase_intent:\n    half_life", "  pages:\n    half_life").replace("purchase_intent: {gte", "pages: {gte"))
    assert "built-in signal" in str(err.value)
    with pytest.raises(RulesError) as err:
        parse_rules(RULES.replace("half_life: 10m", "half_life: 3d"))
    assert "half_life" in str(err.value)


CROSSING = RULES.replace("""    when: add_to_cart
    if:
      purchase_intent: {gte: 0.6}
""", """    when: purchase_intent crosses 0.6
""")


async def test_a_crossing_rule_fires_once_when_the_score_rises_past_its_value(clean_redis):
    from kairos.rules import evaluate, parse_rules
    from kairos.rules.describe import describe

    ruleset = parse_rules(CROSSING)
    rule = ruleset.rules[0]
    assert rule.crossing == ("purchase_intent", 0.6)
    assert describe(rule).startswith("When a visitor's purchase intent rises past 0.6, show offer")
    engine = make_engine("memory", clean_redis)
    await engine.start()
    page = Page(url="https://s.example/p/linen", path="/p/linen", title="Linen")
    hello = Hello(site="demo", vid="v_scores03", sid="s_cross01", page=page, consent=True, dnt=False, gpc=False)
    await engine.apply("s_cross01", hello_ops(hello, "product", T0, scores=ruleset.scores), [], T0)
    fired = []
    steps = [(1, [E["dwell30"]]), (2, [E["add"]]), (3, [E["add"]]), (3.5, [E["dwell30"]]), (15, [E["home"]]),
             (16, [E["add"]]), (17, [E["add"]])]
    for minutes, events in steps:
        t = T0 + int(minutes * MIN)
        state = await engine.apply("s_cross01", event_ops(events, ruleset.classify, t, "demo", ruleset.scores), [], t)
        if evaluate(ruleset, state, events, t):
            fired.append(minutes)
    # 0.33 after the first add, 0.66 after the second: it crosses (minute 3); 0.70 half a minute later is
    # no crossing; by minute 15 it has decayed to 0.22, an add takes it to 0.53 (no), the next past 0.6 (again)
    assert fired == [3, 17]
    await engine.close()


def test_a_crossing_names_a_declared_score_a_value_between_0_and_1_and_no_delay():
    from kairos.rules import RulesError, parse_rules

    for bad, message in (("buy_intent crosses 0.6", "no such score"), ("purchase_intent crosses 1.5", "unknown event"),
                         ("purchase_intent crosses 1", "between 0 and 1")):
        with pytest.raises(RulesError) as err:
            parse_rules(CROSSING.replace("purchase_intent crosses 0.6", bad))
        assert message in str(err.value), (bad, str(err.value))
    with pytest.raises(RulesError) as err:
        parse_rules(CROSSING.replace("    when: purchase_intent crosses 0.6\n", "    when: purchase_intent crosses 0.6\n    after: 1m\n"))
    assert "shows at once" in str(err.value)

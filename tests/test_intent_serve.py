"""A trained model as a rules file's score: `purchase_intent: {model: model.json}`.

The model here is trained, in the test, on sessions exported in the shape
`kairos export-sessions` writes; the served score must be scikit-learn's
probability for the same session, and rules must read it like any score.
"""

from __future__ import annotations

import asyncio
import calendar
import json
import math
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from kairos.intent import save
from kairos.intent.sessions import features, label, to_csv
from kairos.rules import evaluate, parse_rules
from kairos.session import SessionState, VisitorInfo, event_ops
from kairos.traffic import SOURCES
from kairos.wire import Event
from wsclient import Visitor

ROOT = Path(__file__).resolve().parents[1]
PAGE_TYPES = {"product": "/demo/products/*", "cart": "/demo/cart"}
T2026 = calendar.timegm((2026, 1, 1, 0, 0, 0)) * 1000


def synthetic_sessions(n: int, seed: int = 7) -> list[SessionState]:
    """Sessions whose orders follow adds to cart, product and cart pages, e-mail traffic (and chance)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        pages = {"product": rng.randint(0, 8), "cart": rng.randint(0, 2), "other": rng.randint(0, 5)}
        pages["other"] += sum(pages.values()) == 0
        dwell = {t: k * rng.randint(2_000, 90_000) for t, k in pages.items()}
        adds = rng.randint(0, 3) if pages["product"] else 0
        exits = rng.randint(0, 2)
        traffic = rng.choice(SOURCES)
        logit = -3.5 + 2.0 * adds + 0.25 * pages["product"] + 1.0 * pages["cart"] - 0.6 * exits + 0.8 * (traffic == "email")
        state = SessionState(
            sid=f"s_syn{i}", started_ms=T2026 + rng.randint(0, 364) * 86_400_000 + rng.randint(0, 86_399_999),
            tz=rng.choice([-300, 0, 60, 540]), pages=sum(pages.values()), type_pages=pages, type_dwell_ms=dwell,
            dwell_ms=sum(dwell.values()), adds=adds, exit_intents=exits, clicks=rng.randint(0, 20),
            page_type=rng.choice(list(pages)), visits=rng.randint(1, 4), traffic=traffic,
            device=rng.choice(["desktop", "mobile", "tablet"]),
            purchases=int(rng.random() < 1 / (1 + math.exp(-logit))))
        out.append(state)
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(model file, the sessions, scikit-learn's classifier and the inputs it saw) from an exported CSV."""
    from kairos.intent import train

    sessions = synthetic_sessions(3000)
    rows = [json.dumps({"at": 0, "features": features(s, PAGE_TYPES), "purchased": label(s)}) for s in sessions]
    folder = tmp_path_factory.mktemp("intent")
    (folder / "sessions.csv").write_text(to_csv(rows))
    data = train.prepare(train.read_table(folder / "sessions.csv"), "purchased")
    clf = train.fit(data.X, data.y)
    model = train.to_model(clf, data, 0.5, {"params": {**train.PARAMS}})
    save(model, folder / "model.json")
    return folder / "model.json", sessions, clf, data


def test_the_served_score_is_the_training_librarys_probability(trained):
    path, sessions, clf, data = trained
    rules = parse_rules(RULES, "rules.yaml", base_dir=path.parent)
    score = rules.models["purchase_intent"]
    expected = clf.predict_proba(data.X)[:, 1]
    served = [score.value(s) for s in sessions]
    assert max(abs(a - b) for a, b in zip(served, expected)) <= 1e-12
    assert min(served) < 0.05 and max(served) > 0.9, "the model tells sessions apart"


def test_the_explanation_adds_up_to_the_score(trained):
    path, sessions, _, _ = trained
    score = parse_rules(RULES, "rules.yaml", base_dir=path.parent).models["purchase_intent"]
    for s in sessions[:200]:
        shown = score.explain(s, top=None)
        total = shown["bias"] + math.fsum(v for _, v, _ in shown["top"])
        assert abs(total - score.model.raw(score.row(s))) < 1e-9
        assert shown["value"] == pytest.approx(score.value(s), abs=1e-12)
    buyer = next(s for s in sessions if s.adds == 3 and s.purchases)
    top = score.explain(buyer, top=3)["top"]
    assert top[0][0] == "adds_to_cart" and top[0][1] > 0 and top[0][2] == 3, top


RULES = textwrap.dedent("""\
    version: 1
    page_types:
      product: /demo/products/*
      cart: /demo/cart
    scores:
      purchase_intent: {model: model.json}
    rules:
      - id: likely-buyer
        when: purchase_intent crosses 0.5
        then: {show: bar, template: bar.html, params: {message: Free shipping on this order}}
      - id: unlikely-exit
        when: exit_intent
        if: {purchase_intent: {lt: 0.2}}
        then: {show: offer, template: offer.html, params: {headline: Wait, body: 10% off, code: STAY10}}
""")


def session_after(ruleset, batches: list[list[Event]]) -> tuple[SessionState, list[list[str]]]:
    """A session on a product page through these batches (memory only: the engines are held equal elsewhere);
    the rules each batch fired."""
    from kairos.session import apply_ops, hello_ops
    from kairos.wire import Hello, Page

    h: dict[str, str] = {}
    page = Page(url="https://shop.example/demo/products/linen", path="/demo/products/linen", title="")
    hello = Hello(site="demo", vid="v_model01", sid=None, page=page, consent=True, dnt=False, gpc=False)
    apply_ops(h, hello_ops(hello, "product", T2026 + 1000))
    visitor = VisitorInfo(sessions=1, first_ms=T2026)
    fired = []
    for events in batches:
        apply_ops(h, event_ops(events, ruleset.classify, T2026 + 2000))
        state = SessionState.from_hash("s_model01", h)
        state.visitor = visitor
        fired.append([d.rule.id for d in evaluate(ruleset, state, events, T2026 + 2000)])
    return state, fired


def test_a_rules_file_with_a_model_loads_and_its_rules_fire(trained):
    path, *_ = trained
    ruleset = parse_rules(RULES, "rules.yaml", base_dir=path.parent)
    assert ruleset.scores == () and set(ruleset.models) == {"purchase_intent"}
    add = Event("add_to_cart", 0, {})
    state, fired = session_after(ruleset, [[Event("exit_intent", 0, {})], [add], [add], [add]])
    assert fired[0] == ["unlikely-exit"], "a product page and nothing else: an unlikely buyer"
    crossed_at = [i for i, ids in enumerate(fired) if "likely-buyer" in ids]
    assert len(crossed_at) == 1 and crossed_at[0] >= 1, fired
    assert state.score("purchase_intent", 0) >= 0.5


def test_a_page_view_that_lifts_the_score_is_a_crossing(trained):
    path, *_ = trained
    ruleset = parse_rules(RULES, "rules.yaml", base_dir=path.parent)
    add = Event("add_to_cart", 0, {})
    cart = Event("page_view", 0, {"url": "https://shop.example/demo/cart", "path": "/demo/cart", "title": ""})
    values = [session_after(ruleset, [[add], [cart], [cart]][:k])[0].score("purchase_intent", 0) for k in (1, 2, 3)]
    assert values[1] < 0.5 <= values[2], values  # the second look at the cart does it
    _, fired = session_after(ruleset, [[add], [cart], [cart]])
    assert fired == [[], [], ["likely-buyer"]]


@pytest.mark.parametrize(("model_text", "message"), [
    (None, "cannot read it"),
    ("{not json", "not JSON"),
    ('{"format": "something-else"}', "not a Kairos purchase-intent model"),
])
def test_a_model_file_that_cannot_be_used_is_a_clear_check_error(tmp_path, model_text, message):
    if model_text is not None:
        (tmp_path / "model.json").write_text(model_text)
    (tmp_path / "rules.yaml").write_text(RULES)
    done = subprocess.run([sys.executable, "-m", "kairos", "check", str(tmp_path / "rules.yaml")],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert f"rules.yaml:6: scores.purchase_intent.model: {tmp_path / 'model.json'}: {message}" in done.stderr, done.stderr


def test_a_model_that_reads_nothing_a_session_has_is_refused(tmp_path):
    from kairos.intent import train

    table = tmp_path / "uci-like.csv"
    rng = random.Random(1)
    table.write_text("PageValues,Month,Revenue\n" + "".join(
        f"{rng.random() * 50:.2f},{rng.choice(['Feb', 'Mar'])},{'TRUE' if rng.random() < 0.3 else 'FALSE'}\n" for _ in range(400)))
    save(train.train(train.read_table(table), "Revenue", echo=lambda _: None), tmp_path / "model.json")
    (tmp_path / "rules.yaml").write_text(RULES)
    done = subprocess.run([sys.executable, "-m", "kairos", "check", str(tmp_path / "rules.yaml")],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 1, done.stdout
    assert "model.json reads none of a session's features (it reads PageValues, Month)" in done.stderr
    assert "kairos export-sessions" in done.stderr


def test_kairos_check_describes_the_model_score(trained, tmp_path):
    path, *_ = trained
    (tmp_path / "model.json").write_bytes(path.read_bytes())
    (tmp_path / "rules.yaml").write_text(RULES)
    done = subprocess.run([sys.executable, "-m", "kairos", "check", str(tmp_path / "rules.yaml")],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "score purchase_intent: model model.json (200 trees over" in done.stdout
    assert "likely-buyer: When a visitor's purchase intent rises past 0.5, show bar" in done.stdout


@pytest.mark.parametrize("engine", ["memory", "redis"])
async def test_a_served_model_score_fires_a_crossing_and_is_explained(serve, engine, trained, tmp_path):
    path, *_ = trained
    (tmp_path / "model.json").write_bytes(path.read_bytes())
    (tmp_path / "rules.yaml").write_text(RULES)
    server = serve(engine, rules=tmp_path / "rules.yaml")
    v = await Visitor.arrive(server.ws_url)
    shown = []
    for _ in range(3):
        await v.events({"e": "add_to_cart", "sku": "LS-01"})
        try:
            shown.append((await v.expect("show", timeout=1.0))["rule"])
        except asyncio.TimeoutError:
            pass
    assert shown == ["likely-buyer"], shown
    state = server.session(v.sid)
    score = state["scores"]["purchase_intent"]
    assert score["value"] >= 0.5 and score["model"] == "model.json"
    assert score["top"][0][:1] == ["adds_to_cart"] and score["top"][0][2] == 3
    explain = subprocess.run([sys.executable, "-m", "kairos", "explain", v.sid, "--url", server.base,
                              "--token", server.admin_token], capture_output=True, text=True, timeout=30)
    assert explain.returncode == 0, explain.stderr
    assert f"purchase_intent {score['value']:.3f}  = logistic(" in explain.stdout and "model model.json" in explain.stdout
    assert "adds_to_cart = 3" in explain.stdout
    await v.leave()

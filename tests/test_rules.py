"""Rules: the file format, its refusals, and pure evaluation."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from kairos.rules import RulesError, evaluate, load_rules, parse_rules
from kairos.session import SessionState
from kairos.wire import Event

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = {"offer.html", "bar.html", "chat.html"}

BASE = """\
version: 1
page_types:
  product: /p/*
  cart: [/cart, /basket]
rules:
"""


def rules(body: str):
    return parse_rules(BASE + textwrap.indent(textwrap.dedent(body), "  "), "test.yaml", TEMPLATES)


def refusal(body: str) -> str:
    with pytest.raises(RulesError) as info:
        rules(body)
    return str(info.value)


def state(**kw) -> SessionState:
    return SessionState(sid="s_test0001", **kw)


EXIT = Event("exit_intent", 1)


def test_the_demo_rules_load():
    ruleset = load_rules(ROOT / "examples" / "demo.yaml", TEMPLATES)
    assert [r.id for r in ruleset.rules] == ["exit-offer", "cart-exit-shipping", "deep-scroll-proof"]


def test_page_types_come_from_path_patterns_first_match_wins():
    rs = rules("[]")
    assert [rs.classify(p) for p in ("/p/shirt", "/cart", "/basket", "/", "/p")] == ["product", "cart", "cart", "other", "other"]


def test_a_page_type_the_store_declares_wins_when_the_rules_declare_it():
    rs = rules("[]")
    assert rs.classify("/item/7", "product") == "product"
    assert rs.classify("/p/shirt", "other") == "other"
    assert rs.classify("/p/shirt", "landing") == "product", "an undeclared type leaves the path to decide"
    assert rs.classify("/p/shirt", "") == "product"


@pytest.mark.parametrize("event", ["rage_click", "idle_end", "hesitation", "copy", "identify", "custom"])
def test_the_later_event_types_trigger_and_cancel_rules(event):
    rs = rules(f"""
        - id: now
          when: {event}
          then: {{show: offer, template: offer.html}}
        - id: later
          when: page_view
          after: 3m
          unless: [{event}]
          then: {{show: bar, template: bar.html}}
    """)
    assert [d.rule.id for d in evaluate(rs, state(), [Event(event, 1, {})], 0)] == ["now"]
    assert rs.rule("later").cancel_events == (event,)


def test_exit_intent_can_ask_how_it_showed():
    rs = rules("""
        - id: r
          when: exit_intent
          if: {exit_how: [top, back]}
          then: {show: offer, template: offer.html}
    """)
    assert evaluate(rs, state(), [Event("exit_intent", 1, {"how": "top"})], 0)
    assert not evaluate(rs, state(), [Event("exit_intent", 1, {"how": "hidden"})], 0)
    assert not evaluate(rs, state(), [EXIT], 0)


def test_custom_events_by_name_and_count():
    rs = rules("""
        - id: r
          when: custom
          if: {custom_name: size_guide.open, custom_count: {gte: 2}}
          then: {show: chat, template: chat.html}
    """)
    guide = Event("custom", 1, {"name": "size_guide.open"})
    assert not evaluate(rs, state(custom={"size_guide.open": 1}), [guide], 0)
    assert evaluate(rs, state(custom={"size_guide.open": 2}), [guide], 0)
    assert not evaluate(rs, state(custom={"size_guide.open": 2}), [Event("custom", 1, {"name": "other"})], 0)


def test_identified_is_true_or_false():
    rs = rules("""
        - id: r
          when: exit_intent
          if: {identified: false}
          then: {show: offer, template: offer.html}
    """)
    assert evaluate(rs, state(), [EXIT], 0)
    assert not evaluate(rs, state(uid="0" * 32), [EXIT], 0)
    assert "rules[0].if.identified: expected true or false, got 'yes please'" in refusal("""
        - id: r
          when: exit_intent
          if: {identified: yes please}
          then: {show: offer, template: offer.html}
    """)


def test_a_rage_click_reads_like_a_click():
    rs = rules("""
        - id: r
          when: rage_click
          if: {click_target: add-to-cart, rage_clicks: {gte: 1}, click_text: Add to cart}
          then: {show: chat, template: chat.html}
    """)
    rage = Event("rage_click", 1, {"tag": "button", "n": 5, "k": "add-to-cart", "text": "Add to cart"})
    assert evaluate(rs, state(rage_clicks=1), [rage], 0)


def test_exit_intent_on_a_product_page_decides_the_offer():
    rs = rules("""
        - id: exit-offer
          when: exit_intent
          if: {page_type: product}
          then: {show: offer, template: offer.html}
    """)
    assert [d.rule.id for d in evaluate(rs, state(page_type="product"), [EXIT], 0)] == ["exit-offer"]
    assert evaluate(rs, state(page_type="cart"), [EXIT], 0) == []
    assert evaluate(rs, state(page_type="product"), [Event("click", 1, {"tag": "a"})], 0) == []


@pytest.mark.parametrize(
    "cond,value,holds",
    [
        ("{gt: 50}", 50.0, False), ("{gt: 50}", 50.01, True), ("{gte: 50}", 50.0, True),
        ("{lt: 10, gte: 2}", 5.0, True), ("{lt: 10, gte: 2}", 10.0, False),
        ("[1, 2]", 2.0, True), ("{in: [1, 2]}", 3.0, False), ("{not_in: [1, 2]}", 3.0, True),
        ("{ne: 0}", 0.0, False), ("7", 7.0, True),
    ],
)
def test_number_conditions(cond, value, holds):
    rs = rules(f"""
        - id: r
          when: exit_intent
          if: {{cart_value: {cond}}}
          then: {{show: offer, template: offer.html}}
    """)
    assert bool(evaluate(rs, state(cart_value=value), [EXIT], 0)) is holds


def test_all_conditions_must_hold():
    rs = rules("""
        - id: r
          when: exit_intent
          if: {page_type: [cart, product], cart_items: {gte: 1}}
          then: {show: offer, template: offer.html}
    """)
    assert evaluate(rs, state(page_type="cart", cart_items=1), [EXIT], 0)
    assert not evaluate(rs, state(page_type="cart", cart_items=0), [EXIT], 0)
    assert not evaluate(rs, state(page_type="other", cart_items=3), [EXIT], 0)


def test_the_higher_priority_comes_first_and_each_rule_once():
    rs = rules("""
        - id: low
          when: exit_intent
          then: {show: bar, template: bar.html}
          priority: 1
        - id: high
          when: exit_intent
          then: {show: offer, template: offer.html}
          priority: 9
    """)
    assert [d.rule.id for d in evaluate(rs, state(), [EXIT, EXIT], 0)] == ["high", "low"]


def test_spent_and_dismissed_rules_are_not_decided():
    rs = rules("""
        - id: r
          when: exit_intent
          then: {show: offer, template: offer.html}
          limit: {per_session: 2}
    """)
    assert evaluate(rs, state(fired={"r": 1}), [EXIT], 0)
    assert not evaluate(rs, state(fired={"r": 2}), [EXIT], 0)
    assert not evaluate(rs, state(dismissed={"r"}), [EXIT], 0)


def test_a_disabled_rule_is_not_in_force():
    rs = rules("""
        - id: r
          enabled: false
          when: exit_intent
          then: {show: offer, template: offer.html}
    """)
    assert rs.rules == ()


def test_show_defaults_place_by_kind():
    rs = rules("""
        - {id: a, when: exit_intent, then: {show: chat, template: chat.html}}
        - {id: b, when: exit_intent, then: {show: bar, template: bar.html, place: top}}
    """)
    assert [r.then.where for r in rs.rules] == ["corner", "top"]


def test_a_chat_can_be_a_bubble():
    rs = rules("""
        - {id: a, when: hesitation, then: {show: chat, template: chat.html, place: bubble}}
    """)
    assert rs.rules[0].then.where == "bubble"


@pytest.mark.parametrize(
    "body,line,expected",
    [
        ("- {id: r, when: exit_intent, then: {show: offer, template: offer.html}, colour: red}", 6, "rules[0].colour: `colour` is not a rule setting"),
        ("- id: r\n  when: exit\n  then: {show: offer, template: offer.html}", 7, "rules[0].when: unknown event 'exit' — did you mean `exit_intent`?"),
        ("- id: r\n  when: exit_intent\n  then: {show: offer, template: nope.html}", 8, "rules[0].then.template: unknown template 'nope.html'"),
        ("- id: r\n  when: exit_intent\n  if: {page_type: produce}\n  then: {show: offer, template: offer.html}", 8, "unknown page type 'produce' — did you mean `product`?"),
        ("- id: r\n  when: exit_intent\n  if: {cart_value: {gt: lots}}\n  then: {show: offer, template: offer.html}", 8, "rules[0].if.cart_value.gt: expected a number, got 'lots'"),
        ("- id: r\n  when: exit_intent\n  if: {page_type: {gt: 3}}\n  then: {show: offer, template: offer.html}", 8, "`gt` compares numbers and page_type is text"),
        ("- id: r\n  when: exit_intent\n  if: {moon_phase: full}\n  then: {show: offer, template: offer.html}", 8, "unknown signal 'moon_phase'"),
        ("- id: r\n  when: exit_intent\n  then: {show: popup, template: offer.html}", 8, "rules[0].then.show: expected one of overlay, offer, chat or bar, got 'popup'"),
        ("- id: r\n  when: exit_intent\n  then: {show: offer, template: offer.html}\n  priority: high", 9, "rules[0].priority: expected a whole number, got 'high'"),
        ("- {id: r, when: exit_intent, then: {show: offer, template: offer.html}}\n- {id: r, when: scroll, then: {show: bar, template: bar.html}}", 7, "rules[1].id: rule id 'r' is used twice"),
    ],
    ids=["unknown-field", "unknown-event", "unknown-template", "unknown-page-type", "bad-type", "text-compared-as-number",
         "unknown-signal", "unknown-kind", "bad-priority", "duplicate-id"],
)
def test_a_bad_rules_file_is_refused_naming_file_line_and_reason(body, line, expected):
    message = refusal(body)
    assert message.startswith(f"test.yaml:{line}: "), message
    assert expected in message


def test_every_problem_is_reported_at_once():
    message = refusal("""
        - {id: a, when: exit, then: {show: offer, template: offer.html}}
        - {id: b, when: exit_intent, then: {show: offer, template: gone.html}}
    """)
    assert "rules[0].when" in message and "rules[1].then.template" in message


def test_broken_yaml_is_refused_with_its_line():
    with pytest.raises(RulesError) as info:
        parse_rules("version: 1\nrules:\n  - id: [\n", "broken.yaml", TEMPLATES)
    assert str(info.value).startswith("broken.yaml:3: not valid YAML: the file ends inside a `[` or `{` that is not closed")


def test_a_missing_file_is_refused_clearly(tmp_path):
    with pytest.raises(RulesError, match="cannot read"):
        load_rules(tmp_path / "nope.yaml", TEMPLATES)


def test_an_unknown_version_is_refused():
    with pytest.raises(RulesError, match="version"):
        parse_rules("version: 2\nrules: []\n", "v.yaml", TEMPLATES)


def test_a_rule_whose_template_lacks_a_parameter_is_refused_before_it_runs():
    from kairos.render import Renderer

    renderer = Renderer(ROOT / "templates" / "overlays")
    text = BASE + "  - id: r\n    when: exit_intent\n    then:\n      show: offer\n      template: offer.html\n      params: {headline: Hi}\n"
    with pytest.raises(RulesError) as info:
        parse_rules(text, "test.yaml", renderer.names(), renderer.problem)
    assert str(info.value) == "test.yaml:8: rules[0].then: template 'offer.html' needs `body` under `params:`, such as `params: {body: …}`"
    ok = text.replace("{headline: Hi}", "{headline: Hi, body: There}")
    assert parse_rules(ok, "test.yaml", renderer.names(), renderer.problem).rules[0].id == "r"


def test_yaml_nested_too_deeply_is_refused_not_crashed():
    with pytest.raises(RulesError, match="nested too deeply"):
        parse_rules("version: 1\nrules: " + "[" * 3000 + "]" * 3000 + "\n", "deep.yaml", TEMPLATES)


def test_tracking_settings_are_read_and_only_those_set_are_kept():
    rs = parse_rules("version: 1\ntrack:\n  rage_n: 0\n  copy: true\n  batch_ms: 250\nrules: []\n", "t.yaml", TEMPLATES)
    assert rs.track == {"batch_ms": 250, "rage_n": 0, "copy": True}
    assert parse_rules("version: 1\nrules: []\n", "t.yaml", TEMPLATES).track == {}


@pytest.mark.parametrize(
    "setting,reason",
    [
        ("rage_n: 50", "track.rage_n: expected 0 (off) or 2 to 20, got 50"),
        ("rage_n: 1", "track.rage_n: expected 0 (off) or 2 to 20, got 1"),
        ("idle_ms: 500", "track.idle_ms: expected 0 (off) or 1000 to 3600000, got 500"),
        ("hes_ms: 700000", "track.hes_ms: expected 0 (off) or 1000 to 600000, got 700000"),
        ("batch_ms: 50", "track.batch_ms: expected at least 100, got 50"),
        ("dwell_ms: 1000.5", "track.dwell_ms: expected a whole number, got 1000.5"),
        ("scroll_step: 0", "track.scroll_step: expected at least 1, got 0"),
        ("exit_min_ms: 600001", "track.exit_min_ms: expected at most 600000, got 600001"),
        ("exit_gap_ms: -1", "track.exit_gap_ms: expected at least 0, got -1"),
        ("rage_ms: 99", "track.rage_ms: expected at least 100, got 99"),
        ("copy: maybe", "track.copy: expected true or false, got 'maybe'"),
        ("exit: 1", "track.exit: expected true or false, got 1"),
        ("colour: red", "track.colour: `colour` is not a `track` setting; the settings of `track` are batch_ms, dwell_ms, "
                        "scroll_step, idle_ms, exit, exit_min_ms, exit_gap_ms, exit_scroll, exit_back, exit_hidden, clicks, "
                        "click_text, rage_n, rage_ms, hes_ms, copy and spa"),
    ],
)
def test_a_tracking_setting_out_of_bounds_is_refused_with_its_line(setting, reason):
    with pytest.raises(RulesError) as info:
        parse_rules(f"version: 1\ntrack:\n  spa: false\n  {setting}\nrules: []\n", "t.yaml", TEMPLATES)
    assert str(info.value) == f"t.yaml:4: {reason}"

"""The mistakes a store operator makes in a rules file, and what `kairos check` says about each.

Each message names the file, the line and the place, says what is wrong in plain
words, and says what to write instead; doing what it says makes the file load.
The same words reach the dashboard's editor and the hot-reload log: they all
come from parse_rules.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from kairos.render import Renderer
from kairos.rules import RulesError, load_rules

ROOT = Path(__file__).resolve().parents[1]
RENDERER = Renderer(ROOT / "templates" / "overlays")


def rules_file(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


# (the file, what `kairos check` says, the fix: a replacement that makes the file load)
MISTAKES = [
    pytest.param(rules_file("""
        version: 1
        rules:
          - id: exit-offer
            when: exit_intent
            then: {show: offer, template: offer.html, params: {body: Take 10% off.}}
            limt: {per_session: 2}
        """),
        "rules.yaml:6: rules[0].limt: `limt` is not a rule setting — did you mean `limit`?",
        ("limt:", "limit:"), id="misspelt-rule-key"),
    pytest.param(rules_file("""
        version: 1
        rule:
          - id: exit-offer
            when: exit_intent
            then: {show: offer, template: offer.html, params: {body: Take 10% off.}}
        """),
        "rules.yaml:2: rule: `rule` is not a top-level key — did you mean `rules`?",
        ("rule:", "rules:"), id="misspelt-top-level-key"),
    pytest.param(rules_file("""
        version: 1
        rules:
          - id: exit-offer
            when: exit_intent
            then: {show: offer, template: offer.html, params: {body: Take 10% off.}}
            limit: {per_sesion: 2}
        """),
        "rules.yaml:6: rules[0].limit.per_sesion: `per_sesion` is not a `limit` setting — did you mean `per_session`?",
        ("per_sesion", "per_session"), id="misspelt-limit-key"),
    pytest.param(rules_file("""
        version: 1
        track:
          rage_count: 5
        rules: []
        """),
        "rules.yaml:3: track.rage_count: `rage_count` is not a `track` setting — did you mean `rage_n`?",
        ("rage_count", "rage_n"), id="misspelt-track-key"),
    pytest.param(rules_file("""
        version: 1
        rules:
          - id: exit-offer
            when: exit_intnet
            then: {show: offer, template: offer.html, params: {body: Take 10% off.}}
        """),
        "rules.yaml:4: rules[0].when: unknown event 'exit_intnet' — did you mean `exit_intent`?",
        ("exit_intnet", "exit_intent"), id="misspelt-event"),
    pytest.param(rules_file("""
        version: 1
        rules:
          - id: exit-offer
            when: exit
            then: {show: offer, template: offer.html, params: {body: Take 10% off.}}
        """),
        "rules.yaml:4: rules[0].when: unknown event 'exit' — did you mean `exit_intent`?",
        ("when: exit", "when: exit_intent"), id="shortened-event"),
    pytest.param(rules_file("""
        version: 1
        rules:
          - id: cart-reminder
            when: add_to_cart
            after: 10m
            unless: [add_to_kart, purchase]
            then: {show: bar, template: bar.html, params: {message: Your cart is waiting.}}
        """),
        "rules.yaml:6: rules[0].unless[0]: unknown event 'add_to_kart' — did you mean `add_to_cart`?",
        ("add_to_kart", "add_to_cart"), id="misspelt-event-in-unless"),
    pytest.param(rules_file("""
        version: 1
        rules:
          - id: exit-offer
            when: exit_intent
            then: {show: offer, template: offer.html, params: {body: Take 10% off.}}
            limit: {per_session: two}
        """),
        "rules.yaml:6: rules[0].limit.per_session: expected a whole number, got 'two'",
        ("two", "2"), id="count-in-words"),
    pytest.param(rules_file("""
        version: 1
        rules:
          - id: cart-reminder
            when: add_to_cart
            after: 3 minutes
            unless: [checkout]
            then: {show: bar, template: bar.html, params: {message: Your cart is waiting.}}
        """),
        "rules.yaml:5: rules[0].after: expected a duration such as 90s, 3m or 1h30m, got '3 minutes' — write `3m`",
        ("3 minutes", "3m"), id="duration-in-words"),
    pytest.param(rules_file("""
        version: 1
        rules:
          - id: exit-offer
            when: exit_intent
            then: {show: offer, template: ofer.html, params: {body: Take 10% off.}}
        """),
        "rules.yaml:5: rules[0].then.template: unknown template 'ofer.html' — did you mean `offer.html`?",
        ("ofer.html", "offer.html"), id="misspelt-template"),
    pytest.param(rules_file("""
        version: 1
        rules:
          - id: exit-offer
            when: exit_intent
            then: {show: offer, template: offer.html}
        """),
        "rules.yaml:5: rules[0].then: template 'offer.html' needs `body` under `params:`, such as `params: {body: …}`",
        ("offer.html}", "offer.html, params: {body: Take 10% off.}}"), id="missing-template-value"),
    pytest.param(rules_file("""
        version: 1
        rules:
          - id: big-cart
            when: exit_intent
            if:
              cart_vaule: {gt: 50}
            then: {show: offer, template: offer.html, params: {body: Free shipping today.}}
        """),
        "rules.yaml:6: rules[0].if.cart_vaule: unknown signal 'cart_vaule' — did you mean `cart_value`?",
        ("cart_vaule", "cart_value"), id="misspelt-signal"),
    pytest.param(rules_file("""
        version: 1
        rules:
          - id: full-moon
            when: page_view
            if: {moon_phase: full}
            then: {show: bar, template: bar.html, params: {message: Howl.}}
        """),
        "rules.yaml:5: rules[0].if.moon_phase: unknown signal 'moon_phase': not a built-in signal (docs/rules.md lists "
        "them) nor a score under `scores:`",
        ("moon_phase: full", "local_weekday: sun"), id="made-up-signal"),
    pytest.param(rules_file("""
        version: 1
        scores:
          purchase_intent:
            half_life: 10m
            weights:
              add_to_kart: 1.5
        rules: []
        """),
        "rules.yaml:6: scores.purchase_intent.weights.add_to_kart: unknown signal 'add_to_kart' — did you mean "
        "`add_to_cart`?",
        ("add_to_kart", "add_to_cart"), id="misspelt-score-weight"),
    pytest.param(rules_file("""
        version: 1
        page_types:
          product: /products/*
          cart: /cart
        rules:
          - id: exit-offer
            when: exit_intent
            if: {page_type: prodcut}
            then: {show: offer, template: offer.html, params: {body: Take 10% off.}}
        """),
        "rules.yaml:8: rules[0].if.page_type: unknown page type 'prodcut' — did you mean `product`?",
        ("prodcut", "product"), id="misspelt-page-type"),
    pytest.param(rules_file("""
        version: 1
        rules:
          - id: exit-offer
            when: exit_intent
            if: {page_type: product}
            then: {show: offer, template: offer.html, params: {body: Take 10% off.}}
        """),
        "rules.yaml:5: rules[0].if.page_type: unknown page type 'product': the file declares no `page_types:`, so "
        "every page is `other`; declare the page types the rules use, such as `page_types: {product: /products/*}`",
        ("rules:\n", "page_types: {product: /products/*}\nrules:\n"), id="page-type-not-declared"),
    pytest.param(rules_file("""
        version: 1
        rules:
          - id: welcome-searchers
            when: page_view
            if: {traffic: serach}
            then: {show: bar, template: bar.html, params: {message: Welcome.}}
        """),
        "rules.yaml:5: rules[0].if.traffic: unknown source 'serach' — did you mean `search`?",
        ("serach", "search"), id="misspelt-traffic-source"),
    pytest.param(rules_file("""
        version: 1
        rules:
          - id: big-cart
            when: exit_intent
            if:
              cart_value: {ge: 50}
            then: {show: offer, template: offer.html, params: {body: Free shipping today.}}
        """),
        "rules.yaml:6: rules[0].if.cart_value.ge: `ge` is not an operator — did you mean `gte`?",
        ("{ge:", "{gte:"), id="misspelt-operator"),
    pytest.param(rules_file("""
        version: 1
        rules:
          - id: exit-offer
            when: exit_intent
            then: {show: ofer, template: offer.html, params: {body: Take 10% off.}}
        """),
        "rules.yaml:5: rules[0].then.show: expected one of overlay, offer, chat or bar, got 'ofer' — did you mean "
        "`offer`?",
        ("show: ofer", "show: offer"), id="misspelt-kind"),
    pytest.param(rules_file("""
        version: 1
        rules:
          - id: exit-offer
            when: exit_intent
            then: {show: popup, template: offer.html, params: {body: Take 10% off.}}
        """),
        "rules.yaml:5: rules[0].then.show: expected one of overlay, offer, chat or bar, got 'popup'",
        ("popup", "overlay"), id="unknown-kind"),
    pytest.param(rules_file("""
        version: 1
        rules:
          - id: exit-offer
            when: exit_intent
            then: {show: offer, template: offer.html, params: {body: Take 10% off.}}
            limit:
            per_session: 2
        """),
        "rules.yaml:6: rules[0].limit: expected settings indented under `limit:`, got nothing — indent them more than "
        "`limit:`\n"
        "rules.yaml:7: rules[0].per_session: `per_session` is not a rule setting: it belongs under `limit:`, indented "
        "below it",
        ("\n    per_session", "\n      per_session"), id="setting-not-indented"),
    pytest.param(rules_file("""
        version: 1
        rules:
          - id: exit-offer
            when: exit_intent
            then:
              show: offer
              template: offer.html
              body: Take 10% off.
        """),
        "rules.yaml:8: rules[0].then.body: `body` is not a `then` setting; the settings of `then` are show, template, "
        "place, ttl_s, params, scope and until (values for the template go under `params:`)",
        ("      body:", "      params:\n        body:"), id="template-value-outside-params"),
    pytest.param(rules_file("""
        version: 1
        rules:
          - id: exit-offer
            when: exit_intent
            then: {show: offer, template: offer.html, params: {body: Take 10% off.}}
            limit:
              per_session:2
        """),
        "rules.yaml:6: rules[0].limit: expected settings under `limit:`, got 'per_session:2' — put a space after the "
        "colon: `per_session: 2`",
        ("per_session:2", "per_session: 2"), id="no-space-after-colon"),
    pytest.param(rules_file("""
        version: 1
        rules:
          - id: exit-offer
            when: exit_intent
            if: {cart_items: {gte: 1}}
        """),
        "rules.yaml:3: rules[0].then: a rule needs `then:` (what to show, such as `then: {show: offer, template: "
        "offer.html}`)",
        ("{gte: 1}}\n", "{gte: 1}}\n    then: {show: offer, template: offer.html, params: {body: Hi.}}\n"),
        id="missing-then"),
    pytest.param(rules_file("""
        version: 1
        rules:
          - id: ready-to-buy
            when: purchase_intent crosses 0.6
            then: {show: offer, template: offer.html, params: {body: Free shipping on this order.}}
        """),
        "rules.yaml:4: rules[0].when: 'purchase_intent crosses 0.6': no such score — the file declares no `scores:`; "
        "declare purchase_intent there first",
        ("rules:\n", "scores:\n  purchase_intent: {half_life: 10m, weights: {add_to_cart: 1.5}}\nrules:\n"),
        id="crossing-an-undeclared-score"),
    pytest.param(rules_file("""
        version: 1
        scores:
          purchase_intent:
            half_life: 10m
            weights: {add_to_cart: 1.5}
        rules:
          - id: ready-to-buy
            when: purchase_intnet crosses 0.6
            then: {show: offer, template: offer.html, params: {body: Free shipping on this order.}}
        """),
        "rules.yaml:8: rules[0].when: 'purchase_intnet crosses 0.6': no such score — did you mean `purchase_intent`?",
        ("purchase_intnet", "purchase_intent"), id="crossing-a-misspelt-score"),
    pytest.param(rules_file("""
        version: 1
        rules:
          - id: cart-reminder
            when: add_to_cart
            unless: [checkout]
            then: {show: bar, template: bar.html, params: {message: Your cart is waiting.}}
        """),
        "rules.yaml:5: rules[0].unless: `unless` cancels a delayed rule: add `after:` (such as `after: 3m`), or remove "
        "`unless:`",
        ("    unless:", "    after: 3m\n    unless:"), id="unless-without-after"),
    pytest.param(rules_file("""
        version: 1
        rules:
          - id: cart-reminder
            when: add_to_cart
            after: 10m
            unless: checkout
            then: {show: bar, template: bar.html, params: {message: Your cart is waiting.}}
        """),
        "rules.yaml:6: rules[0].unless: expected a list, got 'checkout' — write `[checkout]`",
        ("unless: checkout", "unless: [checkout]"), id="unless-not-a-list"),
    pytest.param(rules_file("""
        version: 1
        rules:
          - id: Exit Offer
            when: exit_intent
            then: {show: offer, template: offer.html, params: {body: Take 10% off.}}
        """),
        "rules.yaml:3: rules[0].id: expected lower-case letters, digits, - and _ (such as exit-offer), got 'Exit Offer'",
        ("Exit Offer", "exit-offer"), id="id-with-spaces"),
    pytest.param(rules_file("""
        version: 1
        rules:
          - id: exit-offer
            when: exit_intent
            then: {show: offer, template: offer.html, params: {body: Take 10% off.}}
          - id: exit-offer
            when: exit_intent
            if: {cart_value: {gt: 50}}
            then: {show: offer, template: offer.html, params: {body: Free shipping today.}}
        """),
        "rules.yaml:6: rules[1].id: rule id 'exit-offer' is used twice (rules[0] has it too): give each rule an id of "
        "its own",
        ("- id: exit-offer\n    when: exit_intent\n    if:", "- id: big-cart-exit\n    when: exit_intent\n    if:"),
        id="duplicate-rule-id"),
    pytest.param(rules_file("""
        version: 1
        rules:
          - id: exit-offer
            when: exit_intent
            if: {page_type: other}
            if: {cart_items: {gte: 1}}
            then: {show: offer, template: offer.html, params: {body: Take 10% off.}}
        """),
        "rules.yaml:6: rules[0].if: `if` is given twice here and only the last would count: keep one",
        ("if: {page_type: other}\n    if: {cart_items", "if: {page_type: other, cart_items"), id="key-given-twice"),
    pytest.param(rules_file("""
        version: 1
        track:
          batch_ms: 50
        rules: []
        """),
        "rules.yaml:3: track.batch_ms: expected at least 100, got 50",
        ("50", "500"), id="setting-out-of-bounds"),
    pytest.param(rules_file("""
        version: 1
        rules:
          - id: exit-offer
        \twhen: exit_intent
            then: {show: offer, template: offer.html, params: {body: Take 10% off.}}
        """),
        "rules.yaml:4: not valid YAML: a tab character: YAML indents with spaces only",
        ("\t", "    "), id="tab-character"),
    pytest.param(rules_file("""
        version: 1
        rules:
          - id: exit-offer
            when exit_intent
            then: {show: offer, template: offer.html, params: {body: Take 10% off.}}
        """),
        "rules.yaml:4: not valid YAML: a line that is not `key: value` — is a colon missing?",
        ("when exit", "when: exit"), id="missing-colon"),
    pytest.param(rules_file("""
        version: 1
        rules:
          - id: welcome-searchers
            when: page_view
            if: {traffic: search}
            then: {show: bar, template: bar.html, params: {message: Found what you searched for?}}
        """),
        "rules.yaml:6: not valid YAML: '?' inside `{…}` — put the value in quotes, or close the `{` with `}`",
        ("Found what you searched for?", "'Found what you searched for?'"), id="question-mark-inside-braces"),
    pytest.param(rules_file("""
        version: 1
        rules:
          - id: exit-offer
            when: exit_intent
            then:
              show: offer
              template: offer.html
              params: {body: Take 10% off., href: "javascript:location='/cart'"}
        """),
        "rules.yaml:8: rules[0].then.params.href: \"javascript:location='/cart'\" is a javascript: link, which runs "
        "code on the store's page when it is clicked: write an https:// address or a path on the store, such as "
        "`/cart` or `https://shop.example/sale`",
        ("\"javascript:location='/cart'\"", "/cart"), id="javascript-link"),
]


def check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str) -> str:
    """What `kairos check rules.yaml` prints for the file: load_rules with the real templates, as cli._check does."""
    (tmp_path / "rules.yaml").write_text(text, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RulesError) as info:
        load_rules("rules.yaml", RENDERER.names(), RENDERER.problem)
    return str(info.value)


@pytest.mark.parametrize(("text", "message", "fix"), MISTAKES)
def test_a_mistake_is_named_with_its_line_and_its_fix(tmp_path, monkeypatch, text, message, fix):
    assert check(tmp_path, monkeypatch, text) == message


@pytest.mark.parametrize(("text", "message", "fix"), MISTAKES)
def test_doing_what_the_message_says_makes_the_file_load(tmp_path, text, message, fix):
    old, new = fix
    assert text.count(old) == 1, "the fix names one place"
    path = tmp_path / "rules.yaml"
    path.write_text(text.replace(old, new), encoding="utf-8")
    assert load_rules(path, RENDERER.names(), RENDERER.problem).source == str(path)


def test_no_message_reads_like_pydantic_or_python(tmp_path, monkeypatch):
    for param in MISTAKES:
        text, _, _ = param.values
        message = check(tmp_path, monkeypatch, text)
        for phrase in ("Input should", "Extra inputs", "Field required", "Value error", "['", "validation error"):
            assert phrase not in message, (param.id, message)


def test_kairos_check_prints_the_problems_and_fails(tmp_path):
    text, message, _ = next(p.values for p in MISTAKES if p.id == "setting-not-indented")
    (tmp_path / "rules.yaml").write_text(text, encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "kairos", "check", "rules.yaml"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (1, "", message + "\n")

"""describe(): a rule in plain words, as `kairos check`, the dashboard and GET /admin/rules show it."""

from __future__ import annotations

import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from kairos.rules import load_rules, parse_rules
from kairos.rules.describe import EVENT_PHRASES, describe
from kairos.wire import EVENT_TYPES

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = {"offer.html", "bar.html", "chat.html"}

BASE = """\
version: 1
page_types:
  product: /p/*
  cart: /cart
  checkout: [/checkout, /checkout/*]
  order-status: /orders/*
rules:
"""


def ruleset(body: str):
    return parse_rules(BASE + textwrap.indent(textwrap.dedent(body), "  "), "test.yaml", TEMPLATES)


def one(body: str, with_page_types: bool = False) -> str:
    rs = ruleset(body)
    assert len(rs.rules) == 1
    return describe(rs.rules[0], rs.page_types if with_page_types else None)


def test_the_example_of_the_docs():
    assert one("""
        - id: exit-offer
          when: exit_intent
          if: {page_type: product, cart_value: {gt: 50}}
          then: {show: offer, template: offer.html}
          priority: 10
    """) == ("When a visitor shows exit intent on a product page and their cart value is over 50, "
             "show offer 'offer.html' (center), at most once per session, priority 10.")


def test_the_demo_rules():
    rs = load_rules(ROOT / "examples" / "demo.yaml", TEMPLATES)
    assert [describe(r, rs.page_types) for r in rs.rules] == [
        "When a visitor shows exit intent on a product page, show offer 'offer.html' (center), "
        "at most once per session, priority 10.",
        "When a visitor shows exit intent on a cart or checkout page and their cart value is over 50, "
        "show offer 'offer.html' (center), at most once per session, priority 20. Experiment cart-exit-shipping, "
        "counted from the moment in every arm — a 45%: as written; b 45%: headline 'Your order ships free'; "
        "holdout 10%: shown nothing, recorded as if shown (caps and all).",
        "When a visitor scrolls on a product page and the deepest scroll on this page is at least 70%, "
        "show bar 'bar.html' (bottom) for 12 s, at most once per session, priority 1.",
    ]


def test_operators_units_and_lists_in_operator_words():
    assert one("""
        - id: many
          when: dwell
          if:
            dwell_s: {gte: 30, lt: 600}
            pages: {lte: 3}
            cart_items: {ne: 0}
            checkout_step: [shipping, payment]
            utm_source: {not_in: [newsletter, partner]}
            lang: en
          then: {show: chat, template: chat.html, ttl_s: 45}
          limit: {per_session: 3}
          priority: -2
    """) == ("When a visitor stays on a page and the visible time on this page is at least 30 s and under 600 s "
             "and the number of pages viewed in the session is at most 3 "
             "and the number of items in their cart is not 0 "
             "and the checkout step is one of 'shipping' or 'payment' "
             "and the UTM source is not one of 'newsletter' or 'partner' "
             "and the browser language is 'en', "
             "show chat 'chat.html' (corner) for 45 s, at most 3 times per session, priority -2.")


def test_page_types_read_as_pages():
    assert one("""
        - id: a
          when: page_view
          if: {page_type: [cart, checkout, order-status]}
          then: {show: bar, template: bar.html, place: top}
          limit: {per_session: null}
    """) == ("When a visitor views a cart, checkout or order status page, show bar 'bar.html' (top), "
             "with no session cap, priority 0.")
    assert one("""
        - id: a
          when: idle
          if: {page_type: {ne: product}, scroll_pct: {gt: 20.5}}
          then: {show: overlay, template: offer.html}
          limit: {per_session: 2}
    """) == ("When a visitor goes idle on a page that is not a product page and the deepest scroll on this page "
             "is over 20.5%, show overlay 'offer.html' (center), at most twice per session, priority 0.")
    other = """
        - id: a
          when: click
          if: {page_type: other, click_target: newsletter}
          then: {show: offer, template: offer.html}
    """
    assert one(other) == ("When a visitor clicks on a page of no declared type and the clicked element "
                          "(data-kairos or id) is 'newsletter', show offer 'offer.html' (center), "
                          "at most once per session, priority 0.")
    # With the file's page types, `other` says which pages it leaves out.
    assert one(other, with_page_types=True).startswith(
        "When a visitor clicks on a page that is not a product, cart, checkout or order status page and")


def test_a_rule_without_conditions():
    assert one("""
        - id: thanks
          when: purchase
          then: {show: bar, template: bar.html}
    """) == "When a visitor places an order, show bar 'bar.html' (bottom), at most once per session, priority 0."


# Every event of the wire protocol has words of its own; a new event type fails here until it has.
PHRASES = {
    "page_view": "views a page",
    "dwell": "stays on a page",
    "scroll": "scrolls",
    "click": "clicks",
    "rage_click": "rage-clicks",
    "exit_intent": "shows exit intent",
    "idle": "goes idle",
    "idle_end": "comes back from idle",
    "hesitation": "hesitates over a form field",
    "copy": "copies text",
    "identify": "is identified by the store",
    "custom": "triggers a custom event",
    "cart": "updates their cart",
    "add_to_cart": "adds to cart",
    "checkout": "reaches a checkout step",
    "purchase": "places an order",
}


def test_every_event_type_has_a_phrase():
    assert set(EVENT_PHRASES) == set(EVENT_TYPES) == set(PHRASES)


@pytest.mark.parametrize("event", sorted(EVENT_TYPES))
def test_each_event_reads_as_what_the_visitor_does(event):
    assert one(f"""
        - id: r
          when: {event}
          then: {{show: offer, template: offer.html}}
    """) == f"When a visitor {PHRASES[event]}, show offer 'offer.html' (center), at most once per session, priority 0."


@pytest.mark.parametrize(("event", "words"), [("page_view", "views a product page"),
                                              ("dwell", "stays on a product page"),
                                              ("add_to_cart", "adds to cart on a product page")])
def test_the_page_type_joins_the_event(event, words):
    assert one(f"""
        - id: r
          when: {event}
          if: {{page_type: product}}
          then: {{show: offer, template: offer.html}}
    """).startswith(f"When a visitor {words}, show")


def test_attributes_it_does_not_know_do_not_break_it():
    """Rules grow fields (delays, cancel conditions, new caps, new condition forms): still a sentence."""
    then = SimpleNamespace(show="chat", template="chat.html", where="corner", ttl_s=0)
    rule = SimpleNamespace(
        id="later", when="add_to_cart", if_={"cart_value": {"crosses": 50}, "weather": "rain"},
        after=180.0, unless=["purchase", {"page_type": "checkout"}], offline="next_page",
        then=then, limit=SimpleNamespace(per_session=None), priority=5, colour="red",
    )
    assert describe(rule) == (
        "When a visitor adds to cart and their cart value matches crosses: 50 and the weather is 'rain', "
        "after 3 min (or on their next page if none is open then), "
        "unless the visitor places an order or they are on a checkout page, "
        "show chat 'chat.html' (corner), with no session cap, priority 5."
    )
    bare = SimpleNamespace(id="x", when="teleport")
    assert describe(bare) == "When a visitor triggers 'teleport', show nothing, priority 0."


def test_the_later_signals_read_as_words():
    assert one("""
        - id: r
          when: rage_click
          if: {identified: false, rage_clicks: {gte: 2}}
          then: {show: chat, template: chat.html}
    """) == ("When a visitor rage-clicks and the store has not identified them and the number of rage clicks "
             "this session is at least 2, show chat 'chat.html' (corner), at most once per session, priority 0.")
    assert one("""
        - id: r
          when: exit_intent
          if: {identified: true, exit_how: scroll}
          then: {show: offer, template: offer.html}
    """).startswith("When a visitor shows exit intent and the store has identified them and the way the exit intent showed is 'scroll', show")


def test_an_experiment_in_words_names_each_arm_its_share_and_what_it_changes():
    assert one("""
        - id: later-chat
          when: add_to_cart
          after: 5m
          then: {show: chat, template: chat.html, params: {agent: Sam, message: Hi}}
          experiment:
            id: chat-delay
            variants:
              soon: {weight: 3}
              late: {after: 10m, then: {params: {message: 'Still there?'}}}
    """).endswith("Experiment chat-delay, counted from the moment in every arm — soon 75%: as written; "
                  "late 25%: message 'Still there?', after 10 min.")

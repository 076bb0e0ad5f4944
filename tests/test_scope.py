"""Where an overlay lives (`scope`, `until`) and when its moment is over: the rules format, its words, and
the pure decision the server takes after each batch."""

from __future__ import annotations

import textwrap

import pytest

from kairos.moment import Placed, hide_why, placed
from kairos.rules import RulesError, parse_rules
from kairos.rules.describe import describe
from kairos.session import SessionState
from kairos.wire import Event

TEMPLATES = {"offer.html", "bar.html", "chat.html"}
BASE = """\
version: 1
page_types:
  product: /p/*
  cart: /basket
  checkout: [/checkout, /checkout/*]
rules:
"""


def ruleset(body: str):
    return parse_rules(BASE + textwrap.indent(textwrap.dedent(body), "  "), "test.yaml", TEMPLATES)


def rule(then: str, when: str = "page_view", if_: str = "{page_type: cart}"):
    rs = ruleset(f"""
        - id: r
          when: {when}
          if: {if_}
          then: {then}
        """)
    return rs.rules[0], rs


@pytest.mark.parametrize("kind,template,scope", [
    ("offer", "offer.html", "page"), ("bar", "bar.html", "page"), ("overlay", "offer.html", "page"),
    ("chat", "chat.html", "session"),
])
def test_each_kind_lives_where_the_docs_say_by_default(kind, template, scope):
    r, _ = rule(f"{{show: {kind}, template: {template}, params: {{body: x, message: x}}}}")
    assert r.then.lives == scope


def test_until_takes_events_and_conditions_like_unless():
    r, _ = rule("{show: offer, template: offer.html, params: {body: x}, until: [checkout, {cart_value: {gte: 100}}]}")
    assert r.then.until_events == ("checkout",)
    assert r.then.until_conditions[0]["cart_value"].gte == 100
    one, _ = rule("{show: offer, template: offer.html, params: {body: x}, until: {cart_value: {gte: 100}}}")
    assert len(one.then.until_conditions) == 1


@pytest.mark.parametrize("then,message", [
    ("{show: offer, template: offer.html, params: {body: x}, scope: pag}",
     "rules[0].then.scope: expected one of page, page_type or session, got 'pag' — did you mean `page`?"),
    ("{show: offer, template: offer.html, params: {body: x}, until: [chekout]}",
     "rules[0].then.until[0]: unknown event 'chekout' — did you mean `checkout`?"),
    ("{show: offer, template: offer.html, params: {body: x}, until: 3}",
     "rules[0].then.until: expected events (such as [checkout]) or conditions"),
])
def test_a_wrong_scope_or_until_is_named_in_plain_words(then, message):
    with pytest.raises(RulesError) as err:
        rule(then)
    assert message in str(err.value)


def test_kairos_check_says_how_long_the_overlay_stays():
    r, rs = rule("{show: offer, template: offer.html, params: {body: x}, until: [checkout]}")
    assert ("shown until the visitor leaves the page, or until the visitor reaches a checkout step"
            in describe(r, rs.page_types))
    r, rs = rule("{show: bar, template: bar.html, params: {message: x}, scope: page_type}", if_="{page_type: product}")
    assert "shown until the visitor leaves product pages" in describe(r, rs.page_types)
    r, rs = rule("{show: chat, template: chat.html, params: {message: x}, scope: session}")
    assert "shown until the visitor closes it" in describe(r, rs.page_types)


# --- the decision ------------------------------------------------------------------------

def state(path: str, page_type: str, **kw) -> SessionState:
    return SessionState(sid="s_12345678", path=path, page_type=page_type, **kw)


VIEW = [Event("page_view", 1, {"path": "/x"})]


def test_a_page_scoped_overlay_goes_when_the_visitor_moves_to_another_page():
    at = placed("page", state("/basket", "cart"), 0, 1000)
    assert hide_why(at, (), state("/checkout", "checkout"), VIEW, 2000) == "page"
    # the same page announced again (a router re-announcing it) is still the page
    assert hide_why(at, (), state("/basket", "cart"), VIEW, 2000) is None
    # no page view: nothing moved, whatever the state says
    assert hide_why(at, (), state("/checkout", "checkout"), [Event("scroll", 1, {"pct": 50})], 2000) is None


def test_a_page_type_scoped_overlay_stays_on_pages_of_its_type():
    at = placed("page_type", state("/p/1", "product"), 0, 1000)
    assert hide_why(at, (), state("/p/2", "product"), VIEW, 2000) is None
    assert hide_why(at, (), state("/basket", "cart"), VIEW, 2000) == "page_type"


def test_a_session_scoped_overlay_survives_navigation():
    at = placed("session", state("/p/1", "product"), 0, 1000)
    assert hide_why(at, (), state("/checkout", "checkout"), VIEW, 2000) is None


def test_until_an_event_or_a_condition():
    at = placed("session", state("/basket", "cart"), 0, 1000)
    assert hide_why(at, ["checkout"], state("/basket", "cart"), [Event("checkout", 1, {"step": "x"})], 2000) == "until"
    assert hide_why(at, ["checkout"], state("/basket", "cart"), [Event("add_to_cart", 1, {})], 2000) is None
    r, _ = rule("{show: offer, template: offer.html, params: {body: x}, until: {cart_value: {gte: 100}}}")
    until = r.then.until
    assert hide_why(at, until, state("/basket", "cart", cart_value=99.0), [Event("add_to_cart", 1, {})], 2000) is None
    assert hide_why(at, until, state("/basket", "cart", cart_value=120.0), [Event("add_to_cart", 1, {})], 2000) == "until"


def test_a_ttl_ends_the_moment():
    at = placed("session", state("/p/1", "product"), 5000, 1000)
    assert at.until_ms == 6000
    assert hide_why(at, (), state("/p/1", "product"), [], 5999) is None
    assert hide_why(at, (), state("/p/1", "product"), [], 6000) == "ttl"


def test_where_an_overlay_was_placed_is_kept_whole_through_the_session_hash():
    at = Placed("page", "/a|b/c", "cart", 123)
    assert Placed.unpack(at.pack()) == at
    assert Placed.unpack("garbage") is None


# --- the engines: where the overlay on screen lives is kept beside it --------------------

from kairos.caps import Caps  # noqa: E402

from test_engine_contract import engine, now, open_session, session_id  # noqa: E402,F401


async def test_the_engine_keeps_where_the_overlay_on_screen_lives_until_it_is_taken_down(engine):  # noqa: F811
    await open_session(engine)
    at = Placed("page", "/demo/products/linen-shirt", "product", 0).pack()
    assert await engine.claim_show(session_id("contract1"), "v_visitor01", "r", "r.1", Caps(0, 1), "{}", now(), at) == "ok"
    state = await engine.session(session_id("contract1"))
    assert (state.onscreen, state.onscreen_at) == ("r.1", at)
    assert await engine.record_feedback(session_id("contract1"), "r.1", "hidden", "{}", now())
    state = await engine.session(session_id("contract1"))
    assert (state.onscreen, state.onscreen_at) == (None, "")
    assert state.overlays["r.1"].status == "hidden"
    assert "r" not in state.dismissed, "taken down is not dismissed: the rule may show again"


async def test_a_newer_overlay_replaces_where_the_old_one_lived(engine):  # noqa: F811
    await open_session(engine)
    old, new = Placed("page", "/a", "cart", 0).pack(), Placed("session", "/a", "cart", 0).pack()
    assert await engine.claim_show(session_id("contract1"), "v_visitor01", "low", "low.1", Caps(0, 1), "{}", now(), old) == "ok"
    assert await engine.claim_show(session_id("contract1"), "v_visitor01", "high", "high.1", Caps(0, 5), "{}", now(), new) == "ok"
    state = await engine.session(session_id("contract1"))
    assert (state.onscreen, state.onscreen_at) == ("high.1", new)
    assert state.overlays["low.1"].status == "replaced"


# --- a real kairos serve: the server sends `hide` when the moment is over ------------------

import asyncio  # noqa: E402

from wsclient import Visitor  # noqa: E402

SHOP_RULES = """\
version: 1
page_types:
  cart: /shop/basket
  checkout: /shop/checkout
  product: /shop/p/*
rules:
  - id: basket-saved
    when: dwell
    if: {page_type: cart}
    then: {show: offer, template: offer.html, place: corner, params: {body: Your basket is saved.}}
  - id: free-shipping
    when: add_to_cart
    then: {show: bar, template: bar.html, scope: session, params: {message: Free shipping over 100.},
           until: [checkout]}
  - id: size-help
    when: dwell
    if: {page_type: product}
    then: {show: chat, template: chat.html, params: {message: Need help with the size}}
"""


def shop_rules(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text(SHOP_RULES)
    return path


def page_view(path: str) -> dict:
    return {"e": "page_view", "url": f"http://shop.test{path}", "path": path, "title": "Shop", "ref": "", "meta": {}}


def hidden(server, sid: str) -> list[dict]:
    return [e for e in server.session(sid)["log"] if e.get("kind") == "feedback" and e.get("act") == "hidden"]


@pytest.mark.parametrize("engine_kind", ["memory", "redis"])
async def test_a_page_scoped_offer_is_taken_down_when_the_visitor_moves_on(serve, tmp_path, engine_kind):
    server = serve(engine_kind, rules=shop_rules(tmp_path))
    v = await Visitor.arrive(server.ws_url, path="/shop/basket")
    await v.events({"e": "dwell", "ms": 5000})
    show = await v.expect("show")
    assert (show["rule"], show["scope"]) == ("basket-saved", "page")
    await v.events(page_view("/shop/checkout"))
    hide = await v.expect("hide")
    assert (hide["oid"], hide["why"]) == (show["oid"], "page")
    state = server.session_when(v.sid, lambda s: s["onscreen"] is None)
    assert state["overlays"][show["oid"]]["status"] == "hidden"
    assert [(e["oid"], e["why"]) for e in hidden(server, v.sid)] == [(show["oid"], "page")]
    assert server.metric("kairos_feedback_total", act="hidden") == 1
    # one hide per overlay: the next page view sends nothing more
    await v.events(page_view("/shop/p/1"))
    await v.events({"e": "dwell", "ms": 5000})
    assert (await v.expect("show"))["rule"] == "size-help", "the next frame is the next show, not a second hide"
    await v.leave()


@pytest.mark.parametrize("engine_kind", ["memory", "redis"])
async def test_an_until_event_takes_the_overlay_down_and_a_session_one_survives_navigation(serve, tmp_path, engine_kind):
    server = serve(engine_kind, rules=shop_rules(tmp_path))
    v = await Visitor.arrive(server.ws_url, path="/shop/p/1")
    await v.events({"e": "add_to_cart", "sku": "s1", "price": 20, "qty": 1})
    show = await v.expect("show")
    assert (show["rule"], show["scope"]) == ("free-shipping", "session")
    await v.events(page_view("/shop/basket"))
    state = server.session_when(v.sid, lambda s: s["pages"] == 2)
    assert state["onscreen"] == show["oid"], "a session-scoped bar stays across pages"
    await v.events({"e": "checkout", "step": "shipping"})
    hide = await v.expect("hide")
    assert (hide["oid"], hide["why"]) == (show["oid"], "until")
    await v.leave()


# --- staff take an overlay down from the session page ------------------------------------

import httpx  # noqa: E402


async def staff_post(server, path: str, **kw) -> httpx.Response:
    async with httpx.AsyncClient(headers=server.auth, timeout=5) as client:
        return await client.post(f"{server.base}{path}", **kw)


@pytest.mark.parametrize("engine_kind", ["memory", "redis"])
async def test_staff_take_the_overlay_on_screen_down_once(serve, tmp_path, engine_kind):
    server = serve(engine_kind, rules=shop_rules(tmp_path))
    v = await Visitor.arrive(server.ws_url, path="/shop/p/1")
    await v.events({"e": "dwell", "ms": 5000})
    show = await v.expect("show")
    assert show["scope"] == "session"
    r = await staff_post(server, f"/api/sessions/{v.sid}/hide", json={"oid": show["oid"]})
    assert r.status_code == 200 and r.json() == {"ok": True, "oid": show["oid"]}
    hide = await v.expect("hide")
    assert (hide["oid"], hide["why"]) == (show["oid"], "staff")
    assert [(e["oid"], e["why"]) for e in hidden(server, v.sid)] == [(show["oid"], "staff")]
    again = await staff_post(server, f"/api/sessions/{v.sid}/hide", json={"oid": show["oid"]})
    assert again.status_code == 409 and again.json()["error"] == "it is no longer on the visitor's screen"
    assert (await staff_post(server, f"/api/sessions/{v.sid}/hide", json={})).status_code == 400
    assert (await staff_post(server, "/api/sessions/s_nobody0000/hide", json={"oid": "x.1"})).status_code == 404
    # without the admin token or a login, nobody may
    anon = httpx.post(f"{server.base}/api/sessions/{v.sid}/hide", json={"oid": show["oid"]}, timeout=5)
    assert anon.status_code in (401, 403)
    await v.leave()


def test_the_decision_is_pure():
    import subprocess
    import sys

    code = ("import sys, kairos.moment\n"
            "print(sorted(m for m in ('redis', 'starlette', 'uvicorn', 'asyncio', 'httpx') if m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"

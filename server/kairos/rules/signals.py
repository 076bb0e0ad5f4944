"""What a rule's `if` can look at: named signals over the session and the event.

Each signal has a kind — "number", "text" or "bool" — so a rules file that
compares a text with a number is refused when it is loaded, not silently false
at run time.
"""

from __future__ import annotations

import time
from typing import Any, Callable
from urllib.parse import urlsplit

from ..session import SessionState
from ..wire import Event

Getter = Callable[[SessionState, Event | None, int], Any]

_CLICKS = ("click", "rage_click")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _local(s: SessionState, now_ms: int) -> time.struct_time:
    """The visitor's wall clock, from the UTC offset their browser reported."""
    return time.gmtime(now_ms / 1000 + s.tz * 60)


def _host(url: str) -> str:
    host = urlsplit(url).hostname or ""
    return host.removeprefix("www.")


def _of(*types: str, field: str) -> Getter:
    """A field of the triggering event, for events of these types; empty otherwise."""
    return lambda s, e, now: (e.fields.get(field) or "") if e is not None and e.type in types else ""


def _custom_count(s: SessionState, e: Event | None, now_ms: int) -> int:
    if e is None or e.type != "custom":
        return 0
    return s.custom.get(e.fields["name"], 0)


SIGNALS: dict[str, tuple[str, Getter, str]] = {
    # name: (kind, getter, what it means — shown by `kairos check`)
    "page_type": ("text", lambda s, e, now: s.page_type, "the page type"),
    "path": ("text", lambda s, e, now: s.path, "the page path"),
    "previous_page_type": ("text", lambda s, e, now: s.prev_page_type, "the page type they came from"),
    "previous_page_adds": ("number", lambda s, e, now: s.prev_page_adds, "their adds to cart on the page they came from"),
    "pages": ("number", lambda s, e, now: s.pages, "pages viewed in the session"),
    "dwell_s": ("number", lambda s, e, now: s.page_dwell_ms / 1000, "seconds on this page (visible)"),
    "session_dwell_s": ("number", lambda s, e, now: s.dwell_ms / 1000, "seconds on the site this session (visible)"),
    "scroll_pct": ("number", lambda s, e, now: s.scroll_pct, "deepest scroll on this page, in %"),
    "clicks": ("number", lambda s, e, now: s.clicks, "clicks this session"),
    "rage_clicks": ("number", lambda s, e, now: s.rage_clicks, "rage clicks this session"),
    "exit_intents": ("number", lambda s, e, now: s.exit_intents, "exit intents this session"),
    "exit_how": ("text", _of("exit_intent", field="how"), "how the exit intent showed (top, scroll, back, hidden)"),
    "idle_s": ("number", lambda s, e, now: s.idle_ms / 1000, "seconds idle"),
    "hesitations": ("number", lambda s, e, now: s.hesitations, "form fields hesitated over this session"),
    "hesitation_field": ("text", _of("hesitation", field="field"), "the form field hesitated over"),
    "copies": ("number", lambda s, e, now: s.copies, "copies this session"),
    "identified": ("bool", lambda s, e, now: bool(s.uid), "the store identified the visitor this session"),
    "custom_name": ("text", _of("custom", field="name"), "the custom event's name"),
    "custom_count": ("number", _custom_count, "custom events of this name this session"),
    "cart_value": ("number", lambda s, e, now: s.cart_value, "cart value"),
    "cart_items": ("number", lambda s, e, now: s.cart_items, "items in the cart"),
    "adds_to_cart": ("number", lambda s, e, now: s.adds, "adds to cart this session"),
    "checkout_step": ("text", lambda s, e, now: s.checkout_step, "the checkout step"),
    "purchases": ("number", lambda s, e, now: s.purchases, "orders this session"),
    "referrer": ("text", lambda s, e, now: s.referrer, "the referrer of the visit"),
    "utm_source": ("text", lambda s, e, now: s.utm.get("utm_source", ""), "the UTM source"),
    "utm_medium": ("text", lambda s, e, now: s.utm.get("utm_medium", ""), "the UTM medium"),
    "utm_campaign": ("text", lambda s, e, now: s.utm.get("utm_campaign", ""), "the UTM campaign"),
    "lang": ("text", lambda s, e, now: s.lang, "the browser language"),
    "referrer_host": ("text", lambda s, e, now: _host(s.referrer), "the site they came from"),
    "traffic": ("text", lambda s, e, now: s.traffic,
                "where the visit came from: search, social, email, paid, referral, internal or direct"),
    "device": ("text", lambda s, e, now: s.device, "their device"),
    "browser": ("text", lambda s, e, now: s.browser, "their browser"),
    "os": ("text", lambda s, e, now: s.os, "their operating system"),
    "country": ("text", lambda s, e, now: s.country, "their country"),
    "region": ("text", lambda s, e, now: s.region, "their region"),
    "local_hour": ("number", lambda s, e, now: _local(s, now).tm_hour, "the hour on their clock"),
    "local_weekday": ("text", lambda s, e, now: WEEKDAYS[_local(s, now).tm_wday], "the day on their clock"),
    "product": ("text", lambda s, e, now: (s.product or {}).get("name", ""), "the product last looked at"),
    "page_views_24h": ("number", lambda s, e, now: s.visitor.page_views_24h,
                       "their views of this page in the last 24 h (this one included)"),
    "type_views_24h": ("number", lambda s, e, now: s.visitor.type_views_24h,
                       "their views of pages of this type in the last 24 h (this one included)"),
    "visits": ("number", lambda s, e, now: s.visitor.sessions, "their visits (sessions, this one included)"),
    "visitor": ("text", lambda s, e, now: "returning" if s.visitor.returning else "new", "the visitor"),
    "click_target": ("text", lambda s, e, now: (e.fields.get("k") or e.fields.get("id") or "") if e and e.type in _CLICKS else "",
                     "the clicked element's data-kairos or id"),
    "click_text": ("text", _of("click", "rage_click", field="text"), "the clicked element's text"),
}


def getter(name: str) -> Getter:
    """A condition's getter: a built-in signal, else the intent score of that name (0 to 1, now)."""
    found = SIGNALS.get(name)
    return found[1] if found else (lambda s, e, now: s.score(name, now))

"""What a rule's `if` can look at: named signals over the session and the event.

Each signal has a kind — "number" or "text" — so a rules file that compares a
text with a number is refused when it is loaded, not silently false at run time.
"""

from __future__ import annotations

from typing import Any, Callable

from ..session import SessionState
from ..wire import Event

Getter = Callable[[SessionState, Event | None], Any]

SIGNALS: dict[str, tuple[str, Getter, str]] = {
    # name: (kind, getter, what it means — shown by `kairos check`)
    "page_type": ("text", lambda s, e: s.page_type, "the page type"),
    "path": ("text", lambda s, e: s.path, "the page path"),
    "pages": ("number", lambda s, e: s.pages, "pages viewed in the session"),
    "dwell_s": ("number", lambda s, e: s.page_dwell_ms / 1000, "seconds on this page (visible)"),
    "session_dwell_s": ("number", lambda s, e: s.dwell_ms / 1000, "seconds on the site this session (visible)"),
    "scroll_pct": ("number", lambda s, e: s.scroll_pct, "deepest scroll on this page, in %"),
    "clicks": ("number", lambda s, e: s.clicks, "clicks this session"),
    "exit_intents": ("number", lambda s, e: s.exit_intents, "exit intents this session"),
    "idle_s": ("number", lambda s, e: s.idle_ms / 1000, "seconds idle"),
    "cart_value": ("number", lambda s, e: s.cart_value, "cart value"),
    "cart_items": ("number", lambda s, e: s.cart_items, "items in the cart"),
    "adds_to_cart": ("number", lambda s, e: s.adds, "adds to cart this session"),
    "checkout_step": ("text", lambda s, e: s.checkout_step, "the checkout step"),
    "purchases": ("number", lambda s, e: s.purchases, "orders this session"),
    "referrer": ("text", lambda s, e: s.referrer, "the referrer of the visit"),
    "utm_source": ("text", lambda s, e: s.utm.get("utm_source", ""), "the UTM source"),
    "utm_medium": ("text", lambda s, e: s.utm.get("utm_medium", ""), "the UTM medium"),
    "utm_campaign": ("text", lambda s, e: s.utm.get("utm_campaign", ""), "the UTM campaign"),
    "lang": ("text", lambda s, e: s.lang, "the browser language"),
    "product": ("text", lambda s, e: (s.product or {}).get("name", ""), "the product last looked at"),
    "page_views_24h": ("number", lambda s, e: s.visitor.page_views_24h,
                       "views of this page by the visitor in the last 24 h, this one included"),
    "type_views_24h": ("number", lambda s, e: s.visitor.type_views_24h,
                       "views of pages of this type by the visitor in the last 24 h, this one included"),
    "visits": ("number", lambda s, e: s.visitor.sessions, "the visitor's sessions, this one included"),
    "visitor": ("text", lambda s, e: "returning" if s.visitor.returning else "new", "new or returning visitor"),
    "click_target": ("text", lambda s, e: (e.fields.get("k") or e.fields.get("id") or "") if e and e.type == "click" else "",
                     "the clicked element's data-kairos or id"),
}

"""Where an overlay lives, and when its moment is over.

Pure. A show records where the overlay was put up (`Placed`, kept in the
session beside the overlay on screen); each batch, `hide_why` says whether the
moment has passed and why, and the server takes the overlay down with a `hide`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from .rules.evaluate import condition_holds
from .rules.signals import getter
from .session import SessionState
from .wire import Event


@dataclass(frozen=True, slots=True)
class Placed:
    """The on-screen overlay's scope, and the page it was shown on."""

    scope: str
    path: str
    page_type: str
    until_ms: int = 0  # when its ttl ends (0: no ttl)

    def pack(self) -> str:
        # "|" cannot be in a scope or a page type, so only the path's own bars need care: it goes last
        return f"{self.scope}|{self.page_type}|{self.until_ms}|{self.path}"

    @classmethod
    def unpack(cls, text: str) -> "Placed | None":
        """The stored form back; None for an overlay shown before scopes were recorded."""
        parts = text.split("|", 3)
        if len(parts) != 4 or not parts[2].isdigit():
            return None
        scope, page_type, until_ms, path = parts
        return cls(scope, path, page_type, int(until_ms))


def placed(scope: str, state: SessionState, ttl_ms: int, now_ms: int) -> Placed:
    """Where a show puts its overlay: the session's current page, and its ttl's end."""
    return Placed(scope, state.path, state.page_type, now_ms + ttl_ms if ttl_ms > 0 else 0)


def hide_why(at: Placed, until: Sequence[Any], state: SessionState, events: Sequence[Event], now_ms: int) -> str | None:
    """Why the overlay on screen must go after this batch, or None while its moment lasts.

    `until`: the rule's `until` items (event names, maps of conditions);
    `state`: the session with the batch applied. A page view moves the page
    (a single-page store's route change included); the same path again (a
    reload of the route, a re-announce) is the same page.
    """
    if at.until_ms and now_ms >= at.until_ms:
        return "ttl"
    if any(e.type == "page_view" for e in events):
        if at.scope == "page" and state.path != at.path:
            return "page"
        if at.scope == "page_type" and state.page_type != at.page_type:
            return "page_type"
    for item in until:
        if isinstance(item, str):
            if any(e.type == item for e in events):
                return "until"
        elif all(condition_holds(cond, getter(name)(state, None, now_ms)) for name, cond in item.items()):
            return "until"
    return None

"""A score from a trained model: `purchase_intent: {model: model.json}` in the rules file.

Pure once loaded: the value of a session is the model's probability for the
session's feature row (sessions.py), the same row `kairos export-sessions`
writes, so a model trained on the export scores a live session as it scored
its training rows.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence

from .model import Model, sigmoid
from .sessions import features

if TYPE_CHECKING:
    from ..session import SessionState
    from ..wire import Event

# Columns shown when a model score is explained (the dashboard, kairos explain).
TOP = 6


@dataclass(frozen=True, eq=False)
class ModelScore:
    """A declared score that a model file computes."""

    name: str
    path: str  # as the rules file names it
    model: Model
    page_types: tuple[str, ...]

    def columns_read(self) -> list[str]:
        """The model's columns that a session's feature row has (the others are always missing)."""
        from ..session import SessionState

        have = features(SessionState(sid=""), self.page_types)
        return [f.column for f in self.model.features if f.column in have]

    def columns_missing(self) -> list[str]:
        """The model's columns no session has: the model always takes its branch for a missing value."""
        read = set(self.columns_read())
        return [f.column for f in self.model.features if f.column not in read]

    def row(self, state: "SessionState") -> dict[str, Any]:
        return features(state, self.page_types)

    def value(self, state: "SessionState") -> float:
        """The probability, 0..1, that the session ends in a purchase."""
        return self.model.predict(self.row(state))

    def explain(self, state: "SessionState", top: int | None = TOP) -> dict[str, Any]:
        """The score, the model's baseline and the columns that moved it most: [column, log-odds, the session's value]."""
        row = self.row(state)
        contributions = self.model.contributions(row)
        ranked = sorted(contributions.items(), key=lambda c: (-abs(c[1]), c[0]))
        raw = self.model.baseline + sum(contributions.values())
        shown = ranked[:top]
        return {"value": sigmoid(raw), "bias": self.model.baseline, "top": [[c, v, row.get(c)] for c, v in shown],
                "rest": sum(v for _, v in ranked[len(shown):]), "model": self.path}


def before_batch(state: "SessionState", events: Sequence["Event"], classify: Callable[[str, str], str]) -> "SessionState":
    """The session as a model saw it before this batch: the state now with the batch's counts taken back.

    What a crossing (`when: purchase_intent crosses 0.6`) compares the score
    now with. Visible time spent before the batch's first page view is taken
    from the page type the session was on: `prev_page_type` when the batch
    has one page view; with several (a single-page store's quick route
    changes) that type is no longer known and `other` stands in.
    """
    views = [e for e in events if e.type == "page_view"]
    if not views:
        page_type = state.page_type
    elif len(views) == 1:
        page_type = state.prev_page_type or "other"
    else:
        page_type = "other"
    start_type = page_type
    pages, dwell, adds, clicks, exits = state.pages, state.dwell_ms, state.adds, state.clicks, state.exit_intents
    type_pages, type_dwell = dict(state.type_pages), dict(state.type_dwell_ms)
    for e in events:
        f = e.fields
        match e.type:
            case "page_view":
                page_type = classify(f["path"], f.get("type", ""))
                pages -= 1
                type_pages[page_type] = type_pages.get(page_type, 0) - 1
            case "dwell":
                dwell -= f["ms"]
                type_dwell[page_type] = type_dwell.get(page_type, 0) - f["ms"]
            case "add_to_cart":
                adds -= 1
            case "click":
                clicks -= 1
            case "exit_intent":
                exits -= 1
    return dataclasses.replace(
        state, pages=pages, dwell_ms=dwell, adds=adds, clicks=clicks, exit_intents=exits,
        type_pages=type_pages, type_dwell_ms=type_dwell,
        page_type=start_type if views else state.page_type, rated={})

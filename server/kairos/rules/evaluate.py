"""Rule evaluation: a session state and an event batch in, decisions out. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from ..session import SessionState
from ..wire import Event
from .model import Compare, Condition, Rule, Ruleset
from .signals import getter


@dataclass(frozen=True, slots=True)
class Decision:
    """A rule that wants to show its nudge now, and the event that triggered it."""

    rule: Rule
    event: Event


def condition_holds(cond: Condition, value: Any) -> bool:
    if isinstance(cond, Compare):
        return cond.holds(value)
    if isinstance(cond, list):
        return value in cond
    return value == cond


def matches(rule: Rule, state: SessionState, event: Event | None, now_ms: int) -> bool:
    """True when every condition of the rule's `if` holds."""
    return all(condition_holds(cond, getter(name)(state, event, now_ms)) for name, cond in rule.if_.items())


def allowed(rule: Rule, state: SessionState) -> bool:
    """The session caps, as far as the state read with the batch shows them.

    The engine checks again atomically when it records the show; this check only
    spares it the round trip for rules that are plainly spent.
    """
    if rule.id in state.dismissed:
        return False
    cap = rule.limit.per_session
    return cap is None or state.fired.get(rule.id, 0) < cap


def evaluate(ruleset: Ruleset, state: SessionState, events: Sequence[Event], now_ms: int) -> list[Decision]:
    """Decisions for a batch, highest priority first, one per rule.

    `state` is the session after the batch was applied; `now_ms` is the time
    the visitor's clock conditions (local_hour, local_weekday) are read at.
    """
    decisions: dict[str, Decision] = {}
    for event in events:
        for rule in ruleset.by_event.get(event.type, ()):
            if rule.after is not None:
                continue  # delayed: its event arms a timer (rules.delayed), it does not show now
            if rule.id not in decisions and allowed(rule, state) and matches(rule, state, event, now_ms):
                decisions[rule.id] = Decision(rule, event)
    return sorted(decisions.values(), key=lambda d: -d.rule.priority)

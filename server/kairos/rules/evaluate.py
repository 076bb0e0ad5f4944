"""Rule evaluation: a session state and an event batch in, decisions out. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from ..intent.score import before_batch
from ..scores import added, signals_of, squash
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
    state.models = ruleset.models  # the scores trained models compute, as these rules declare them
    for event in events:
        for rule in ruleset.by_event.get(event.type, ()):
            if rule.after is not None:
                continue  # delayed: its event arms a timer (rules.delayed), it does not show now
            if rule.id not in decisions and allowed(rule, state) and matches(rule, state, event, now_ms):
                decisions[rule.id] = Decision(rule, event)
    for rule in crossed(ruleset, state, events, now_ms):
        if rule.id not in decisions and allowed(rule, state) and matches(rule, state, events[-1], now_ms):
            decisions[rule.id] = Decision(rule, events[-1])
    return sorted(decisions.values(), key=lambda d: -d.rule.priority)


def crossed(ruleset: Ruleset, state: SessionState, events: Sequence[Event], now_ms: int) -> list[Rule]:
    """The `<score> crosses <value>` rules whose score this batch lifted from below the value to it or above.

    The score before the batch is the score now less what the batch's signals
    added (they came now, so nothing of them has decayed yet).
    """
    if not events or not ruleset.crossings:
        return []
    state.models = ruleset.models
    defs = {d.name: d for d in ruleset.scores}
    signals = batch_signals(ruleset, events)
    earlier = None  # the session before the batch, as a model sees it; worked out once if a model is crossed
    out = []
    for rule, name, value in ruleset.crossings:
        model = ruleset.models.get(name)
        if model is not None:
            if earlier is None:
                earlier = before_batch(state, events, ruleset.classify)
            if model.value(earlier) < value <= state.score(name, now_ms):
                out.append(rule)
            continue
        after = state.scores.raw(name, now_ms)
        before = after - added(defs[name], signals)
        if squash(before) < value <= squash(after):
            out.append(rule)
    return out


def batch_signals(ruleset: Ruleset, events: Sequence[Event]) -> list[tuple[str, float]]:
    """The scoring signals of a batch's events, in order."""
    return [sig for ev in events for sig in signals_of(ev.type, ev.fields, _page_type(ruleset, ev))]


# A score move worth a line in the session's timeline, on the 0-1 scale.
MIN_LOGGED_MOVE = 0.05


def score_moves(ruleset: Ruleset, state: SessionState, events: Sequence[Event], now_ms: int,
                min_move: float = MIN_LOGGED_MOVE) -> list[dict[str, Any]]:
    """The scores this batch moved by at least `min_move`: before, after, and the signals that moved them most.

    Like `crossed`, the score before is the score now less what the batch added.
    """
    if not events or not ruleset.scores:
        return []
    signals = batch_signals(ruleset, events)
    out = []
    for d in ruleset.scores:
        by: dict[str, float] = {}
        for sig, amount in signals:
            if sig in d.weights:
                by[sig] = by.get(sig, 0.0) + d.weights[sig] * amount
        if not by:
            continue
        after_raw = state.scores.raw(d.name, now_ms)
        before, after = squash(after_raw - added(d, signals)), squash(after_raw)
        if abs(after - before) >= min_move:
            top = sorted(by.items(), key=lambda p: (-abs(p[1]), p[0]))[:3]
            out.append({"score": d.name, "before": round(before, 3), "after": round(after, 3),
                        "top": [[sig, round(v, 3)] for sig, v in top]})
    return out


def _page_type(ruleset: Ruleset, event: Event) -> str:
    return ruleset.classify(event.fields["path"], event.fields.get("type", "")) if event.type == "page_view" else ""


def explain(rule: Rule, state: SessionState, now_ms: int, paused: bool = False) -> dict[str, Any]:
    """Why a rule would or would not show its nudge to this session now, for the session view.

    Each condition with the session's value and whether it holds (a condition on
    the triggering event's fields reads empty here: it is read at the event),
    and what blocks the rule in this session whatever happens next, if anything.
    """
    from .describe import condition_words

    conditions = []
    for name, cond in rule.if_.items():
        value = getter(name)(state, None, now_ms)
        conditions.append({"name": name, "want": condition_words(name, cond), "value": value,
                           "ok": condition_holds(cond, value)})
    cap = rule.limit.per_session
    fired = state.fired.get(rule.id, 0)
    blocked = ("paused" if paused else "dismissed" if rule.id in state.dismissed
               else "capped" if cap is not None and fired >= cap else None)
    return {"rule": rule.id, "when": rule.when, "after_s": rule.after, "fired": fired, "per_session": cap,
            "conditions": conditions, "holds": all(c["ok"] for c in conditions), "blocked": blocked}

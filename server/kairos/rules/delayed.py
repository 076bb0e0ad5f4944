"""Delayed rules, the pure part: which timers a batch arms, and whether a due one still fires.

A timer remembers how many of its rule's cancelling events the session had
when it was armed. When it comes due, the session's counts say whether one of
those events happened since — whichever server process saw it — so cancelling
needs no message between processes and no race with the firing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Sequence

from ..session import SessionState
from ..wire import Event
from .evaluate import allowed, condition_holds, matches
from .model import Rule, Ruleset
from .signals import getter


@dataclass(frozen=True, slots=True)
class Timer:
    """A pending nudge of one rule for one session."""

    sid: str
    rule: str
    due_ms: int
    armed_ms: int
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.sid}|{self.rule}"

    def payload(self) -> str:
        return json.dumps({"armed": self.armed_ms, "due": self.due_ms, "counts": self.counts}, separators=(",", ":"))

    @classmethod
    def from_payload(cls, key: str, payload: str) -> "Timer":
        sid, _, rule = key.partition("|")
        d = json.loads(payload)
        return cls(sid, rule, int(d["due"]), int(d["armed"]), {k: int(v) for k, v in d["counts"].items()})


def timers_to_arm(
    ruleset: Ruleset, state: SessionState, events: Sequence[Event], now_ms: int, delay_scale: float = 1.0
) -> list[Timer]:
    """Timers the batch arms (or re-arms: a new arming restarts the delay).

    `delay_scale` shrinks every delay (tests and demos: 3 minutes at 0.005 is 0.9 s).

    `state` is the session after the batch. A cancelling event later in the same
    batch than the arming one means the moment has already passed.
    """
    out: list[Timer] = []
    state.models = ruleset.models
    for rule in ruleset.rules:
        if rule.after is None:
            continue
        last_arming = None
        for i, event in enumerate(events):
            if event.type == rule.when and matches(rule, state, event, now_ms):
                last_arming = i
        if last_arming is None or not allowed(rule, state):
            continue
        if any(e.type in rule.cancel_events for e in events[last_arming + 1:]):
            continue
        counts = {name: state.counts.get(name, 0) for name in rule.cancel_events}
        out.append(Timer(state.sid, rule.id, now_ms + int(rule.after * 1000 * delay_scale), now_ms, counts))
    return out


def cancelled_by(rule: Rule, timer: Timer, state: SessionState, now_ms: int) -> str | None:
    """Why a due timer must not fire any more, or None if it fires."""
    for name in rule.cancel_events:
        if state.counts.get(name, 0) > timer.counts.get(name, 0):
            return f"{name} since it was armed"
    for conditions in rule.cancel_conditions:
        if all(condition_holds(cond, getter(n)(state, None, now_ms)) for n, cond in conditions.items()):
            return "its unless conditions hold"
    if not allowed(rule, state):
        return "the session cap is spent or the visitor dismissed it"
    return None

"""Delayed rules, the pure part: which timers a batch arms, and whether a due one still fires.

A timer remembers how many of its rule's cancelling events the session had
when it was armed. When it comes due, the session's counts say whether one of
those events happened since — whichever server process saw it — so cancelling
needs no message between processes and no race with the firing.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from ..session import SessionState, log_entry
from ..wire import Event
from .describe import EVENT_PHRASES, condition_words
from .evaluate import allowed, condition_holds, matches
from .model import Rule, Ruleset
from .signals import getter

# What becomes of a timer, as the session's timeline says it (kind `timer`,
# field `outcome`): armed, then one of the others. `fired` is a nudge sent.
TIMELINE_OUTCOMES = ("armed", "fired", "held", "cancelled", "dropped", "kept", "capped", "replaced", "session_gone",
                     "rule_gone")


@dataclass(frozen=True, slots=True)
class Timer:
    """A pending nudge of one rule for one session."""

    sid: str
    rule: str
    due_ms: int
    armed_ms: int
    counts: dict[str, int] = field(default_factory=dict)
    # Times it came due with the visitor's page reconnecting, and was put back to wait.
    waits: int = 0

    @property
    def key(self) -> str:
        return f"{self.sid}|{self.rule}"

    @property
    def oid(self) -> str:
        """Its nudge's overlay id, the same at every attempt to fire it ("<rule>.<hex>", like any show's).

        A timer fired again after its first process died mid-way finds its show
        already claimed under this id (the caps counted once) and sends that one.
        """
        digest = hashlib.blake2s(f"{self.sid}|{self.rule}|{self.armed_ms}".encode(), digest_size=4).hexdigest()
        return f"{self.rule}.{digest}"

    def payload(self) -> str:
        d: dict[str, Any] = {"armed": self.armed_ms, "due": self.due_ms, "counts": self.counts}
        if self.waits:
            d["waits"] = self.waits
        return json.dumps(d, separators=(",", ":"))

    @classmethod
    def from_payload(cls, key: str, payload: str) -> "Timer":
        sid, _, rule = key.partition("|")
        d = json.loads(payload)
        return cls(sid, rule, int(d["due"]), int(d["armed"]), {k: int(v) for k, v in d["counts"].items()},
                   int(d.get("waits", 0)))


def timers_to_arm(
    ruleset: Ruleset, state: SessionState, events: Sequence[Event], now_ms: int, delay_scale: float = 1.0,
    delay_of: Callable[[Rule], float | None] | None = None,
) -> list[Timer]:
    """Timers the batch arms (or re-arms: a new arming restarts the delay).

    `delay_scale` shrinks every delay (tests and demos: 3 minutes at 0.005 is 0.9 s).
    `delay_of`: a rule's delay for this visitor (their experiment arm's), else `rule.after`.

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
        after = (delay_of(rule) if delay_of else None) or rule.after
        out.append(Timer(state.sid, rule.id, now_ms + int(after * 1000 * delay_scale), now_ms, counts))
    return out


def cancelled_by(rule: Rule, timer: Timer, state: SessionState, now_ms: int) -> str | None:
    """Which `unless` stops a due timer, in words for the timeline, or None if it fires."""
    for name in rule.cancel_events:
        if state.counts.get(name, 0) > timer.counts.get(name, 0):
            did = f"the visitor {EVENT_PHRASES[name]}" if name in EVENT_PHRASES else f"a '{name}' event came"
            return f"{did} after it was armed"
    for conditions in rule.cancel_conditions:
        if all(condition_holds(cond, getter(n)(state, None, now_ms)) for n, cond in conditions.items()):
            return " and ".join(condition_words(n, cond) for n, cond in conditions.items())
    return None


def spent(rule: Rule, state: SessionState) -> str | None:
    """Why the session no longer lets a due timer's nudge through (`capped`), or None."""
    if allowed(rule, state):
        return None
    return "dismissed" if rule.id in state.dismissed else "capped"


def armed_line(t: Timer) -> str:
    """The timeline's line for a timer armed: when (its `ts`) and when it is due."""
    return log_entry("timer", t.armed_ms, rule=t.rule, outcome="armed", due_ms=t.due_ms,
                     after_ms=t.due_ms - t.armed_ms)


def outcome_line(t: Timer, outcome: str, now_ms: int, **what: object) -> str:
    """The timeline's line for what became of a timer (TIMELINE_OUTCOMES), with how late it came due."""
    if t.waits:
        what = {"waited": t.waits, **what}
    return log_entry("timer", now_ms, rule=t.rule, outcome=outcome, due_ms=t.due_ms,
                     late_ms=max(0, now_ms - t.due_ms), **what)


def _seconds(ms: Any) -> str:
    return f"{int(ms or 0) / 1000:.1f} s"


def timeline_words(line: dict[str, Any]) -> str:
    """A timer's line of the timeline in words (`kairos explain`; the session page says the same)."""
    rule, outcome, why = line.get("rule", ""), line.get("outcome"), line.get("why")
    words = {
        "armed": f"armed, due in {_seconds(line.get('after_ms'))}",
        "fired": f"fired, {line.get('late_ms', 0)} ms late: shown",
        "held": f"fired, {line.get('late_ms', 0)} ms late: held out (an experiment's holdout), not shown",
        "cancelled": f"cancelled: {why}",
        "dropped": f"dropped: {why or 'no page open'}, and its rule drops nudges offline",
        "kept": "kept for the visitor's next page view (no page open)",
        "capped": f"came due, not shown: {why}",
        "replaced": "replaced: armed again before it came due",
        "session_gone": "came due after the session ended",
        "rule_gone": "came due, but its rule is no longer in force",
    }
    # Lines written before outcomes were logged say only that the timer came due.
    came_due = f"came due, {line.get('late_ms', 0)} ms late"
    # A timer that came due while the page was reconnecting waited for it (kairos.timers).
    waited = " (it waited for the visitor's page to reconnect)" if line.get("waited") and outcome != "armed" else ""
    return f"{rule} {words.get(outcome or '', came_due)}{waited}"

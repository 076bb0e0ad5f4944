"""Caps: how often a nudge may be shown, per session, per visitor, per rule and in all.

Pure. The memory engine runs these checks; lua/claim_show.lua runs the same
inside Redis, atomically with recording the show, so two processes cannot both
pass a cap with one place left.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True, slots=True)
class Window:
    """At most `max` in any `per_ms` (rolling)."""

    max: int
    per_ms: int


@dataclass(frozen=True, slots=True)
class Caps:
    """Everything that limits one rule's show. 0 / None: no such limit."""

    per_session: int = 0
    priority: int = 0
    per_visitor: Window | None = None  # this rule, one visitor
    all_per_visitor: Window | None = None  # every rule together, one visitor (the global cap)
    per_rule: Window | None = None  # this rule, all visitors (fixed windows)
    cooldown_ms: int = 0  # between two shows of this rule to one visitor


def in_window(times_ms: Sequence[int], window: Window, now_ms: int) -> int:
    return sum(1 for t in times_ms if t > now_ms - window.per_ms)


def visitor_verdict(caps: Caps, rule_times_ms: Sequence[int], all_times_ms: Sequence[int], rule_count: int, now_ms: int) -> str:
    """The visitor-wide and rule-wide checks: "ok" or which cap is spent.

    `rule_times_ms`: this visitor's shows of this rule; `all_times_ms`: of every
    rule; `rule_count`: shows of this rule to anyone in the current fixed window.
    """
    if caps.cooldown_ms and rule_times_ms and max(rule_times_ms) > now_ms - caps.cooldown_ms:
        return "cooldown"
    if caps.per_visitor and in_window(rule_times_ms, caps.per_visitor, now_ms) >= caps.per_visitor.max:
        return "visitor_capped"
    if caps.all_per_visitor and in_window(all_times_ms, caps.all_per_visitor, now_ms) >= caps.all_per_visitor.max:
        return "globally_capped"
    if caps.per_rule and rule_count >= caps.per_rule.max:
        return "rule_capped"
    return "ok"


def bucket(window: Window, now_ms: int) -> int:
    """The fixed window a rule-wide count belongs to."""
    return now_ms // window.per_ms

"""Intent scores: named, decaying sums of weighted signals, squashed to 0..1.

Sans-I/O. A score is declared in the rules file (`scores:`) with a half-life, a
bias and a weight per signal. Each signal's part of a score is kept on its own
in the session (`sp:<score>|<signal>` = "value t_ms half_life_ms"), so

    part(now) = part(t) * 2^-((now - t) / half_life)   (+ the weight, when the signal comes)
    score     = 1 / (1 + e^-(bias + sum of the parts))

and the parts are the score's explanation: which signals pushed it up or
down, and by how much, right now. The memory engine adds with `add_part`;
lua/apply.lua does the same arithmetic (exp, then multiply, then add, in the
same order) so both engines store the same doubles.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

# ln 2, written out so Python and Lua multiply by the very same double
LN2 = 0.6931471805599453
PART = "sp:"
BIAS = "sb:"


@dataclass(frozen=True)
class ScoreDef:
    """One declared score: its name, half-life, bias (log-odds with no signal) and weights."""

    name: str
    half_life_ms: int
    bias: float
    weights: Mapping[str, float] = field(default_factory=dict)


def signals_of(event_type: str, fields: Mapping[str, Any], page_type: str = "") -> list[tuple[str, float]]:
    """The signals an event gives, with their amounts: one per event, dwell per second.

    A page view is also `page_view.<page type>`; a custom event also `custom.<name>`.
    """
    if event_type == "dwell":
        return [("dwell_s", fields["ms"] / 1000)]
    out = [(event_type, 1.0)]
    if event_type == "page_view" and page_type:
        out.append((f"page_view.{page_type}", 1.0))
    elif event_type == "custom":
        out.append((f"custom.{fields['name']}", 1.0))
    return out


def score_ops(defs: Iterable[ScoreDef], signals: Iterable[tuple[str, float]], now_ms: int) -> list[tuple[str, str, str]]:
    """The engine ops that add these signals to the scores that weigh them.

    Signals of one batch come at one time, so a part gets one op with their sum
    (three clicks: one op of three times the weight), not one op each.
    """
    ops: list[tuple[str, str, str]] = []
    signals = list(signals)
    for d in defs:
        sums: dict[str, float] = {}
        for signal, amount in signals:
            w = d.weights.get(signal)
            if w:
                sums[signal] = sums.get(signal, 0.0) + w * amount
        ops += [("score", f"{PART}{d.name}|{signal}", f"{add!r} {now_ms} {d.half_life_ms}") for signal, add in sums.items()]
    return ops


def added(d: ScoreDef, signals: Iterable[tuple[str, float]]) -> float:
    """What these signals add to a score's log-odds at the moment they come."""
    return math.fsum(d.weights.get(signal, 0.0) * amount for signal, amount in signals)


def bias_ops(defs: Iterable[ScoreDef]) -> list[tuple[str, str, str]]:
    """Ops recording each score's bias with the session, so its state alone gives the score."""
    return [("set", f"{BIAS}{d.name}", repr(float(d.bias))) for d in defs]


def decayed(value: float, t_ms: int, now_ms: int, half_life_ms: int) -> float:
    """A part's value at now_ms, from its value at t_ms."""
    return value * math.exp(-(now_ms - t_ms) * LN2 / half_life_ms)


def add_part(stored: str | None, op_value: str) -> str:
    """A part after adding an op's weight: decay the stored value to the op's time, then add."""
    add_s, now_s, hl_s = op_value.split(" ")
    new = float(add_s)
    if stored:
        value_s, t_s, _ = stored.split(" ")
        new = decayed(float(value_s), int(t_s), int(now_s), int(hl_s)) + new
    return f"{new!r} {now_s} {hl_s}"


def squash(x: float) -> float:
    """The logistic function, without overflow for large negative x."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


@dataclass
class Scores:
    """A session's scores as stored: parts per score and signal, and each score's bias.

    The stored strings are read when a score is first asked for: most batches
    of a session never need its scores parsed.
    """

    stored: dict[str, str] = field(default_factory=dict)  # "score|signal" -> "value t_ms half_life_ms"
    stored_bias: dict[str, str] = field(default_factory=dict)
    _parts: dict[str, dict[str, tuple[float, int, int]]] | None = field(default=None, repr=False)

    @property
    def parts(self) -> dict[str, dict[str, tuple[float, int, int]]]:
        if self._parts is None:
            self._parts = {}
            for key, value in self.stored.items():
                name, _, signal = key.partition("|")
                v, t, hl = value.split(" ")
                self._parts.setdefault(name, {})[signal] = (float(v), int(t), int(hl))
        return self._parts

    def bias(self, name: str) -> float:
        """The score's log-odds with no signal (0 until the session has seen a page view since it was declared)."""
        return float(self.stored_bias.get(name, 0.0))

    def names(self) -> list[str]:
        return sorted(set(self.parts) | set(self.stored_bias))

    def contributions(self, name: str, now_ms: int) -> list[tuple[str, float]]:
        """Each signal's part of the score now (log-odds), largest effect first."""
        parts = [(sig, decayed(v, t, now_ms, hl)) for sig, (v, t, hl) in self.parts.get(name, {}).items()]
        return sorted(parts, key=lambda p: (-abs(p[1]), p[0]))

    def raw(self, name: str, now_ms: int) -> float:
        """The score's log-odds now: its bias plus every part, decayed to now."""
        return self.bias(name) + math.fsum(v for _, v in self.contributions(name, now_ms))

    def value(self, name: str, now_ms: int) -> float:
        """The score now, 0..1 (the bias alone for a score with no signal yet)."""
        return squash(self.raw(name, now_ms))

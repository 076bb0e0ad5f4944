"""Micro-moment rules: the file format, loading, and pure evaluation."""

from .delayed import Timer, cancelled_by, timers_to_arm
from .evaluate import Decision, evaluate, matches
from .model import OTHER, Problem, Rule, RulesError, Ruleset, load_rules, parse_rules
from .signals import SIGNALS

__all__ = [
    "OTHER", "SIGNALS", "Decision", "Problem", "Rule", "RulesError", "Ruleset", "Timer",
    "cancelled_by", "evaluate", "load_rules", "matches", "parse_rules", "timers_to_arm",
]

"""Which arm of an experiment a visitor is in. Pure.

A visitor's arm is drawn once, from a hash of (installation salt, experiment id,
visitor id) — the same on every process, engine and restart — and recorded under
the visitor (their `info` hash, with the visitor's TTL) at their first exposure.
From then on the record wins: changing the weights later moves only visitors who
have not reached the moment yet. (Ranges that only grow would keep assignments
without a record, but only for weight changes that grow every arm's range; a record
keeps any change honest, and costs one field per visitor per experiment.)
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Mapping, Sequence

from ..rules.model import HOLDOUT, Rule

# The whole program's holdout (the rules file's `holdout:`) is counted as this experiment.
PROGRAM = "*"
NUDGED = "nudged"


def salt_from(secret: bytes) -> bytes:
    """The installation's assignment salt, derived from its identify secret (kept in the state
    directory, shared by every process): visitors are not split alike on two installations."""
    return hmac.new(secret, b"kairos experiments", hashlib.sha256).digest()


def point(salt: bytes, experiment: str, vid: str) -> float:
    """Where a visitor falls in [0, 1) for an experiment: uniform, and independent between experiments."""
    digest = hashlib.blake2b(f"{experiment}\x00{vid}".encode(), key=salt[:64], digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def arm_at(arms: Sequence[tuple[str, float]], at: float) -> str:
    """The arm whose share covers `at`, the shares laid end to end in order."""
    edge = 0.0
    for name, share in arms:
        edge += share
        if at < edge:
            return name
    return arms[-1][0]  # `at` past the sum by rounding


def arm_of(rule: Rule, vid: str, salt: bytes, recorded: Mapping[str, str] = {}) -> str | None:
    """The arm of `rule`'s experiment the visitor is in, or None when it runs none.

    `recorded`: the visitor's recorded arms by experiment id (VisitorInfo.arms). An
    ended experiment shows its shipped arm (or the rule as written) to everyone.
    """
    x = rule.experiment
    if x is None:
        return None
    if not x.running:
        return x.shipped
    exp = rule.experiment_id or rule.id
    arms = x.arms()
    kept = recorded.get(exp)
    if kept is not None and (kept == HOLDOUT and x.holdout or kept in x.variants):
        return kept
    return arm_at(arms, point(salt, exp, vid))


def held_from_all(share: float, vid: str, salt: bytes, recorded: Mapping[str, str] = {}) -> bool:
    """Whether the visitor is in the whole program's holdout (the rules file's `holdout:`)."""
    if share <= 0:
        return False
    kept = recorded.get(PROGRAM)
    if kept is not None:
        return kept == HOLDOUT
    return point(salt, PROGRAM, vid) < share


def program_arms(share: float) -> tuple[tuple[str, float], ...]:
    """The program holdout's arms and shares, for its report."""
    return ((NUDGED, 1 - share), (HOLDOUT, share))

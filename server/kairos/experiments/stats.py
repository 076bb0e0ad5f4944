"""How an experiment's arms compare: lift, intervals that stay honest when read daily, sample-ratio checks. Pure.

Pure Python (math only): the server has no numpy or scipy at run time.

Peeking. A store reads its results every day and stops when one looks good. A
fixed-horizon test read that way is wrong far more often than its 5% says (in
tests/test_experiment_stats.py, 28% of A/A experiments read daily for 30 days
look "significant" at some point; 1.4% with the intervals here). So the
intervals are *confidence sequences*: valid at every look at once, however often
the results are read and whenever the experiment is stopped. The method is the
one behind Optimizely's Stats Engine and GrowthBook's sequential mode:

- Johari, Koomen, Pekelis & Walsh, "Peeking at A/B Tests: Why it matters, and
  what to do about it", KDD 2017 (the normal-mixture sequential probability
  ratio test, mSPRT);
- Waudby-Smith, Arbour, Sinha, Kennedy & Ramdas, "Time-uniform central limit
  theory and asymptotic confidence sequences" (arXiv:2103.06476, v7 2023): the
  asymptotic confidence sequence below (the normal mixture's boundary) and the
  choice of rho that makes it tightest at a chosen sample size;
- GrowthBook's gbstats (`sequential_interval_halfwidth`, `sequential_rho`,
  default `sequential_tuning_parameter` 5000), whose form and tuning we follow.

For an estimate with standard error `se` after N visitors (both arms):

    half-width = se * sqrt( 2 (N rho^2 + 1) / (N rho^2) * ln( sqrt(N rho^2 + 1) / alpha ) )
    rho        = sqrt( (-2 ln alpha + ln(1 - 2 ln alpha)) / TUNED_FOR_VISITORS )

Significance is decided on the absolute difference of the rates; the relative
lift's interval is that interval divided by the control's rate, so the two
always agree on "excludes 0" (see `compare`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

# The confidence sequence is tightest near this many exposed visitors (both arms);
# GrowthBook's default. It stays valid at every size; the tuning only moves where
# it is least wide (at 30,000 visitors a 30,000 tuning would be 4% narrower).
TUNED_FOR_VISITORS = 5_000
# Flag a sample-ratio mismatch when srm_p is below this: strict, because the check
# runs at every look and a false alarm sends the operator hunting for a bug.
SRM_ALPHA = 0.001
# Visitors per arm by which a true +20% lift on a 5% conversion rate is seen (the
# interval excludes 0) in at least 80% of experiments: about 86% at some daily look
# over 30 days, about 80% at the last look alone (20,000 simulated experiments).
# tests/test_experiment_stats.py checks it; docs/experiments.md quotes it.
DETECT_20_ON_5_PER_ARM = 17_000
# The baseline visitors_needed assumes while the control has no conversions yet.
ASSUMED_BASELINE = 0.05


@dataclass(frozen=True, slots=True)
class Arm:
    """What one arm of an experiment counted."""
    name: str
    exposed: int             # visitors who reached the moment (every arm, the holdout included)
    converted: int = 0       # of them, visitors who purchased within the attribution window after their first exposure
    revenue: float = 0.0     # purchase value credited to the arm, summed
    revenue_sq: float = 0.0  # sum of the squares of each credited purchase's value (for the variance)


@dataclass(frozen=True, slots=True)
class Comparison:
    """One arm against the control: conversion and revenue per exposed visitor, with always-valid intervals."""
    arm: str
    control: str
    rate: float                 # the arm's conversion rate, converted / exposed (0.0 when none exposed)
    control_rate: float
    lift: float | None          # rate / control_rate - 1; None when control_rate is 0
    low: float | None           # the always-valid (1 - alpha) interval on the lift (None when not computable)
    high: float | None
    significant: bool           # the interval excludes 0
    revenue_per_visitor: float  # revenue / exposed
    control_revenue_per_visitor: float
    revenue_lift: float | None  # the same for revenue per exposed visitor
    revenue_low: float | None
    revenue_high: float | None


def rho(alpha: float = 0.05, tuned_for: float = TUNED_FOR_VISITORS) -> float:
    """The mixture's spread that makes the two-sided sequence tightest at `tuned_for` visitors
    (Waudby-Smith et al.; gbstats `sequential_rho`)."""
    log_alpha = math.log(alpha)
    return math.sqrt((-2 * log_alpha + math.log(1 - 2 * log_alpha)) / tuned_for)


def half_width(se: float, visitors: int, alpha: float = 0.05) -> float:
    """Half-width of the (1 - alpha) confidence sequence around an estimate with standard error
    `se` after `visitors` exposed visitors (both arms)."""
    nr2 = visitors * rho(alpha) ** 2
    return se * math.sqrt(2 * (nr2 + 1) / nr2 * math.log(math.sqrt(nr2 + 1) / alpha))


def _rate_variance(converted: int, exposed: int) -> float:
    # Agresti & Caffo (2000): one conversion and one non-conversion added to each
    # arm, for the variance only. Without it 0 of 12 against 12 of 12 has zero
    # variance and a zero-width "certain" interval. At 5% it widens the interval
    # by 4% at 200 visitors an arm, 0.4% at 2,000.
    p = (min(max(converted, 0), exposed) + 1) / (exposed + 2)
    return p * (1 - p)


def _mean_variance(total: float, total_sq: float, exposed: int) -> float:
    # Per exposed visitor, non-buyers at zero: E[x^2] - E[x]^2. revenue_sq sums
    # squared purchases, not squared per-visitor totals, so a visitor who buys
    # twice in the window makes this a little low (a^2 + b^2 < (a + b)^2).
    mean = total / exposed
    return max(total_sq / exposed - mean * mean, 0.0)


def _relative(diff: float, se: float, visitors: int, base: float, alpha: float
              ) -> tuple[float | None, float | None, float | None]:
    # The absolute interval divided by the control's value: the same division as
    # the lift, so the relative interval excludes 0 exactly when the absolute one
    # does. It treats the control's value as known; at no difference that is what
    # the delta method gives too, and at +20% the delta method's would be about
    # 10% wider on the relative scale. (gbstats builds the relative sequence on
    # the delta-method variance instead.)
    if base <= 0:
        return None, None, None
    lift = diff / base
    if se <= 0 or visitors <= 0:
        return lift, None, None
    w = half_width(se, visitors, alpha)
    return lift, (diff - w) / base, (diff + w) / base


def compare(control: Arm, arm: Arm, alpha: float = 0.05) -> Comparison:
    """`arm` against `control`: conversion rates and revenue per exposed visitor, their relative
    lifts and (1 - alpha) always-valid intervals; None where there is nothing to divide by."""
    nc, na = control.exposed, arm.exposed
    if nc <= 0 or na <= 0:
        return Comparison(arm.name, control.name,
                          arm.converted / na if na > 0 else 0.0, control.converted / nc if nc > 0 else 0.0,
                          None, None, None, False,
                          arm.revenue / na if na > 0 else 0.0, control.revenue / nc if nc > 0 else 0.0,
                          None, None, None)
    visitors = nc + na
    rate, control_rate = arm.converted / na, control.converted / nc
    se = math.sqrt(_rate_variance(arm.converted, na) / na + _rate_variance(control.converted, nc) / nc)
    lift, low, high = _relative(rate - control_rate, se, visitors, control_rate, alpha)

    rpv, control_rpv = arm.revenue / na, control.revenue / nc
    revenue_se = math.sqrt(_mean_variance(arm.revenue, arm.revenue_sq, na) / na
                           + _mean_variance(control.revenue, control.revenue_sq, nc) / nc)
    revenue_lift, revenue_low, revenue_high = _relative(rpv - control_rpv, revenue_se, visitors, control_rpv, alpha)

    significant = low is not None and high is not None and (low > 0 or high < 0)
    return Comparison(arm.name, control.name, rate, control_rate, lift, low, high, significant,
                      rpv, control_rpv, revenue_lift, revenue_low, revenue_high)


def srm_p(observed: Sequence[int], weights: Sequence[float]) -> float:
    """p-value of a chi-square goodness-of-fit test of the exposure counts against the configured
    weights (sample-ratio mismatch); 1.0 when there is nothing to test."""
    if len(observed) != len(weights):
        raise ValueError(f"expected one weight per arm, got {len(observed)} counts and {len(weights)} weights")
    if any(w < 0 for w in weights):
        raise ValueError(f"expected weights of 0 or more, got {list(weights)}")
    total = sum(observed)
    weight = sum(weights)
    if total <= 0 or weight <= 0:
        return 1.0
    if any(w == 0 and o > 0 for o, w in zip(observed, weights)):
        return 0.0  # visitors in an arm that should get none: no test needed
    cells = [(o, w / weight * total) for o, w in zip(observed, weights) if w > 0]
    if len(cells) < 2:
        return 1.0
    x = sum((o - e) ** 2 / e for o, e in cells)
    return chi2_sf(x, len(cells) - 1)


def chi2_sf(x: float, dof: int) -> float:
    """P(X >= x) for X chi-square with `dof` degrees of freedom."""
    if x <= 0:
        return 1.0
    return _upper_gamma(dof / 2, x / 2)


def _upper_gamma(a: float, x: float) -> float:
    # The regularized upper incomplete gamma Q(a, x), as Numerical Recipes' gammq:
    # the series converges fast below x = a + 1, the continued fraction above.
    log_front = a * math.log(x) - x - math.lgamma(a)
    if x < a + 1:
        term = total = 1 / a
        ap = a
        for _ in range(1000):
            ap += 1
            term *= x / ap
            total += term
            if abs(term) < abs(total) * 1e-15:
                break
        return max(0.0, 1 - total * math.exp(log_front))
    # Modified Lentz's method.
    tiny = 1e-300
    b = x + 1 - a
    c = 1 / tiny
    d = 1 / b
    h = d
    for i in range(1, 1000):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1 / d
        step = d * c
        h *= step
        if abs(step - 1) < 1e-15:
            break
    return min(1.0, math.exp(log_front) * h)


def visitors_needed(control: Arm, arm: Arm, lift: float = 0.10, alpha: float = 0.05) -> int:
    """About how many MORE exposed visitors (both arms together) until the confidence sequence would
    exclude 0 if the true relative lift were `lift` at the control's current rate (a baseline of 5%
    when the control has no conversions yet); 0 when already significant."""
    if compare(control, arm, alpha).significant:
        return 0
    base = control.converted / control.exposed if control.exposed > 0 and control.converted > 0 else ASSUMED_BASELINE
    base = min(base, 1.0)
    diff = base * abs(lift)
    if diff <= 0:
        raise ValueError(f"expected a lift other than 0, got {lift}")
    # A 100% baseline cannot rise: look for the same step down instead.
    other = base + diff if base + diff <= 1 else base - diff
    now = control.exposed + arm.exposed
    share = control.exposed / now if control.exposed > 0 and arm.exposed > 0 else 0.5
    # The standard error after n visitors at this split is sqrt(spread / n).
    spread = base * (1 - base) / share + other * (1 - other) / (1 - share)

    def seen(n: int) -> bool:
        return half_width(math.sqrt(spread / n), n, alpha) <= diff

    # The half-width only shrinks as n grows, so the first n that sees it is found by halving.
    high = 2
    while not seen(high):
        high *= 2
        if high > 10**15:
            return high
    low = high // 2
    while high - low > 1:
        mid = (low + high) // 2
        if seen(mid):
            high = mid
        else:
            low = mid
    return max(0, high - now)


def _percent(x: float) -> str:
    v = x * 100
    text = f"{v:+.1f}%" if abs(round(v)) < 1 else f"{v:+.0f}%"
    return "0%" if text in ("+0.0%", "-0.0%") else text


def _about(n: int) -> str:
    # Two significant figures: "about 4,187" claims a precision the forecast has not.
    if n >= 100:
        digits = len(str(n)) - 2
        n = round(n, -digits)
    return f"{n:,}"


def verdict(c: Comparison, more_visitors: int, per_day: float, lift: float = 0.10) -> str:
    """The result in words, e.g. "B beats control: +12% conversion (+3% to +21%)", "B does worse than
    control: -9% conversion (-15% to -2%)", "not enough data: about 4,200 more exposed visitors (about
    6 days at today's rate) to see a 10% lift"; per_day is exposed visitors per day (both arms), 0 when
    unknown (then no days are given)."""
    numbers = (f"{_percent(c.lift)} conversion ({_percent(c.low)} to {_percent(c.high)})"
               if c.lift is not None and c.low is not None and c.high is not None else None)
    if c.significant and numbers is not None:
        return f"{c.arm} {'beats' if c.lift > 0 else 'does worse than'} {c.control}: {numbers}"
    if more_visitors > 0:
        days = ""
        if per_day > 0:
            n = more_visitors / per_day
            days = (" (less than a day at today's rate)" if n < 1 else
                    f" (about {math.ceil(n):,} day{'s' if math.ceil(n) != 1 else ''} at today's rate)")
        return (f"not enough data: about {_about(more_visitors)} more exposed visitors{days}"
                f" to see a {abs(lift) * 100:g}% lift")
    # Past the visitors a `lift` would need and still not significant: whatever
    # difference there is, is likely smaller than that; the interval says how small.
    if numbers is not None:
        return f"no clear difference: {numbers}"
    if c.control_rate == 0:
        return f"not enough data: {c.control} has no conversions yet"
    return "not enough data"


def history(days: Sequence[tuple[int, Arm, Arm]], alpha: float = 0.05) -> list[dict]:
    """For a chart of cumulative lift over time: given per-day (day_start_ms, control's counts that
    day, arm's counts that day), the cumulative comparison at the end of each day: [{"day": ms,
    "lift": .., "low": .., "high": .., "exposed": cumulative both arms}] (lift/low/high None when not
    computable). A day's counts should be of the visitors first exposed that day, so the sums count
    visitors once."""
    out: list[dict] = []
    totals = [[0, 0, 0.0, 0.0], [0, 0, 0.0, 0.0]]
    for day, control, arm in sorted(days, key=lambda d: d[0]):
        for t, a in zip(totals, (control, arm)):
            t[0] += a.exposed
            t[1] += a.converted
            t[2] += a.revenue
            t[3] += a.revenue_sq
        c = compare(Arm(control.name, *totals[0]), Arm(arm.name, *totals[1]), alpha)
        out.append({"day": day, "lift": c.lift, "low": c.low, "high": c.high,
                    "exposed": totals[0][0] + totals[1][0]})
    return out

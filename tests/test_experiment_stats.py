"""Experiment statistics, checked by simulation: daily peeking stays within its 5%, a real lift is
found at the sample size the docs quote, the intervals cover the truth at every look; and the
chi-square, the words and the edge cases. Pure: no Redis, no server.

numpy only draws the simulated traffic; every verdict comes from kairos.experiments.stats itself.
The figures printed here are the ones docs/experiments.md quotes.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from kairos.experiments.stats import (DETECT_20_ON_5_PER_ARM, SRM_ALPHA, TUNED_FOR_VISITORS, Arm, Comparison,
                                      chi2_sf, compare, half_width, history, rho, srm_p, verdict, visitors_needed)

SEED = 20260517
DAYS = 30
PER_ARM_PER_DAY = 200  # a small store's moment: 400 exposed visitors a day in a 50/50 experiment
BASE = 0.05


def daily_counts(rng: np.random.Generator, runs: int, per_day: np.ndarray, rate: float) -> np.ndarray:
    """Cumulative conversions at the end of each day, one row per simulated experiment."""
    return rng.binomial(per_day, rate, size=(runs, len(per_day))).cumsum(axis=1)


def comparisons(exposed: np.ndarray, control: np.ndarray, arm: np.ndarray, run: int) -> list[Comparison]:
    """compare() at each daily look of one simulated experiment."""
    return [compare(Arm("control", int(n), int(c)), Arm("B", int(n), int(b)))
            for n, c, b in zip(exposed, control[run], arm[run])]


def test_daily_peeking_at_an_aa_experiment_stays_within_5_percent() -> None:
    runs = 2_000
    rng = np.random.default_rng(SEED)
    per_day = np.full(DAYS, PER_ARM_PER_DAY)
    exposed = per_day.cumsum()
    control = daily_counts(rng, runs, per_day, BASE)
    arm = daily_counts(rng, runs, per_day, BASE)

    sequential = sum(any(c.significant for c in comparisons(exposed, control, arm, r)) for r in range(runs)) / runs

    # What the same daily looks give with a fixed-horizon two-proportion z-test (pooled, |z| > 1.96).
    pc, pb = control / exposed, arm / exposed
    pooled = (control + arm) / (2 * exposed)
    se = np.sqrt(pooled * (1 - pooled) * 2 / exposed)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(se > 0, (pb - pc) / se, 0.0)
    naive = float((np.abs(z) > 1.959963984540054).any(axis=1).mean())

    figures = (f"A/A, {runs:,} experiments, {PER_ARM_PER_DAY} exposed visitors per arm per day at {BASE:.0%}, "
               f"read daily for {DAYS} days (seed {SEED}): ever significant {sequential:.2%} with the confidence "
               f"sequence, {naive:.2%} with a fixed-horizon z-test")
    print("\n" + figures)
    assert sequential <= 0.05, figures
    assert naive >= sequential + 0.10, figures


def test_a_20_percent_lift_on_5_percent_is_found_at_the_documented_sample_size() -> None:
    # DETECT_20_ON_5_PER_ARM is the figure docs/experiments.md quotes: read daily for 30 days until
    # each arm has that many exposed visitors, the interval should exclude 0 at some look in >= 80%.
    runs = 500
    rng = np.random.default_rng(SEED + 1)
    exposed = np.round(np.arange(1, DAYS + 1) * DETECT_20_ON_5_PER_ARM / DAYS).astype(int)
    per_day = np.diff(exposed, prepend=0)
    control = daily_counts(rng, runs, per_day, BASE)
    arm = daily_counts(rng, runs, per_day, BASE * 1.2)

    any_look = last_look = wrong_way = 0
    for r in range(runs):
        looks = comparisons(exposed, control, arm, r)
        any_look += any(c.significant and c.lift > 0 for c in looks)
        last_look += looks[-1].significant and looks[-1].lift > 0
        wrong_way += any(c.significant and c.lift < 0 for c in looks)

    figures = (f"+20% on {BASE:.0%}, {runs} experiments, {DETECT_20_ON_5_PER_ARM:,} exposed visitors per arm read "
               f"daily over {DAYS} days (seed {SEED + 1}): found at some look in {any_look / runs:.1%}, at the last "
               f"look in {last_look / runs:.1%}, the wrong way round in {wrong_way / runs:.1%}")
    print("\n" + figures)
    assert any_look / runs >= 0.80, figures
    assert wrong_way == 0, figures


def test_the_intervals_cover_the_true_difference_at_every_look() -> None:
    runs = 1_000
    rng = np.random.default_rng(SEED + 2)
    per_day = np.full(DAYS, PER_ARM_PER_DAY)
    exposed = per_day.cumsum()
    true_lift = 0.10
    true_difference = BASE * true_lift
    control = daily_counts(rng, runs, per_day, BASE)
    arm = daily_counts(rng, runs, per_day, BASE * (1 + true_lift))

    covered = covered_relative = 0
    for r in range(runs):
        looks = comparisons(exposed, control, arm, r)
        # Every look has conversions in control at this traffic, so every interval is there to check.
        assert all(c.low is not None and c.high is not None for c in looks)
        # The relative interval is the absolute one over the control's rate: undo that to check the difference.
        covered += all(c.low * c.control_rate <= true_difference <= c.high * c.control_rate for c in looks)
        covered_relative += all(c.low <= true_lift <= c.high for c in looks)

    figures = (f"+10% on {BASE:.0%}, {runs:,} experiments read daily for {DAYS} days (seed {SEED + 2}): the interval "
               f"held the true difference at every look in {covered / runs:.1%}, the true relative lift in "
               f"{covered_relative / runs:.1%}")
    print("\n" + figures)
    assert covered / runs >= 0.95, figures


def test_the_revenue_intervals_cover_the_true_revenue_per_visitor_at_every_look() -> None:
    # Order values are log-normal (median 40, mean about 55): skewed, as a shop's are.
    runs = 400
    rng = np.random.default_rng(SEED + 3)
    mu, sigma = math.log(40), 0.8
    order = math.exp(mu + sigma**2 / 2)
    rates = (BASE, BASE * 1.1)
    true_difference = (rates[1] - rates[0]) * order

    def cumulative(rate: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        buyers = rng.binomial(PER_ARM_PER_DAY, rate, size=(runs, DAYS))
        values = rng.lognormal(mu, sigma, size=int(buyers.sum()))
        # Sum each (experiment, day)'s own buyers' values, in order.
        starts = np.concatenate([[0], buyers.ravel().cumsum()[:-1]])
        sums = np.add.reduceat(np.append(values, 0.0), starts)[: buyers.size] * (buyers.ravel() > 0)
        squares = np.add.reduceat(np.append(values**2, 0.0), starts)[: buyers.size] * (buyers.ravel() > 0)
        return (buyers.cumsum(axis=1), sums.reshape(runs, DAYS).cumsum(axis=1),
                squares.reshape(runs, DAYS).cumsum(axis=1))

    control, arm = cumulative(rates[0]), cumulative(rates[1])
    exposed = np.full(DAYS, PER_ARM_PER_DAY).cumsum()
    covered = 0
    for r in range(runs):
        ok = True
        for d in range(DAYS):
            n = int(exposed[d])
            c = compare(Arm("control", n, int(control[0][r, d]), float(control[1][r, d]), float(control[2][r, d])),
                        Arm("B", n, int(arm[0][r, d]), float(arm[1][r, d]), float(arm[2][r, d])))
            base = c.control_revenue_per_visitor
            ok = ok and c.revenue_low * base <= true_difference <= c.revenue_high * base
        covered += ok
    figures = (f"revenue per visitor, +10% on {BASE:.0%} with log-normal orders, {runs} experiments read daily for "
               f"{DAYS} days (seed {SEED + 3}): covered at every look in {covered / runs:.1%}")
    print("\n" + figures)
    assert covered / runs >= 0.95, figures


def test_the_half_width_is_gbstats_form() -> None:
    # gbstats: s2 = se^2 * n, half-width = sqrt(s2) * sqrt(2 (n rho^2 + 1) ln(sqrt(n rho^2 + 1) / alpha) / (n rho)^2),
    # rho = sqrt((-2 ln alpha + ln(-2 ln alpha + 1)) / N) with N = 5000 by default.
    assert TUNED_FOR_VISITORS == 5_000
    assert rho(0.05) == pytest.approx(0.03984006677137368, rel=1e-12)
    for se, n in [(0.004, 12_000), (0.01, 400), (2.5, 100_000)]:
        r = rho(0.05)
        expected = math.sqrt(se**2 * n) * math.sqrt(2 * (n * r**2 + 1) * math.log(math.sqrt(n * r**2 + 1) / 0.05)
                                                    / (n * r) ** 2)
        assert half_width(se, n) == pytest.approx(expected, rel=1e-12)
    # Wider than the fixed-horizon 1.96 everywhere, tightest relative to it near the tuning.
    factors = {n: half_width(1.0, n) for n in (500, 5_000, 50_000)}
    assert all(f > 1.96 for f in factors.values())
    assert factors[5_000] == pytest.approx(3.0352089903762534, rel=1e-12)


def test_compare_on_counted_numbers() -> None:
    c = compare(Arm("control", 5_000, 250, 13_750.0, 1_000_000.0), Arm("B", 5_000, 350, 19_250.0, 1_400_000.0))
    assert (c.arm, c.control, c.rate, c.control_rate) == ("B", "control", 0.07, 0.05)
    assert c.lift == pytest.approx(0.4)
    assert c.low < c.lift < c.high and c.low > 0 and c.significant
    assert (c.revenue_per_visitor, c.control_revenue_per_visitor) == (3.85, 2.75)
    assert c.revenue_lift == pytest.approx(0.4)
    assert c.revenue_low < c.revenue_lift < c.revenue_high
    # The same rates on a tenth of the visitors: the interval holds 0.
    small = compare(Arm("control", 500, 25), Arm("B", 500, 35))
    assert small.lift == pytest.approx(0.4) and small.low < 0 < small.high and not small.significant
    # 250 and 350 of 5,000: a difference of 0.02, standard error 0.00475, half-width 3.06 of those.
    assert verdict(c, 0, 0) == "B beats control: +40% conversion (+11% to +69%)"
    assert verdict(compare(Arm("control", 5_000, 350), Arm("B", 5_000, 250)), 0, 0) == \
        "B does worse than control: -29% conversion (-49% to -8%)"


def test_chi_square_tail_matches_reference_values() -> None:
    # scipy.stats.chi2.sf(x, dof), scipy 1.17.1.
    reference = [(3.84, 1, 0.05004352124870519), (5.99, 2, 0.05003662708658629), (13.82, 2, 0.0009977577964843118),
                 (16.27, 3, 0.0009982232399054186), (0.5, 1, 0.47950012218695337), (1, 5, 0.9625657732472964),
                 (30, 10, 0.000856641210775301), (100, 80, 0.064570368921133), (0.01, 3, 0.9997348349413444),
                 (200, 3, 4.218541107192018e-43), (16, 1, 6.334248366623988e-05)]
    for x, dof, p in reference:
        assert chi2_sf(x, dof) == pytest.approx(p, rel=1e-9), (x, dof)
    # Closed forms, across both of the incomplete gamma's branches.
    for x in np.linspace(0.05, 60, 40):
        assert chi2_sf(x, 1) == pytest.approx(math.erfc(math.sqrt(x / 2)), rel=1e-9, abs=1e-300)
        assert chi2_sf(x, 2) == pytest.approx(math.exp(-x / 2), rel=1e-9)
        assert chi2_sf(x, 4) == pytest.approx(math.exp(-x / 2) * (1 + x / 2), rel=1e-9)
    assert chi2_sf(0, 3) == 1.0


def test_sample_ratio_mismatch() -> None:
    rng = np.random.default_rng(SEED + 4)
    weights = [0.45, 0.45, 0.10]
    drawn = np.bincount(rng.choice(3, size=100_000, p=weights), minlength=3).tolist()
    p = srm_p(drawn, weights)
    print(f"\nSRM: {drawn} drawn 45/45/10 (seed {SEED + 4}): p = {p:.3f}")
    assert p > 0.01, (drawn, p)
    assert srm_p(drawn, [45, 45, 10]) == pytest.approx(p)  # weights need not sum to 1
    skewed = srm_p([5_200, 4_800], [0.5, 0.5])
    assert skewed < SRM_ALPHA == 0.001
    assert skewed == pytest.approx(6.334248366623988e-05, rel=1e-9)  # chi-square 16 on 1 degree of freedom
    assert srm_p([5_000, 5_000], [1, 1]) == 1.0
    assert srm_p([0, 0], [0.5, 0.5]) == 1.0
    assert srm_p([10], [1.0]) == 1.0
    assert srm_p([500, 500, 3], [0.5, 0.5, 0.0]) == 0.0  # visitors in an arm given no share
    assert srm_p([500, 480, 0], [0.5, 0.5, 0.0]) == srm_p([500, 480], [0.5, 0.5])
    with pytest.raises(ValueError):
        srm_p([1, 2], [1.0])


def test_verdict_words() -> None:
    def made(lift: float | None, low: float | None, high: float | None, significant: bool) -> Comparison:
        return Comparison("B", "control", 0.0, 0.05, lift, low, high, significant, 0.0, 0.0, None, None, None)

    assert verdict(made(0.12, 0.03, 0.21, True), 0, 700) == "B beats control: +12% conversion (+3% to +21%)"
    assert verdict(made(-0.09, -0.15, -0.02, True), 0, 700) == \
        "B does worse than control: -9% conversion (-15% to -2%)"
    unsure = made(0.04, -0.05, 0.13, False)
    assert verdict(unsure, 4_187, 700) == \
        "not enough data: about 4,200 more exposed visitors (about 6 days at today's rate) to see a 10% lift"
    assert verdict(unsure, 4_187, 0) == "not enough data: about 4,200 more exposed visitors to see a 10% lift"
    assert verdict(unsure, 650, 700, lift=0.2) == \
        "not enough data: about 650 more exposed visitors (less than a day at today's rate) to see a 20% lift"
    assert verdict(unsure, 41, 40, lift=0.05) == \
        "not enough data: about 41 more exposed visitors (about 2 days at today's rate) to see a 5% lift"
    assert verdict(unsure, 1_000, 1_000) == \
        "not enough data: about 1,000 more exposed visitors (about 1 day at today's rate) to see a 10% lift"
    assert verdict(made(0.004, -0.031, 0.039, False), 0, 700) == "no clear difference: +0.4% conversion (-3% to +4%)"
    no_conversions = Comparison("B", "control", 0.03, 0.0, None, None, None, False, 0.0, 0.0, None, None, None)
    assert verdict(no_conversions, 0, 0) == "not enough data: control has no conversions yet"
    assert verdict(no_conversions, 2_500, 500) == \
        "not enough data: about 2,500 more exposed visitors (about 5 days at today's rate) to see a 10% lift"


def test_visitors_needed_falls_as_data_comes_in() -> None:
    # Control at 5%, B at 6% on the nose, with more and more visitors; forecast for a 10% lift.
    needed = []
    significant_at = None
    for n in range(1_000, 40_001, 1_000):
        control, arm = Arm("control", n, n // 20), Arm("B", n, n * 6 // 100)
        needed.append(visitors_needed(control, arm))
        if significant_at is None and compare(control, arm).significant:
            significant_at = n
    assert significant_at is not None
    positive = [v for v in needed if v > 0]
    assert positive == needed[: len(positive)]  # positive until significant, then 0 from there on
    assert all(a - b == 2_000 for a, b in zip(positive, positive[1:]))  # 1,000 more an arm, 2,000 fewer to go
    assert needed.index(0) == (significant_at - 1_000) // 1_000


def test_visitors_needed_is_when_the_lift_would_show() -> None:
    # From nothing: the forecast for +20% on the assumed 5%. At that many visitors, counts exactly at 5%
    # and 6% are just significant; 5% fewer, not yet.
    total = visitors_needed(Arm("control", 0), Arm("B", 0), lift=0.20)
    print(f"\nvisitors_needed for +20% on 5%, from nothing: {total:,} (both arms)")

    def at(n: int) -> bool:
        return compare(Arm("control", n, round(n * 0.05)), Arm("B", n, round(n * 0.06))).significant

    assert at(round(total * 1.05 / 2)) and not at(round(total * 0.95 / 2))
    assert visitors_needed(Arm("control", 0), Arm("B", 0)) > total  # a 10% lift takes more
    # Data in hand counts: halfway there, about half is left.
    half = total // 2
    assert visitors_needed(Arm("control", half // 2, 0), Arm("B", half - half // 2, 0), lift=0.20) == total - half


def test_history_is_the_cumulative_comparison() -> None:
    day = 86_400_000
    days = [(3 * day, Arm("control", 400, 22, 1_000.0, 90_000.0), Arm("B", 410, 25, 1_200.0, 95_000.0)),
            (1 * day, Arm("control", 0), Arm("B", 0)),
            (2 * day, Arm("control", 380, 19, 900.0, 80_000.0), Arm("B", 390, 27, 1_300.0, 99_000.0))]
    rows = history(days)
    assert [r["day"] for r in rows] == [day, 2 * day, 3 * day]
    assert rows[0] == {"day": day, "lift": None, "low": None, "high": None, "exposed": 0}
    assert [r["exposed"] for r in rows] == [0, 770, 1_580]
    c = compare(Arm("control", 780, 41, 1_900.0, 170_000.0), Arm("B", 800, 52, 2_500.0, 194_000.0))
    assert rows[2] == {"day": 3 * day, "lift": c.lift, "low": c.low, "high": c.high, "exposed": 1_580}
    assert history([]) == []


@pytest.mark.parametrize("control, arm", [
    (Arm("control", 0), Arm("B", 0)),
    (Arm("control", 0), Arm("B", 300, 20, 500.0, 20_000.0)),
    (Arm("control", 300, 20), Arm("B", 0)),
    (Arm("control", 1_000, 0), Arm("B", 1_000, 30, 900.0, 40_000.0)),
    (Arm("control", 1_000, 0), Arm("B", 1_000, 0)),
    (Arm("control", 100, 100, 5_000.0, 300_000.0), Arm("B", 100, 100, 5_000.0, 300_000.0)),
    (Arm("control", 100, 100), Arm("B", 100, 50)),
    (Arm("control", 1, 1), Arm("B", 1, 0)),
    (Arm("control", 10, 12), Arm("B", 10, 3)),  # more conversions than exposures: bad counters, no crash
])
def test_edge_cases_give_answers_not_exceptions(control: Arm, arm: Arm) -> None:
    c = compare(control, arm)
    if control.exposed == 0 or arm.exposed == 0 or control.converted == 0:
        assert (c.lift, c.low, c.high, c.significant) == (None, None, None, False)
    else:
        assert c.lift is not None and c.low is not None and c.high is not None
        assert c.significant == (c.low > 0 or c.high < 0)
        assert c.low <= c.lift <= c.high
    if control.revenue == 0:
        assert (c.revenue_lift, c.revenue_low, c.revenue_high) == (None, None, None)
    more = visitors_needed(control, arm)
    assert isinstance(more, int) and more >= 0
    assert isinstance(verdict(c, more, 50), str)
    assert len(history([(0, control, arm)])) == 1
    assert srm_p([control.exposed, arm.exposed], [0.5, 0.5]) <= 1.0


def test_edge_case_values() -> None:
    nothing = compare(Arm("control", 0), Arm("B", 0))
    assert (nothing.rate, nothing.control_rate, nothing.revenue_per_visitor) == (0.0, 0.0, 0.0)
    assert verdict(nothing, visitors_needed(Arm("control", 0), Arm("B", 0)), 0).startswith("not enough data: about ")
    # Every visitor converting in both arms: no difference, and not a zero-width certainty.
    everyone = compare(Arm("control", 100, 100), Arm("B", 100, 100))
    assert everyone.lift == 0 and everyone.low < 0 < everyone.high and not everyone.significant
    # Everyone against half: a drop big enough to be significant even at 100 visitors an arm.
    half = compare(Arm("control", 100, 100), Arm("B", 100, 50))
    assert half.lift == -0.5 and half.significant and half.high < 0
    # Twelve of twelve against one of twelve is not certainty at 24 visitors.
    few = compare(Arm("control", 12, 1), Arm("B", 12, 12))
    assert few.lift == 11 and few.low < 0 and not few.significant
    # Revenue with no purchases in the arm: its variance is 0, the control's carries the interval.
    none_bought = compare(Arm("control", 1_000, 50, 2_500.0, 150_000.0), Arm("B", 1_000, 0))
    assert none_bought.revenue_lift == -1.0 and none_bought.revenue_high < 0

"""An experiment's results as the dashboard and `kairos experiments` show them. Pure.

The engines count per arm and per day ("<experiment>@<arm>|<counter>", engine.base.arm_field):
`exposed` (visitors, at their first exposure), `shown` (shows sent), `clicked`, `dismissed`,
`converted` (visitors, at their first purchase within the attribution window after their first
exposure), `revenue` and `revenue_sq` (cents, and cents squared, of each purchase credited) and
`left` (visitors who left within LEFT_WITHIN_S of being shown the nudge, or held out from it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from ..rules.model import HOLDOUT, Ruleset
from . import stats
from .assign import NUDGED, PROGRAM, program_arms

COUNTERS = ("exposed", "shown", "clicked", "dismissed", "converted", "revenue", "revenue_sq", "left")
# A visitor who leaves this soon after the moment is counted as `left` (a guardrail).
LEFT_WITHIN_S = 10
DAY_MS = 24 * 3600 * 1000
# The lift `verdict` and `visitors_needed` size the wait for.
WATCHED_LIFT = 0.10

Days = Mapping[int, Mapping[str, int]]


@dataclass(frozen=True, slots=True)
class Plan:
    """An experiment as the rules file sets it out."""

    id: str
    rule: str  # "" for the whole program's holdout
    arms: tuple[tuple[str, float], ...]  # (arm, share), shares summing to 1
    control: str  # the arm the others are compared with: the holdout, else the first variant
    running: bool = True
    ended: str | None = None
    shipped: str | None = None


def plans(rules: Ruleset, days: Days = {}) -> list[Plan]:
    """Every experiment the rules set out, the whole program's holdout first, in the file's order.

    The program's holdout stopped (its share set to 0) stays listed while `days` holds its
    counts, as ended: its shares are then those it counted (the set ones are gone).
    """
    out = []
    if rules.holdout:
        out.append(Plan(PROGRAM, "", program_arms(rules.holdout), HOLDOUT))
    elif any(key.startswith(f"{PROGRAM}@") for day in days.values() for key in day):
        seen = [counts(days, PROGRAM, arm)["exposed"] for arm in (NUDGED, HOLDOUT)]
        shares = [n / sum(seen) for n in seen] if sum(seen) else [1.0, 0.0]
        out.append(Plan(PROGRAM, "", ((NUDGED, shares[0]), (HOLDOUT, shares[1])), HOLDOUT, running=False,
                        ended="stopped"))
    for rule in rules.rules:
        x = rule.experiment
        if x is None:
            continue
        arms = x.arms()
        out.append(Plan(rule.experiment_id or rule.id, rule.id, arms, HOLDOUT if x.holdout else arms[0][0],
                        x.running, x.ended, x.shipped))
    return out


def counts(days: Days, experiment: str, arm: str) -> dict[str, int]:
    """An arm's counters summed over `days`."""
    out = dict.fromkeys(COUNTERS, 0)
    prefix = f"{experiment}@{arm}|"
    for day in days.values():
        for key, n in day.items():
            if key.startswith(prefix) and (name := key[len(prefix):]) in out:
                out[name] += n
    return out


def _arm(name: str, c: Mapping[str, int]) -> stats.Arm:
    # Money is counted in cents (Redis counts integers): back to the store's unit.
    return stats.Arm(name, c["exposed"], c["converted"], c["revenue"] / 100, c["revenue_sq"] / 10_000)


def _rate(n: int, of: int) -> float | None:
    return n / of if of else None


def report(plan: Plan, days: Days, now_ms: int) -> dict[str, Any]:
    """One experiment's results: each arm's numbers, each arm against the control (lift, its
    always-valid interval and the verdict in words), the sample-ratio check, and the
    cumulative lift by day for the chart."""
    per_arm = {name: counts(days, plan.id, name) for name, _ in plan.arms}
    arms = []
    for name, share in plan.arms:
        c = per_arm[name]
        arms.append({
            "name": name, "share": share, "control": name == plan.control, **c,
            "rate": _rate(c["converted"], c["exposed"]),
            "revenue_per_visitor": c["revenue"] / 100 / c["exposed"] if c["exposed"] else None,
            "click_rate": _rate(c["clicked"], c["shown"]), "dismiss_rate": _rate(c["dismissed"], c["shown"]),
            "left_rate": _rate(c["left"], c["exposed"]),
        })
    first = min((d for d, day in days.items() if any(k.startswith(f"{plan.id}@") for k in day)), default=None)
    span_days = max(1.0, (now_ms - first) / DAY_MS) if first is not None else 0.0
    control = _arm(plan.control, per_arm[plan.control])
    comparisons = []
    for name, _ in plan.arms:
        if name == plan.control:
            continue
        arm = _arm(name, per_arm[name])
        c = stats.compare(control, arm)
        per_day = (control.exposed + arm.exposed) / span_days if span_days else 0.0
        more = stats.visitors_needed(control, arm, WATCHED_LIFT)
        comparisons.append({
            "arm": name, "control": plan.control, "rate": c.rate, "control_rate": c.control_rate,
            "lift": c.lift, "low": c.low, "high": c.high, "significant": c.significant,
            "revenue_per_visitor": c.revenue_per_visitor, "revenue_lift": c.revenue_lift,
            "revenue_low": c.revenue_low, "revenue_high": c.revenue_high,
            "more_visitors": more, "verdict": stats.verdict(c, more, per_day, WATCHED_LIFT),
            "history": stats.history(_by_day(days, plan.id, plan.control, name)),
        })
    srm = stats.srm_p([per_arm[n]["exposed"] for n, _ in plan.arms], [s for _, s in plan.arms])
    return {
        "id": plan.id, "rule": plan.rule, "running": plan.running, "ended": plan.ended, "shipped": plan.shipped,
        "program": plan.id == PROGRAM, "control": plan.control, "arms": arms, "comparisons": comparisons,
        "srm": {"p": srm, "mismatch": srm < stats.SRM_ALPHA},
        "days": round(span_days, 1),
    }


def _by_day(days: Days, experiment: str, control: str, arm: str) -> list[tuple[int, stats.Arm, stats.Arm]]:
    out = []
    for day in sorted(days):
        one = {day: days[day]}
        a, b = counts(one, experiment, control), counts(one, experiment, arm)
        if a["exposed"] or b["exposed"] or a["converted"] or b["converted"]:
            out.append((day, _arm(control, a), _arm(arm, b)))
    return out


def reports(rules: Ruleset, days: Days, now_ms: int) -> list[dict[str, Any]]:
    """Every experiment's report (`report`), in the order of `plans`."""
    return [report(p, days, now_ms) for p in plans(rules, days)]


def table(reports_: Sequence[Mapping[str, Any]]) -> str:
    """The reports as plain text, for a terminal: one block an experiment."""
    lines: list[str] = []
    for r in reports_:
        state = "running" if r["running"] else f"ended {r['ended']}" + (f", shipped {r['shipped']}" if r["shipped"] else "")
        what = "every rule (the program's holdout)" if r["program"] else f"rule {r['rule']}"
        lines.append(f"experiment {r['id']} — {what}, {state}, {r['days']:g} days")
        lines.append(f"  {'arm':<12} {'share':>6} {'exposed':>8} {'converted':>9} {'rate':>7} {'rev/visitor':>11}"
                     f" {'clicks':>7} {'dismissed':>9} {'left':>6}")
        for a in r["arms"]:
            def pct(x: float | None) -> str:
                return "-" if x is None else f"{x * 100:.1f}%"
            rpv = "-" if a["revenue_per_visitor"] is None else f"{a['revenue_per_visitor']:.2f}"
            lines.append(f"  {a['name'] + (' *' if a['control'] else ''):<12} {a['share'] * 100:>5.0f}% {a['exposed']:>8,}"
                         f" {a['converted']:>9,} {pct(a['rate']):>7} {rpv:>11} {pct(a['click_rate']):>7}"
                         f" {pct(a['dismiss_rate']):>9} {pct(a['left_rate']):>6}")
        for c in r["comparisons"]:
            said = c["verdict"]
            lines.append(f"  {said}" if said.startswith(c["arm"] + " ") else f"  {c['arm']} against {c['control']}: {said}")
        if r["srm"]["mismatch"]:
            lines.append(f"  WARNING: sample-ratio mismatch (p = {r['srm']['p']:.2g}): the arms did not get the "
                         "shares set; the numbers cannot be trusted until the cause is found")
        lines.append("")
    if not lines:
        return "no experiments: add an `experiment:` block to a rule, or `holdout:` to the rules file\n"
    return "\n".join(lines)

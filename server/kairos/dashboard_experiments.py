"""The dashboard's Experiments page and its API: each experiment's results, and ship or stop.

Results are kairos.experiments.report's, over the engine's per-day counters
(kept ARM_STATS_TTL_S). Ship and stop end an experiment by editing the rules
document (kairos.experiments.edit) and putting it in force the way the editor's
Apply does (kairos.reload.put_in_force): validated whole, the rules file
rewritten for every process watching it, an entry in the rules history.
Staff only, like every /dashboard and /api path (kairos.staff).
"""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .dashboard import _json_body, _page, _problem, _rt
from .engine.base import ARM_STATS_TTL_S
from .experiments.assign import PROGRAM
from .experiments.edit import end_experiment, stop_holdout
from .experiments.report import reports
from .reload import put_in_force
from .rules import Rule
from .rules.model import HOLDOUT
from .runtime import Runtime, now_ms


def ended_at(now: int) -> str:
    """When an experiment ended, as the rules document says it: ISO 8601 to the minute, UTC."""
    return time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime(now / 1000))


async def experiments_page(request: Request) -> Response:
    return _page(request, "experiments.html", page="experiments")


async def list_experiments(request: Request) -> Response:
    """Every experiment in the rules in force, with its results so far (experiments.report)."""
    rt = _rt(request)
    now = now_ms()
    days = await rt.engine.arm_stats(now - ARM_STATS_TTL_S * 1000, now)
    return JSONResponse({"experiments": reports(rt.rules, days, now)})


async def ship_experiment(request: Request) -> Response:
    """End an experiment and show one variant to everyone: {"arm": "b"}."""
    rt = _rt(request)
    exp = request.path_params["id"]
    body = await _json_body(request)
    if isinstance(body, Response):
        return body
    arm = body.get("arm") if isinstance(body, dict) else None
    if not isinstance(arm, str) or not arm:
        return _problem(400, "say which variant to ship: {\"arm\": NAME}")
    if exp == PROGRAM:
        return _problem(400, "the program's holdout has nothing to ship: stop it, and every visitor gets the nudges")
    rule = _running(rt, exp)
    if isinstance(rule, Response):
        return rule
    variants = rule.experiment.variants if rule.experiment is not None else {}
    if arm not in variants:
        why = "the holdout is shown nothing" if arm == HOLDOUT else f"it has no variant {arm!r}"
        return _problem(400, f"experiment {exp} cannot ship {arm}: {why}; its variants are {', '.join(variants)}")
    when = ended_at(now_ms())
    return await put_in_force(rt, lambda text: end_experiment(text, rule.id, arm, when),
                              f"experiment {exp}: shipped {arm}")


async def stop_experiment(request: Request) -> Response:
    """End an experiment: everyone sees the rule as written (or, for the program's holdout `*`, every nudge)."""
    rt = _rt(request)
    exp = request.path_params["id"]
    when = ended_at(now_ms())
    if exp == PROGRAM:
        if not rt.rules.holdout:
            return _problem(409, "the rules in force keep no visitors from every nudge: nothing to stop")
        return await put_in_force(rt, lambda text: stop_holdout(text, when), f"experiment {PROGRAM}: stopped")
    rule = _running(rt, exp)
    if isinstance(rule, Response):
        return rule
    return await put_in_force(rt, lambda text: end_experiment(text, rule.id, None, when), f"experiment {exp}: stopped")


def _running(rt: Runtime, exp: str) -> Rule | Response:
    """The rule that runs experiment `exp` in the rules in force, or the refusal to give."""
    for rule in rt.rules.rules:
        x = rule.experiment
        if x is not None and rule.experiment_id == exp:
            if not x.running:
                how = f", shipped {x.shipped}" if x.shipped else ", stopped"
                return _problem(409, f"experiment {exp} has already ended ({x.ended}{how})")
            return rule
    return _problem(404, f"no experiment {exp!r} in the rules in force")


routes = [
    Route("/dashboard/experiments", experiments_page),
    Route("/api/experiments", list_experiments),
    Route("/api/experiments/{id}/ship", ship_experiment, methods=["POST"]),
    Route("/api/experiments/{id}/stop", stop_experiment, methods=["POST"]),
]

"""Showing a rule's nudge to a session: render, check the caps atomically, build the frame."""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
from dataclasses import replace
from typing import Any, Callable, Coroutine, Mapping

from . import wire
from .moment import placed
from .engine.base import Show
from .experiments.assign import NUDGED, PROGRAM, arm_of, held_from_all
from .experiments.report import LEFT_WITHIN_S
from .rules.model import HOLDOUT
from .rules import Rule
from . import runtime
from .runtime import Runtime
from .session import SessionState, VisitorInfo, log_entry

log = logging.getLogger("kairos.nudge")
# A visitor who closes the page this soon after an experiment's moment, and opens no other
# page of the store within LEFT_CONFIRM_S (a navigation opens the next one within a second
# or two), is counted as `left`: a guardrail beside the dismiss rate.
LEFT_CONFIRM_S = 30
# Pages remembered for it at most, before the stale ones are dropped.
EXPOSED_KEEP = 50_000


async def where_open(rt: Runtime, state: SessionState) -> str | None:
    """Where the session has a page open: "here", "elsewhere" (the process of its latest socket,
    alive: its heartbeat has not lapsed), or None."""
    if rt.hub.connected(state.sid):
        return "here"
    node = state.node
    if node not in ("", rt.node_id) and state.sockets.get(node, 0) > 0 and node in await rt.engine.alive_nodes(runtime.now_ms()):
        return "elsewhere"
    return None


async def deliver(rt: Runtime, state: SessionState, frame: bytes, where: str,
                  on_sent: Callable[[], None] | None = None) -> bool:
    """Push a claimed nudge to the session's page(s), here or through the process that holds them.

    `on_sent` (see `Metrics.pushed`) is called as a socket here writes it; a
    nudge forwarded to another process is not timed, its writing is not seen here.
    """
    if where == "elsewhere":
        return await rt.engine.publish(state.node, state.sid, frame) > 0
    return rt.hub.push(state.sid, frame, on_sent) > 0


async def claim_nudge(rt: Runtime, rule: Rule, state: SessionState, now_ms: int) -> bytes | None:
    """The `show` frame for a rule's nudge if the engine's caps let it through, else None."""
    frame, _ = await claim_nudge_or_why(rt, rule, state, now_ms)
    return frame


def arms_for(rt: Runtime, rule: Rule, state: SessionState) -> tuple[tuple[str, str], ...]:
    """The experiments a show of `rule` would expose the visitor to, as (experiment, arm):
    the whole program's holdout (the rules file's `holdout:`) and the rule's own experiment.

    A visitor the program holds out is in no rule's experiment: they see nothing
    whatever the arm, and would blur its result.
    """
    recorded = state.visitor.arms
    out: list[tuple[str, str]] = []
    if rt.rules.holdout:
        if held_from_all(rt.rules.holdout, state.vid, rt.arm_salt, recorded):
            return ((PROGRAM, HOLDOUT),)
        out.append((PROGRAM, NUDGED))
    if rule.experiment is not None and rule.experiment.running:
        out.append((rule.experiment_id or rule.id, arm_of(rule, state.vid, rt.arm_salt, recorded) or ""))
    return tuple(out)


def plan_show(rt: Runtime, rule: Rule, state: SessionState, now_ms: int,
              by: str | None = None, oid: str | None = None) -> Show:
    """A rule's nudge made ready to claim for the session: rendered, its overlay id, caps,
    log line, where it lives and the `show` frame to push once the caps let it through.

    `by`: who sent it, when a person did (the log says so; a person's nudge is in no
    experiment). `oid`: the overlay's id when the caller names it (a timer's, the same
    at every attempt). A visitor held out (their arm, or the program's holdout) gets the
    same claim, with no frame: the show is recorded as `held`, caps and all.
    """
    exposes = () if by else arms_for(rt, rule, state)
    arm = exposes[-1][1] if exposes else None
    held = arm == HOLDOUT
    if not held and rule.experiment is not None and not rule.experiment.running:
        arm = rule.experiment.shipped  # an ended experiment: its shipped arm for everyone
    then = rule.then_for(None if held else arm)
    oid = oid or f"{rule.id}.{secrets.token_hex(4)}"
    ttl_ms = int(then.ttl_s * 1000)
    said = {"by": by} if by else {"arm": arm, "experiment": exposes[-1][0]} if exposes else {}
    if held:
        return Show(rule.id, oid, rule.caps(rt.rules.caps), log_entry("held", now_ms, oid=oid, rule=rule.id, **said),
                    placed(then.lives, state, ttl_ms, now_ms).pack(), b"", exposes, True)
    html, css = rt.renderer.render(then, state)
    return Show(
        rule.id, oid, rule.caps(rt.rules.caps),
        log_entry("show", now_ms, oid=oid, rule=rule.id, **said),
        placed(then.lives, state, ttl_ms, now_ms).pack(),
        wire.show(oid, then.show, html, css, then.where, ttl_ms, rule.id, then.lives),
        exposes,
    )


def note_exposed(rt: Runtime, state: SessionState, show: Show, now_ms: int) -> None:
    """A claimed show's exposures: the visitor's arm recorded at their first (and counted as
    `exposed` then), and each arm they saw counted as `shown` (the click-through's base).

    The record is one round trip the first time a visitor reaches an experiment's moment
    (none after: their arm comes with their page view, VisitorInfo.arms), made beside the
    push, not before it: the nudge waits for nothing of the experiment's.
    """
    if not show.exposes:
        return
    recorded = state.visitor.arms
    new = tuple((exp, arm) for exp, arm in show.exposes if exp not in recorded)
    if new:
        if isinstance(recorded, dict):
            recorded.update(new)  # this page's later nudges plan in it (the record may say otherwise: rare)
        task = rt.exposing[state.vid] = background(rt, _record_exposures(rt, state.vid, new, now_ms, recorded))
        task.add_done_callback(functools.partial(_recorded, rt, state.vid))
    arms = tuple((exp, recorded.get(exp, arm)) for exp, arm in show.exposes)
    if not show.held:
        for exp, arm in arms:
            rt.engine.count_arm(now_ms, exp, arm, "shown")
    lately = rt.exposed_lately
    if len(lately) > EXPOSED_KEEP:  # pages that never closed here (their process changed): the old go
        for sid in [sid for sid, seen in lately.items() if seen[0] < now_ms - LEFT_WITHIN_S * 1000]:
            del lately[sid]
    lately[state.sid] = (now_ms, state.pages, arms)


async def _record_exposures(rt: Runtime, vid: str, new: tuple[tuple[str, str], ...], now_ms: int,
                            recorded: Mapping[str, str]) -> None:
    try:
        firsts = await asyncio.gather(*(rt.engine.expose(vid, exp, arm, now_ms) for exp, arm in new))
    except Exception as exc:  # Redis away: this exposure is not counted (its show was claimed and sent)
        if not rt.engine.fault(exc):
            log.warning("could not record the experiment arms of vid=%s: %s", vid, exc)
        return
    for (exp, _), (kept, first) in zip(new, firsts):
        if isinstance(recorded, dict):
            recorded[exp] = kept
        if first:
            rt.engine.count_arm(now_ms, exp, kept, "exposed")


def background(rt: Runtime, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
    """Run `work` beside what called it; kept until done (the loop holds tasks weakly), cancelled at close."""
    task = asyncio.create_task(work)
    rt.chores.add(task)
    task.add_done_callback(rt.chores.discard)
    return task


def _recorded(rt: Runtime, vid: str, task: asyncio.Task[None]) -> None:
    if rt.exposing.get(vid) is task:  # not a later one of the same visitor's
        del rt.exposing[vid]


async def exposures_recorded(rt: Runtime, vid: str) -> None:
    """Wait for the visitor's exposure being recorded here, if one is: a purchase credits it."""
    task = rt.exposing.get(vid)
    if task is not None:
        await asyncio.wait([task])


def note_page_closed(rt: Runtime, sid: str, now_ms: int) -> None:
    """A page closed: if it was exposed to an experiment within LEFT_WITHIN_S, count the visitor as
    `left` for their arms, unless the session goes on (another page view) within LEFT_CONFIRM_S.

    Best effort: kept in this process, so a process stopped in between counts none.
    """
    seen = rt.exposed_lately.pop(sid, None)
    if seen is None or now_ms - seen[0] > LEFT_WITHIN_S * 1000:
        return
    background(rt, _left_unless_back(rt, sid, seen))


async def _left_unless_back(rt: Runtime, sid: str, seen: tuple[int, int, tuple[tuple[str, str], ...]]) -> None:
    at, pages, arms = seen
    await asyncio.sleep(LEFT_CONFIRM_S * rt.settings.delay_scale)
    try:
        state = await rt.engine.session(sid)
    except Exception as exc:  # Redis away: this one is not counted
        if not rt.engine.fault(exc):
            log.warning("could not read sid=%s to tell whether its visitor left: %s", sid, exc)
        return
    if state is not None and (state.pages > pages or state.connected > 0):
        return  # they went on to another page of the store
    for exp, arm in arms:
        rt.engine.count_arm(at, exp, arm, "left")


async def claim_nudge_or_why(rt: Runtime, rule: Rule, state: SessionState, now_ms: int,
                             by: str | None = None, oid: str | None = None) -> tuple[bytes | None, str]:
    """The `show` frame and "ok" if the engine's caps let the nudge through, else None and which cap stopped it.

    The caps are checked and the show recorded in one atomic engine call, so
    two processes deciding at once cannot both show a capped nudge. `by` and
    `oid` as `plan_show`: a show already claimed under that oid comes back as the
    frame and "again", or None and "seen" once answered. A visitor held out: None and
    "held", the show claimed and recorded all the same.
    """
    if not by and not state.visitor.first_ms and (rt.rules.holdout or rule.experiment is not None):
        # A timer's state has not read the visitor (first_ms is 0): their recorded arm decides.
        state.visitor = replace(state.visitor, arms=await rt.engine.arms(state.vid))
    show = plan_show(rt, rule, state, now_ms, by, oid)
    verdict = await rt.engine.claim_show(state.sid, state.vid, show.rule, show.oid, show.caps, show.log, now_ms,
                                         show.placed, show.held)
    if verdict not in ("ok", "again"):
        log.debug("rule %s not shown to sid=%s: %s", rule.id, state.sid, verdict)
        return None, verdict
    if verdict == "ok":
        note_shown(rt, state.sid, rule.id, show.held)
        note_exposed(rt, state, show, now_ms)
    if show.held:
        return None, "held"
    return show.frame, verdict


def note_feedback(rt: Runtime, visitor: VisitorInfo, oid: str, act: str, now_ms: int) -> None:
    """A click or dismissal of an experiment's nudge, counted for the visitor's arm."""
    rule = rt.rules.rule(oid.rsplit(".", 1)[0])  # an overlay id is "<rule>.<hex>"
    exp = rule.experiment_id if rule is not None else None
    arm = visitor.arms.get(exp) if exp else None
    if exp and arm and arm != HOLDOUT:
        rt.engine.count_arm(now_ms, exp, arm, act)


def note_shown(rt: Runtime, sid: str, rule: str, held: bool = False) -> None:
    """A show the engine claimed: counted for /metrics (unless held out: nothing was sent), and the dashboard told."""
    if not held:
        rt.metrics.shows.labels(rule=rule).inc()
    rt.feed.touch(sid)


async def take_down(rt: Runtime, state: SessionState, oid: str, why: str, now_ms: int) -> bool:
    """Take an overlay off the session's screen: recorded as `hidden` with why, then a `hide` to its page.

    False when it is not on screen (already closed, replaced, or never shown),
    so one overlay is taken down once. A ttl that passed is only recorded: the
    snippet has taken it down by itself.
    """
    line = log_entry("feedback", now_ms, oid=oid, act="hidden", why=why)
    if state.onscreen != oid or not await rt.engine.record_feedback(state.sid, oid, "hidden", line, now_ms):
        return False
    state.onscreen, state.onscreen_at = None, ""
    rt.metrics.feedback.labels(act="hidden").inc()
    rt.feed.touch(state.sid)
    if why != "ttl" and (where := await where_open(rt, state)):
        await deliver(rt, state, wire.hide(oid, why), where)
    return True

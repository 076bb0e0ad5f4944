"""An event batch meets a session: ops and log applied, delayed rules armed, the best nudge claimed.

The websocket (ws.py) and the beacon endpoint (beacon.py) both come here, so a
batch sent by `navigator.sendBeacon` is counted, logged and evaluated exactly
like one sent over the socket.
"""

from __future__ import annotations

import asyncio
from typing import Callable, NamedTuple, Sequence

from .moment import Placed, hide_why
from .engine.base import Outcome
from .nudge import arms_for, claim_nudge, exposures_recorded, note_exposed, note_shown, plan_show, take_down
from .rules import Rule, Ruleset, evaluate, timers_to_arm
from .rules.evaluate import score_moves
from .intent.sessions import archive_row
from .runtime import Runtime
from .session import SessionState, VisitorInfo, event_log, event_ops, log_entry
from .wire import Event, Events


class Applied(NamedTuple):
    """A batch applied: the session's new state, the visitor, the `show` frame of the nudge
    claimed with the batch, and whether that settled it (`settled`: that show, or none
    earned; else the caller claims as ever)."""

    state: SessionState
    visitor: VisitorInfo
    shown: bytes | None = None
    settled: bool = False


async def apply_events(
    rt: Runtime, rules: Ruleset, sid: str, vid: str, site: str, batch: Events, visitor: VisitorInfo, now: int,
    last: bool = False, stored: Callable[[], None] | None = None, showing: bool = False,
) -> Applied:
    """Apply a batch's events (and its `lost` count) to the session; the new state and visitor info.

    A page view in the batch (a single-page store navigated) is recorded under
    the visitor too, which refreshes what is known of them. `last`: the page
    load's last batch (a beacon), which also records the visitor's session
    count for the row kept for training (a socket does that when it closes).
    `stored` is called once the events are stored: a fault after that must not
    have the batch sent again. `showing`: the batch's best nudge may be claimed
    in the same write (`decider`), when nothing the batch does must come first.
    """
    ops = event_ops(batch.events, rules.classify, now, site, rules.scores, rt.identify_key)
    if last and visitor.first_ms:  # read from the visitor's keys (a beacon's page view is not)
        ops.append(("set", "visits", str(visitor.sessions)))
    if batch.lost:
        ops.append(("incr", "lost", str(batch.lost)))
        rt.metrics.events_lost.inc(batch.lost)
    log = event_log(batch.events, now, site, rt.identify_key)
    views = [e for e in batch.events if e.type == "page_view"]
    purchases = [e for e in batch.events if e.type == "purchase"]
    purchase = bool(purchases)
    outcome = None
    if views:
        f = views[-1].fields
        path = f["path"]
        state, visitor = await asyncio.gather(
            rt.engine.apply(sid, ops, log, now),
            rt.engine.visit(vid, sid, path, rules.classify(path, f.get("type", "")), True, now),
        )
    elif showing and not purchase:
        # A purchase credits the shows before it (record_conversion): never one claimed with it.
        state, outcome = await rt.engine.apply_deciding(sid, ops, log, now, decider(rt, rules, batch.events, now,
                                                                                    visitor))
    else:
        state = await rt.engine.apply(sid, ops, log, now)
    if stored is not None:
        stored()
    if purchase:
        # Rare, so its own round trip: the purchase, and a conversion for each rule shown lately.
        # After the events are stored: a batch refused and sent again is not counted twice.
        cents = sum(round(float(e.fields.get("value") or 0) * 100) for e in purchases)
        await exposures_recorded(rt, vid)
        await rt.engine.record_conversion(vid, now, rt.settings.attribution_s * 1000, cents)
    state.visitor = visitor
    if outcome is None:
        await log_score_moves(rt, rules, state, batch.events, now)
    rt.feed.touch(sid, state)
    rt.metrics.events.inc(len(batch.events))
    rt.metrics.batch_events.observe(len(batch.events))
    show = outcome.show if outcome else None
    settled = outcome is not None and (show is not None or outcome.settled)
    if show is not None:
        note_shown(rt, sid, show.rule, show.held)
        note_exposed(rt, state, show, now)
    elif batch.events and not settled:
        await end_moment(rt, rules, state, batch.events, now)
    return Applied(state, visitor, show.frame if show and not show.held else None, settled)


def decider(rt: Runtime, rules: Ruleset, events: Sequence[Event], now: int,
            visitor: VisitorInfo) -> Callable[[SessionState], Outcome]:
    """What a batch's new state calls for, to be stored with it (Engine.apply_deciding): the
    scores it moved visibly (log_score_moves), and the nudge it earned first (claim_best's
    first), unless it also ends the moment of the overlay on screen, which comes first."""
    def decide(state: SessionState) -> Outcome:
        state.visitor = visitor
        lines = score_lines(rules, state, events, now)
        if ends_moment(rules, state, events, now):
            return Outcome(lines)
        decided = evaluate(rules, state, events, now)
        if not decided:
            return Outcome(lines, settled=True)
        try:
            return Outcome(lines, plan_show(rt, decided[0].rule, state, now))
        except Exception:  # a template that fails: the batch is stored first, and the claim after reports it
            return Outcome(lines)
    return decide


def ends_moment(rules: Ruleset, state: SessionState, events: Sequence[Event], now: int) -> str | None:
    """Why the batch ends the moment of the overlay on screen (moment.hide_why), or None."""
    oid = state.onscreen
    at = Placed.unpack(state.onscreen_at) if oid and state.onscreen_at else None
    if at is None:
        return None
    shown = state.overlays.get(oid)
    rule = rules.rule(shown.rule) if shown else None
    return hide_why(at, rule.then.until if rule else (), state, events, now)


async def end_moment(rt: Runtime, rules: Ruleset, state: SessionState, events: Sequence[Event], now: int) -> str | None:
    """Take the overlay on screen down if the batch ended its moment (`ends_moment`); why, or None."""
    why = ends_moment(rules, state, events, now)
    if why is None or not await take_down(rt, state, state.onscreen, why, now):
        return None
    return why


async def log_score_moves(rt: Runtime, rules: Ruleset, state: SessionState, events: Sequence[Event], now: int) -> None:
    """A line in the session's timeline for each score the batch moved visibly, with what moved it.

    Known only once the batch is applied: its own (small) round trip when the engine
    did not log them with the batch (`decider`), and only for the batches that move a
    score by MIN_LOGGED_MOVE or more.
    """
    lines = score_lines(rules, state, events, now)
    if lines:
        await rt.engine.append_log(state.sid, lines, now)


def score_lines(rules: Ruleset, state: SessionState, events: Sequence[Event], now: int) -> list[str]:
    """The timeline's lines for the scores the batch moved visibly (rules.evaluate.score_moves)."""
    return [log_entry("score", now, **m) for m in score_moves(rules, state, events, now)]


async def arm_delayed(rt: Runtime, rules: Ruleset, state: SessionState, events: Sequence[Event], now: int) -> None:
    """Arm (or re-arm) the timers of the delayed rules the batch set off."""
    def delay_for(rule: Rule) -> float | None:  # the visitor's arm's, when the rule runs an experiment
        return rule.after_for(dict(arms_for(rt, rule, state)).get(rule.experiment_id or "")) if rule.experiment else None

    timers = timers_to_arm(rules, state, events, now, rt.settings.delay_scale, delay_for)
    if timers:
        rt.timers.arm(await rt.engine.arm_timers(timers))


async def claim_best(
    rt: Runtime, rules: Ruleset, state: SessionState, events: Sequence[Event], now: int, extra: Sequence[Rule] = ()
) -> bytes | None:
    """The show frame of the best nudge the batch earned that the caps let through, or None."""
    for rule in [d.rule for d in evaluate(rules, state, events, now)] + list(extra):
        frame = await claim_nudge(rt, rule, state, now)
        if frame is not None:
            return frame
    return None


async def keep_for_training(rt: Runtime, rules: Ruleset, state: SessionState, now: int) -> None:
    """Keep the session's feature row and outcome for `kairos export-sessions`, replacing its last one.

    Called when a page load ends (its socket closes, or its beacon comes), so
    the last row of a session is the session as it ended. Bots are left out:
    they would teach a model what bots do.
    """
    if not rt.settings.archive_ttl_s or state.pages == 0 or state.device == "bot":
        return
    await rt.engine.archive(state.sid, archive_row(state, rules.page_types.names, now), now)

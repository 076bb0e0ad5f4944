"""The engine interface."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from ..caps import Caps
from ..rules.delayed import Timer
from ..session import Op, SessionState, VisitorInfo

# The activity log the dashboard shows is the newest entries of a session only.
LOG_MAX = 50
# Visitor history: page views of the last 24 h (the longest window a signal
# looks at), at most this many kept.
VIEWS_WINDOW_MS = 24 * 3600 * 1000
VIEWS_KEEP = 500
# Shows are kept for the longest cap window a rules file may declare.
SHOWS_TTL_S = 7 * 24 * 3600
# Every session of a visitor is indexed under the visitor (session id -> when it
# was last seen or archived), however many they had, so that forgetting the
# visitor reaches each one, its log and its row kept for training. The index
# outlives what it points to: the visitor's keys, archived rows, and by this
# margin a page load still open and its timers (a delay is at most a day).
INDEX_MARGIN_S = 2 * 24 * 3600
# Forgetting walks the index this many sessions at a time: one round trip each,
# so that a visitor with 10,000 sessions never holds Redis for long.
FORGET_BATCH = 100


def index_ttl_s(visitor_ttl_s: int, archive_ttl_s: int) -> int:
    """How long a visitor's index of sessions lives after its last write."""
    return max(visitor_ttl_s, archive_ttl_s) + INDEX_MARGIN_S
# Rule counters (triggered, shown, clicked, dismissed, converted) are kept in
# five-minute buckets: an hour of data charts as twelve bins, and a month is
# 8,640 buckets, one pipelined read (about 0.1 s; one-minute buckets took 0.45 s).
STATS_BUCKET_MS = 5 * 60 * 1000
STATS_TTL_S = 32 * 24 * 3600
# Experiments' counters are kept by day, for a year and a month: an experiment runs
# for weeks, and its result is read long after it ended.
ARM_STATS_DAY_MS = 24 * 3600 * 1000
ARM_STATS_TTL_S = 400 * 24 * 3600
# A pause outlives any sensible absence; every pause or resume renews it.
PAUSED_TTL_S = 90 * 24 * 3600
# What a rule's nudge can be counted as; feedback acts beyond these are not counters.
COUNTED_ACTS = ("clicked", "dismissed")


def stats_bucket(now_ms: int) -> int:
    """The start (ms) of the counters' bucket that `now_ms` falls in."""
    return now_ms - now_ms % STATS_BUCKET_MS


def arm_day(now_ms: int) -> int:
    """The day (UTC) an experiment's count belongs to, as its start in ms."""
    return now_ms - now_ms % ARM_STATS_DAY_MS


def arm_days(since_ms: int, until_ms: int) -> range:
    """The starts of the days that hold counts of [since_ms, until_ms]."""
    return range(arm_day(since_ms), arm_day(until_ms) + 1, ARM_STATS_DAY_MS)


def arm_field(experiment: str, arm: str, counter: str) -> str:
    """An arm's counter as the engines keep it: "<experiment>@<arm>|<counter>"."""
    return f"{experiment}@{arm}|{counter}"


def arm_credits(exposed: Mapping[str, tuple[str, int]], converted: set[str] | frozenset[str], now_ms: int,
                window_ms: int) -> list[tuple[str, str, bool]]:
    """What a purchase credits: (experiment, arm, whether it is the visitor's first conversion
    there) for each experiment they were first exposed to within `window_ms` before it.

    `exposed`: experiment -> (arm, first exposure ms); `converted`: experiments where
    they already converted. Pure: both engines credit through it."""
    return [(exp, arm, exp not in converted) for exp, (arm, at) in sorted(exposed.items())
            if now_ms - window_ms <= at <= now_ms]


def not_held(rules: set[str], exposed: Mapping[str, tuple[str, int]]) -> list[str]:
    """Of the rules a purchase would credit (shown lately), those the visitor was not held out
    of: a holdout's show is recorded (caps), not seen. An experiment is matched to its rule by
    id, the rule's own unless the rules name another; the program's holdout (`*`) holds out all."""
    if exposed.get("*", ("",))[0] == "holdout":
        return []
    return sorted(r for r in rules if exposed.get(r, ("",))[0] != "holdout")


def stats_buckets(since_ms: int, until_ms: int) -> range:
    """Every bucket start from the one holding `since_ms` to the one holding `until_ms`."""
    return range(stats_bucket(since_ms), stats_bucket(until_ms) + 1, STATS_BUCKET_MS)
# Session rows kept for training: at most this many (about 1 KB each), and no
# longer than the archive's retention (Settings.archive_ttl_s).
ARCHIVE_KEEP = 200_000
# A claimed timer is leased for this long. Its process's heartbeat (below) gives it
# back much sooner when that process dies; the deadline is for one that is alive but
# stuck: long enough for any healthy fire (a forward's ack is waited for 2 s), and a
# timer fired again after it is sent with the same oid, counted once.
TIMER_LEASE_MS = 30_000
# A process says it is alive for this long, every HEARTBEAT_EVERY_S: a killed one's
# sessions stop looking connected, and its leased timers are claimed again, within it.
HEARTBEAT_TTL_MS = 3_000
HEARTBEAT_EVERY_S = 1.0


class SessionGone(LookupError):
    """A batch came for a session whose state is no longer stored.

    Redis lost it (restarted without persistence, flushed, evicted) while the
    page's socket stayed open. The engine does not recreate the session from a
    batch, which would leave a session without its visitor; the socket, which
    still knows its hello, opens it again (ws.VisitorSocket).
    """

    def __init__(self, sid: str) -> None:
        super().__init__(f"session {sid} is not stored (expired, or its store lost it)")
        self.sid = sid


def opens_session(ops: Sequence[Op]) -> bool:
    """Whether ops may create a session: only those that give it its visitor (a hello's)."""
    return any(field == "vid" and value for _, field, value in ops)


@dataclass(frozen=True, slots=True)
class Opening:
    """What a page load's hello asks of the store (Engine.open_session).

    `sid`: the session the page names (None: none); resumed only if it lives and is
    `vid`'s, else the session opens as `fresh`. `ops` and `log` are a page view's,
    the hello's first-visit context included (session.hello_ops); `re_ops` a
    reconnect's within the page load (hello.re), which count no page view, and are
    used only when the session is resumed. `path` and `page_type` are the page's,
    recorded under the visitor.
    """

    vid: str
    sid: str | None
    fresh: str
    ops: Sequence[Op]
    log: Sequence[str]
    path: str
    page_type: str
    re_ops: Sequence[Op] | None = None

    def __post_init__(self) -> None:
        if not opens_session(self.ops):  # a session is never made without its visitor
            raise ValueError(f"expected a page view's ops that give the session its visitor {self.vid!r}, got none")


@dataclass(frozen=True, slots=True)
class Show:
    """A rule's nudge to claim for a session: what `Engine.claim_show` takes, and the
    `show` frame to push once claimed (nudge.plan_show)."""

    rule: str
    oid: str
    caps: Caps
    log: str
    placed: str = ""
    frame: bytes = b""
    # The experiments it exposes the visitor to, (experiment, arm): its rule's and the whole
    # program's holdout; and whether it is held out (recorded as shown, never sent).
    exposes: tuple[tuple[str, str], ...] = ()
    held: bool = False


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a batch's new state calls for, decided before the batch is stored
    (`Engine.apply_deciding`): lines for the session's log after the batch's (what is
    learnt from the new state: scores that moved), the show it earned, and whether
    that is all (`settled`: no show earned, nothing to take down; the caller has
    nothing left to decide once it is stored)."""

    lines: Sequence[str] = ()
    show: Show | None = None
    settled: bool = False


@dataclass(frozen=True, slots=True)
class Opened:
    """A session opened or resumed from a hello: its id, whether it was resumed, its state and visitor."""

    sid: str
    resumed: bool
    state: SessionState
    visitor: VisitorInfo


class Engine(ABC):
    """Where sessions live. Every method is one round trip to the store."""

    name: str
    session_ttl_s: int

    async def start(self) -> None:
        """Connect and load what the engine needs (scripts, sweepers)."""

    async def close(self) -> None:
        """Release connections and tasks."""

    def fault(self, exc: BaseException) -> bool:
        """Whether `exc` is the store being away, already logged as part of its outage (no traceback needed)."""
        return False

    @abstractmethod
    async def ping(self) -> bool:
        """True when the store answers."""

    @abstractmethod
    async def visitor_of(self, sid: str) -> str | None:
        """The visitor id a live session belongs to, or None if there is no such session."""

    @abstractmethod
    async def apply(self, sid: str, ops: Sequence[Op], log: Sequence[str], now_ms: int) -> SessionState:
        """Apply ops atomically, append to the log, refresh expiry; return the new state.

        Raises SessionGone, writing nothing, when the session is not stored and
        the ops do not open it (`opens_session`): a batch never makes a session
        without its visitor.
        """

    async def apply_deciding(self, sid: str, ops: Sequence[Op], log: Sequence[str], now_ms: int,
                             decide: Callable[[SessionState], Outcome]) -> tuple[SessionState, Outcome | None]:
        """`apply`, with what `decide` makes of the batch's new state stored in the same write
        when the engine can: the push waits for one round trip, not two.

        Returns the new state and the outcome stored with it: its lines logged after the
        batch's, and its show claimed (counted and logged as `claim_show` does) or None
        when the engine could not claim it with the batch or a cap stopped it (the caller
        then claims as ever, and `claim_show` gives the verdict and logs the refusal).
        None for the outcome: nothing of it was stored, and the caller decides after the
        batch as ever. This engine decides nothing with the batch: its writes are no
        round trip.
        """
        return await self.apply(sid, ops, log, now_ms), None

    def closed(self, sid: str) -> None:
        """The session's page load on this process is over: drop what was kept of it for the next batch."""

    @abstractmethod
    async def open_session(self, o: Opening, now_ms: int) -> Opened:
        """Open a page load's session from its hello, atomically, in one round trip.

        Resumes `o.sid` only if it is stored and `o.vid`'s; else opens a new session
        as `o.fresh` (a page view, even if the hello was a reconnect). Applies the
        ops and log as `apply` does, records the page under the visitor as `visit`
        does (a reconnect's records nothing), and indexes the session as `mark_live`.
        """

    async def mark_live(self, sid: str, now_ms: int) -> None:
        """Index the session for the dashboard's list; called once per page load."""

    @abstractmethod
    async def claim_show(self, sid: str, vid: str, rule: str, oid: str, caps: Caps, log: str, now_ms: int,
                         placed: str = "", held: bool = False) -> str:
        """Check every cap of a rule (session, visitor, rule-wide) and whether it is paused, and
        record and log the show, atomically: "ok" or which cap stopped it.

        `placed`: where the overlay lives (moment.Placed, packed), kept beside
        it and read back as the state's `onscreen_at` while it is on screen.
        `held`: an experiment holds the visitor out; claimed all the same, and counted
        as `held` instead of `shown` (nothing is sent).

        Counts the rule's moment (`triggered`) and its show (`shown`) in the
        counters; a moment that was not shown is logged (kind `skip`, with `why`)
        once per reason in a row. (Redis: the counters are counted just after the
        claim, not atomically with it, and a pause made by another process holds
        within redis.PAUSED_REFRESH_S: both live outside the visitor's hash slot.)

        The same `oid` claimed again (a timer fired once more, rules.delayed.Timer.oid)
        changes nothing: "again" while the overlay is still `sent` (send it again),
        "seen" once the page answered it.
        """

    @abstractmethod
    async def append_log(self, sid: str, lines: Sequence[str], now_ms: int) -> None:
        """Add lines to a live session's log (what is learnt only after a batch is applied)."""

    @abstractmethod
    async def record_conversion(self, vid: str, now_ms: int, window_ms: int, value_cents: int = 0) -> list[str]:
        """Count a purchase, and a conversion for each rule shown to the visitor within
        `window_ms` before it (at most SHOWS_TTL_S back); the rules credited.

        Each experiment the visitor was first exposed to within `window_ms` gets the
        purchase's value (`revenue`, `revenue_sq`: its square, for the variance) and,
        the first time only, a conversion: its rate is of visitors, not purchases."""

    @abstractmethod
    async def expose(self, vid: str, experiment: str, arm: str, now_ms: int) -> tuple[str, bool]:
        """Record the visitor's arm at their first exposure to an experiment (kept with the
        visitor's TTL): the arm recorded (theirs from before, if any) and whether this is the first."""

    @abstractmethod
    async def arms(self, vid: str) -> dict[str, str]:
        """The visitor's recorded arms, by experiment id."""

    @abstractmethod
    def count_arm(self, now_ms: int, experiment: str, arm: str, counter: str, n: int = 1) -> None:
        """Add to an arm's counter of the day (statistics, as the rule counters: not atomic with
        what they count; Redis has them within STATS_FLUSH_S)."""

    @abstractmethod
    async def arm_stats(self, since_ms: int, until_ms: int) -> dict[int, dict[str, int]]:
        """The experiments' counters by day start: {"<experiment>@<arm>|<counter>": n}."""

    @abstractmethod
    async def stats(self, since_ms: int, until_ms: int) -> dict[int, dict[str, int]]:
        """The counters by bucket start: {"<rule>|<counter>": n}, and "*|purchases"."""

    @abstractmethod
    async def set_paused(self, rule: str, paused: bool, now_ms: int) -> None:
        """Pause a rule (its nudges are refused with "paused" by claim_show), or resume it."""

    @abstractmethod
    async def paused(self) -> dict[str, int]:
        """Paused rules and since when (ms)."""

    @abstractmethod
    async def visit(self, vid: str, sid: str, path: str, page_type: str, record: bool, now_ms: int) -> VisitorInfo:
        """Record a page view under the visitor (if `record`) and return what is known of them.

        A recorded page view also takes the nudges kept for the visitor's next page view.
        """

    @abstractmethod
    async def keep_for_next_page(self, vid: str, rule: str, now_ms: int) -> None:
        """Keep a rule's nudge for the visitor's next page view, in whichever session."""

    @abstractmethod
    async def pending_for(self, vid: str) -> list[str]:
        """Rules whose nudges wait for the visitor's next page view."""

    @abstractmethod
    async def forget(self, vid: str, sid: str | None) -> list[str]:
        """Erase what is stored about a visitor: their keys, and every session indexed under
        them (and `sid`) with its log, dashboard index entry, timers and row kept for training.

        A session is erased only if it belongs to `vid`: `sid` must name them as its
        visitor. Returns the ids of the sessions that were still live, erased.
        """

    @abstractmethod
    async def record_feedback(self, sid: str, oid: str, act: str, log: str, now_ms: int) -> bool:
        """Record feedback on an overlay; False if the overlay was never sent to this session."""

    @abstractmethod
    async def session(self, sid: str) -> SessionState | None:
        """The current state of a session, or None."""

    @abstractmethod
    async def log(self, sid: str, limit: int = LOG_MAX) -> list[dict[str, Any]]:
        """The newest activity log entries, newest first."""

    @abstractmethod
    async def sessions(self, now_ms: int, limit: int = 100) -> list[SessionState]:
        """Sessions seen within the session TTL, most recent first."""

    @abstractmethod
    async def ttl_s(self, sid: str) -> dict[str, float]:
        """Remaining time to live of every stored item of a session, by item name."""

    # --- sessions kept for training ----------------------------------------------

    @abstractmethod
    async def archive(self, sid: str, row: str, now_ms: int) -> None:
        """Keep (or replace) a session's row for training, for the archive's retention."""

    @abstractmethod
    async def archived(self, last_before_ms: int, limit: int = ARCHIVE_KEEP) -> list[str]:
        """The rows kept, of sessions last written before `last_before_ms`, oldest first."""

    # --- delayed rules ---------------------------------------------------------

    @abstractmethod
    async def arm_timers(self, timers: Sequence[Timer]) -> int | None:
        """Add or replace timers (one per session and rule); the earliest due time now queued.

        Each live session's timeline gets the timer armed, after a line for the
        pending one it replaces (`rules.delayed.armed_line`, outcome `replaced`).
        """

    @abstractmethod
    async def claim_due(self, now_ms: int, limit: int = 200, node: str = "",
                        lease_ms: int = TIMER_LEASE_MS) -> list[Timer]:
        """Lease due timers to `node` and return them, earliest first.

        A leased timer goes to no other caller while its lease runs and its node's
        heartbeat lasts; after either lapses it is claimed again (its process died
        mid-way). It leaves the queue with `finish_timer`, or goes back with `defer_timer`.
        """

    @abstractmethod
    async def finish_timer(self, t: Timer, lines: Sequence[str], now_ms: int, count: str = "") -> tuple[bool, SessionState | None]:
        """Record a claimed timer's outcome (log lines, one more of the session's `count`)
        and take it off the queue, in one step; (whether it was recorded, the session after).

        Taken off only if it is still the timer claimed: one re-armed meanwhile stays.
        Nothing is recorded when it is gone altogether (another claimer finished it).
        """

    @abstractmethod
    async def defer_timer(self, t: Timer, due_ms: int, waited: bool = True) -> bool:
        """Put a claimed timer back in the queue, due at `due_ms`, with one more wait counted
        (its `waits`, unless not `waited`; its due time stays); False when it was re-armed
        or finished meanwhile."""

    @abstractmethod
    async def next_due_ms(self) -> int | None:
        """When the earliest queued timer is due, or None."""

    @abstractmethod
    async def pending_timers(self) -> int:
        """How many timers are queued."""

    # --- staff access (kairos.lockout, kairos.staff) ---------------------------------

    @abstractmethod
    async def staff_attempt(self, client: str, failed: bool, max_failures: int, window_s: int) -> float:
        """One presentation of the admin token by `client` (a keyed hash, never an address), atomically.

        When `client` already has `max_failures` wrong tokens counted in its window:
        the seconds left of that window, and nothing counted. Otherwise 0, after
        counting this one if it was wrong (`failed`); a client's first failure
        opens a window of `window_s`.
        """

    @abstractmethod
    async def add_staff_session(self, session: str, record: Mapping[str, str], ttl_s: int) -> None:
        """Keep a staff login's record under `session` (a digest of the cookie's id) for `ttl_s`."""

    @abstractmethod
    async def staff_session(self, session: str) -> dict[str, str] | None:
        """A staff login's record, or None once it has expired or ended."""

    @abstractmethod
    async def end_staff_session(self, session: str) -> None:
        """End a staff login (logging out): its cookie is refused from then on, by every process."""

    # --- between processes -------------------------------------------------------

    async def publish(self, node: str, sid: str, frame: bytes, reply_to: str = "", ref: str = "") -> int:
        """Hand a frame to the process `node`, which holds the session's socket; how many processes heard it.

        With `reply_to`, the holder answers with `ack` to that process, `ref` and
        whether a socket took the frame.
        """
        return 0

    async def ack(self, node: str, sid: str, ref: str, pushed: bool) -> None:
        """Answer a `publish` with `reply_to`: whether the frame `ref` reached a socket of the session here."""

    @abstractmethod
    async def heartbeat(self, node: str, now_ms: int, ttl_ms: int = HEARTBEAT_TTL_MS) -> None:
        """Say the process `node` is alive for `ttl_ms` more."""

    @abstractmethod
    async def node_gone(self, node: str) -> None:
        """The process `node` stops (a clean shutdown): its sessions' sockets and its leases are no longer its."""

    @abstractmethod
    async def alive_nodes(self, now_ms: int) -> set[str]:
        """The processes whose heartbeat has not lapsed."""

    async def only_live(self, states: Sequence[SessionState], now_ms: int) -> None:
        """Count only the sockets held by live processes (a killed one's sessions stop looking connected)."""
        if any(s.sockets for s in states):
            alive = await self.alive_nodes(now_ms)
            for s in states:
                s.keep_sockets(alive)

    async def listen(self, node: str, bus: Bus) -> None:
        """Hear pushes and wake-ups from other processes until cancelled (one process: nothing to hear)."""

    async def publish_forgotten(self, vid: str, sids: Sequence[str]) -> None:
        """Tell every other process that the visitor and these sessions were erased (one process: nobody)."""

    async def publish_feed(self, text: str) -> bool:
        """Send a dashboard feed message to every process; False when there are no others to
        reach (one process: the caller delivers it itself)."""
        return False

    async def watch_feed(self, ttl_s: int) -> None:
        """Say that this process has dashboards watching, for `ttl_s` seconds."""

    async def feed_watched(self) -> bool:
        """Whether any process has dashboards watching (one process: the caller knows)."""
        return False


class Bus:
    """What a process hears from the others: pushes for its sockets, and wake-ups."""

    async def on_push(self, sid: str, frame: bytes, reply_to: str = "", ref: str = "") -> None: ...

    def on_ack(self, sid: str, ref: str, pushed: bool) -> None: ...

    def on_wake(self, due_ms: int) -> None: ...

    def on_feed(self, text: str) -> None: ...

    async def on_forgotten(self, vid: str, sids: list[str]) -> None: ...


def parse_log(lines: Sequence[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines]

"""What a running server holds: settings, engine, rules in force, renderer, sockets, counters."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any

from . import wire
from .context import GeoLookup
from .experiments.assign import salt_from
from .engine import Engine, create_engine
from .feed import Feed
from .metrics import Metrics
from .push import Hub
from .render import Renderer
from .rules import RulesError, Ruleset, load_rules
from .settings import Settings

log = logging.getLogger("kairos")


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class Refusal:
    """A rules document that was not put in force: where it came from, when, and why."""

    source: str
    at_ms: int
    message: str


class Runtime:
    def __init__(self, settings: Settings, engine: Engine | None = None) -> None:
        self.settings = settings
        self.engine = engine or create_engine(
            settings.engine,
            redis_url=settings.redis_url,
            session_ttl_s=settings.session_ttl_s,
            redis_pool_size=settings.redis_pool_size,
            archive_ttl_s=settings.archive_ttl_s or 1,
        )
        self.renderer = Renderer(settings.templates_dir / "overlays")
        self.geo = GeoLookup(settings.geoip_db)
        self.hub = Hub()
        self.feed = Feed(self)
        self._feed_task: asyncio.Task[None] | None = None
        self._track: tuple[Ruleset, dict[str, Any]] | None = None
        # This process among those sharing one Redis: where nudges for its sockets are sent.
        self.node_id = secrets.token_hex(4)
        # Set as `kairos serve` begins to shut down, before uvicorn closes the sockets.
        self.stopping = False
        # The identify hash's key (session.uid_hash). An app built without `kairos serve`
        # (tests, an embedding) and without a secret gets a random one: its hashes
        # match within this process only, and none can be reversed from a list of ids.
        self.identify_key = (settings.identify_secret or secrets.token_hex(32)).encode()
        # Experiments split visitors by a hash salted with it (experiments.assign): the same
        # split on every process that shares the secret.
        self.arm_salt = salt_from(self.identify_key)
        # Pages exposed to an experiment within the last moments (nudge.note_exposed), by session:
        # (ms, pages then, (experiment, arm)…), to tell a visitor who left right after it.
        self.exposed_lately: dict[str, tuple[int, int, tuple[tuple[str, str], ...]]] = {}
        # Work done beside a batch (an exposure's record, a closed page's check): nudge.background.
        self.chores: set[asyncio.Task[None]] = set()
        # The exposure records under way, by visitor: a purchase waits for its visitor's.
        self.exposing: dict[str, asyncio.Task[None]] = {}
        # Beacons have no connection to hold a rate limit: one per visitor id, for
        # the visitors seen lately.
        self.beacon_limits = wire.RateLimits(settings.frames_burst, settings.frames_per_s, max_keys=10_000)
        self.metrics = Metrics(open_sockets=lambda: len(self.hub))
        self.metrics.time_engine(self.engine)
        # Rules replacement (kairos.reload): a version number that only grows, and
        # the last document refused. The watcher's baseline is taken before the
        # file is read, so an edit made while it is read is seen as a change.
        self.rules_version = 0
        self.last_refusal: Refusal | None = None
        self.rules_file_seen = None
        self.rules_watcher = None  # a reload.RulesWatcher while the app runs with --rules
        if settings.rules is not None:
            from .reload import FileSignature

            self.rules_file_seen = FileSignature.of(settings.rules)
        self.rules = Ruleset.empty()
        # The document of the rules put in force through the admin API or the
        # editor when there is no rules file (with one, the file is the document).
        self.rules_text = ""
        if settings.rules is not None:
            # A bad file at start-up stops the server: there are no old rules to keep.
            self.rules = load_rules(settings.rules, self.renderer.names(), self.renderer.problem)
            log.info("rules: %d loaded from %s", len(self.rules.rules), settings.rules)
            self.rules_version = 1
        self.metrics.declare_rules(r.id for r in self.rules.rules)

        from .timers import TimerService  # it needs the runtime's module loaded first

        self.timers = TimerService(self)

    @property
    def track(self) -> dict[str, Any]:
        """What the snippet measures, as `welcome` sends it: the rules in force over the defaults.

        Worked out once per ruleset, so a reload changes the next welcome.
        """
        rules = self.rules
        if self._track is None or self._track[0] is not rules:
            track = {**self.settings.track, **rules.track}
            if track["idle_ms"]:  # 0 is off, whatever the scale
                track["idle_ms"] = max(100, int(track["idle_ms"] * self.settings.delay_scale))
            self._track = (rules, track)
        return self._track[1]

    async def start(self) -> None:
        await self.engine.start()
        self.timers.start()
        self._feed_task = asyncio.create_task(self.feed.run(), name="kairos-feed")

    async def close(self) -> None:
        if self._feed_task is not None:
            self._feed_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._feed_task
        for task in list(self.chores):  # a closed page not yet told apart is not counted
            task.cancel()
        await self.timers.close()
        await self.engine.close()
        self.geo.close()

    def let_go(self, sids: list[str]) -> int:
        """Erased sessions: their sockets here closed (1000: no reconnection) and off the
        dashboards; how many sockets were closed."""
        closed = sum(self.hub.forget(sid) for sid in sids)
        self.feed.gone(sids)
        return closed

    def replace_rules(self, ruleset: Ruleset) -> int:
        """Put a validated ruleset in force, whole; its version number.

        One assignment on the event loop: a batch reads `rules` once, so it sees
        either the old rules or the new ones, never a mix.
        """
        self.rules = ruleset
        self.rules_version += 1
        self.metrics.declare_rules(r.id for r in ruleset.rules)
        log.info("rules: %d loaded from %s (version %d)", len(ruleset.rules), ruleset.source, self.rules_version)
        return self.rules_version

    def refuse_rules(self, source: str, error: RulesError | str) -> Refusal:
        """Record (and log) a rules document that was not put in force; the rules in force stay."""
        message = str(error)
        self.last_refusal = Refusal(source, now_ms(), message)
        for line in message.splitlines() or [""]:
            log.warning("rules: refused %s, version %d stays in force: %s", source, self.rules_version, line)
        return self.last_refusal

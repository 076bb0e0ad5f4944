"""What a running server holds: settings, engine, rules in force, renderer, sockets, counters."""

from __future__ import annotations

import logging
import time

from .engine import Engine, create_engine
from .metrics import Metrics
from .push import Hub
from .render import Renderer
from .rules import Ruleset, load_rules
from .settings import Settings

log = logging.getLogger("kairos")


def now_ms() -> int:
    return int(time.time() * 1000)


class Runtime:
    def __init__(self, settings: Settings, engine: Engine | None = None) -> None:
        self.settings = settings
        self.engine = engine or create_engine(
            settings.engine,
            redis_url=settings.redis_url,
            session_ttl_s=settings.session_ttl_s,
            redis_pool_size=settings.redis_pool_size,
        )
        self.renderer = Renderer(settings.templates_dir / "overlays")
        self.hub = Hub()
        self.metrics = Metrics()
        self.metrics.gauges["kairos_connections"] = lambda: len(self.hub)
        self.rules = Ruleset.empty()
        if settings.rules is not None:
            # A bad file at start-up stops the server: there are no old rules to keep.
            self.rules = load_rules(settings.rules, self.renderer.names())
            log.info("rules: %d loaded from %s", len(self.rules.rules), settings.rules)

    async def start(self) -> None:
        await self.engine.start()

    async def close(self) -> None:
        await self.engine.close()

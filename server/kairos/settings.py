"""Configuration: one typed object, read once at start-up (flags, then KAIROS_* env)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping

from . import wire

# A source checkout: server/kairos/settings.py -> the repository root.
ROOT = Path(__file__).resolve().parents[2]

TRACK_DEFAULTS: dict[str, Any] = {
    "batch_ms": 1000, "dwell_ms": 5000, "scroll_step": 10, "idle_ms": 30000,
    # Exit intent: not before 3 s on the page, at most one per 10 s; the back
    # button is left alone unless the store asks (intercepting it surprises people).
    "exit": True, "exit_min_ms": 3000, "exit_gap_ms": 10000, "exit_scroll": True, "exit_back": False, "exit_hidden": True,
    "clicks": True, "click_text": True, "rage_n": 4, "rage_ms": 1000, "hes_ms": 15000,
    # Copying is off by default: what a visitor copies is rarely a store's business.
    "copy": False, "spa": True,
}


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    engine: str = "memory"
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Connections to Redis in all: a few carry visitors' traffic auto-pipelined,
    # the others the dashboard.
    redis_pool_size: int = 8
    rules: Path | None = None
    # Seconds between looks at the rules file for changes (kairos.reload); 0 turns watching off.
    rules_poll_s: float = 1.0
    # The staff secret: the dashboard's login, and `Authorization: Bearer` for
    # /api/* and /admin/* (kairos.staff). Unset: `kairos serve` uses the one in
    # state_dir/admin-token, generated there on the first run.
    admin_token: str | None = None
    # What the server keeps for itself between runs (the generated admin token),
    # relative to the working directory unless absolute.
    state_dir: Path = Path(".kairos")
    # The key of the hash an `identify` keeps instead of the store's user id
    # (session.uid_hash). Unset: `kairos serve` uses the one in
    # state_dir/identify-secret, generated there on the first run; processes
    # sharing one Redis must share it (the same state directory, or this setting).
    identify_secret: str | None = None
    templates_dir: Path = ROOT / "templates"
    snippet_path: Path = ROOT / "client-js" / "dist" / "k.js"
    # 30 min: the customary web-analytics session timeout (Google Analytics' default).
    session_ttl_s: int = 1800
    # How long an ended session's feature row and outcome are kept for training
    # (kairos export-sessions): no id, URL or IP in it. 0 keeps none.
    archive_ttl_s: int = 30 * 24 * 3600
    allowed_origins: tuple[str, ...] = ()
    max_frame_bytes: int = wire.MAX_FRAME_BYTES
    max_events: int = wire.MAX_EVENTS
    frames_burst: int = 20
    frames_per_s: float = 10.0
    # A client too slow to read its pushes is released (kairos.push): a frame that
    # waits this long for the socket to take it, and the client is sent 1013 behind
    # what it has not read, then its socket is aborted close_grace_s later.
    # 10 s is uvicorn's and websockets' close timeout, a round trip's worth of patience
    # many times over. 0: no send timeout (the queue's bound in bytes still holds).
    send_timeout_s: float = 10.0
    close_grace_s: float = 5.0
    demo: bool = True
    # Multiplies every rule delay and the snippet's idle threshold: a controllable
    # clock for tests and demos (0.005 turns 3 minutes into 0.9 s). 1 in production.
    delay_scale: float = 1.0
    # A MaxMind GeoIP2/GeoLite2 City or Country database, for the country and
    # region conditions. Without one they are "unknown".
    geoip_db: Path | None = None
    # Run the timer loop here. Off: this process serves sockets and hears nudges
    # from the processes that do (their loops claim the timers).
    timers: bool = True
    # A due timer whose visitor's page is reconnecting (a live session, no open
    # socket) waits this long after its due time for the page to come back before
    # its rule's `offline` decides. The snippet reconnects after 500 ms plus a
    # random part of at most 500 ms * 2^attempt (client-js/src/connection.js):
    # its first three tries fall within 5 s. 0: no wait.
    reconnect_grace_s: float = 5.0
    # A purchase counts as a conversion for every rule shown to the visitor this
    # long before it (the dashboard's "converted"). Shows are kept 7 days, the most.
    attribution_s: int = 24 * 3600
    log_level: str = "info"
    # A second address that serves /metrics alone, without a token, for a Prometheus
    # on a private network (kairos.scrape). 0: none; /metrics is then on the main
    # address, where it needs the admin token.
    metrics_port: int = 0
    metrics_host: str = "127.0.0.1"
    # Processes sharing the listening socket, each a whole Kairos (timers, feed, pub/sub);
    # more than one needs the Redis engine. 0: one per core ("auto").
    workers: int = 1
    # What the snippet measures (welcome.track); a rules file's `track:` overrides
    # any of these (docs/rules.md, "track").
    track: dict[str, Any] = field(default_factory=lambda: dict(TRACK_DEFAULTS))

    @classmethod
    def load(cls, env: Mapping[str, str] | None = None, **flags: Any) -> "Settings":
        """Defaults, overridden by KAIROS_<NAME> variables, overridden by flags that are not None."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f"KAIROS_{f.name.upper()}")
            if raw is not None and f.name != "track":
                values[f.name] = _convert(f.name, raw)
        values.update({k: v for k, v in flags.items() if v is not None})
        for key in ("rules", "templates_dir", "snippet_path", "geoip_db", "state_dir"):
            if isinstance(values.get(key), str):
                values[key] = Path(values[key])
        return replace(cls(), **values)


def _convert(name: str, raw: str) -> Any:
    default = getattr(Settings(), name)
    if isinstance(default, bool):
        return raw.lower() in ("1", "true", "yes", "on")
    if name == "workers" and raw.strip().lower() == "auto":
        return 0
    if isinstance(default, int):
        return int(raw)
    if isinstance(default, float):
        return float(raw)
    if isinstance(default, tuple):
        return tuple(x.strip() for x in raw.split(",") if x.strip())
    return raw

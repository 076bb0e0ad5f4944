"""The engine interface."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from typing import Any, Sequence

from ..session import Op, SessionState

# The activity log the dashboard shows is the newest entries of a session only.
LOG_MAX = 50


class Engine(ABC):
    """Where sessions live. Every method is one round trip to the store."""

    name: str
    session_ttl_s: int

    async def start(self) -> None:
        """Connect and load what the engine needs (scripts, sweepers)."""

    async def close(self) -> None:
        """Release connections and tasks."""

    @abstractmethod
    async def ping(self) -> bool:
        """True when the store answers."""

    @abstractmethod
    async def visitor_of(self, sid: str) -> str | None:
        """The visitor id a live session belongs to, or None if there is no such session."""

    @abstractmethod
    async def apply(self, sid: str, ops: Sequence[Op], log: Sequence[str], now_ms: int) -> SessionState:
        """Apply ops atomically, append to the log, refresh expiry; return the new state."""

    async def mark_live(self, sid: str, now_ms: int) -> None:
        """Index the session for the dashboard's list; called once per page load."""

    @abstractmethod
    async def claim_show(
        self, sid: str, rule: str, oid: str, max_per_session: int, priority: int, log: str, now_ms: int
    ) -> str:
        """Check the session caps of a rule and record (and log) the show atomically: "ok" or why not."""

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


def parse_log(lines: Sequence[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines]

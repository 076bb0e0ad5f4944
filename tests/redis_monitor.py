"""What a piece of code asks of Redis, command by command, read with MONITOR on the real server.

Commands that scripts run inside Redis (client "lua") are left out: each script call
is one command, one round trip, however much it does.
"""

from __future__ import annotations

import secrets
from typing import Any

import redis


class Commands:
    """`with Commands(url) as seen: ...` then `seen.sent`: the commands sent to the URL's database meanwhile."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.r = redis.Redis.from_url(url)
        self.db = int(self.r.connection_pool.connection_kwargs.get("db", 0))
        self.sent: list[dict[str, Any]] = []

    def __enter__(self) -> "Commands":
        self.monitor = self.r.monitor()
        self.monitor.__enter__()  # MONITOR answered: from here on every command is streamed
        return self

    def __exit__(self, *exc: object) -> None:
        # A marker sent after the code under test ends the stream read: no clock involved.
        marker = f"kairos-monitor-end-{secrets.token_hex(4)}"
        self.r.echo(marker)
        try:
            while True:
                c = self.monitor.next_command()
                if marker in c["command"]:
                    break
                if c["db"] == self.db and c["client_type"] != "lua":
                    self.sent.append(c)
        finally:
            self.monitor.__exit__()
            self.r.close()

    def naming(self, *words: str) -> list[str]:
        """The commands (as text) that name any of `words` (a visitor's or session's id)."""
        return [c["command"] for c in self.sent if any(w in c["command"] for w in words)]

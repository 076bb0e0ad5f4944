"""A Redis outage in the log: one line when it starts, a count while it lasts, one when it ends.

Every refused batch used to log its own traceback (about 4,000 per 5 s outage
with 200 sessions). The tracker is pure state: the caller passes the time and
writes the line it returns, if any.
"""

from __future__ import annotations

import redis.exceptions

# While Redis stays away, a count at most this often: enough to see it is still
# down, few enough that a long outage is a handful of lines.
REPORT_EVERY_S = 30.0


def is_outage(exc: BaseException) -> bool:
    """Whether an error means Redis cannot be reached (not a bug in a script or a caller)."""
    # On Redis Cluster, a slot without a master (a failover under way) is an outage of
    # that slot's visitors too: CLUSTERDOWN, TRYAGAIN, or no node known for the slot.
    return isinstance(exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
                            redis.exceptions.ClusterDownError, redis.exceptions.TryAgainError,
                            redis.exceptions.SlotNotCoveredError, ConnectionError, TimeoutError))


class Outage:
    """Whether Redis is away, since when, and how many requests it refused meanwhile."""

    def __init__(self, report_every_s: float = REPORT_EVERY_S) -> None:
        self.report_every_s = report_every_s
        self.since_s: float | None = None
        self.refused = 0
        self._reported_s = 0.0

    @property
    def down(self) -> bool:
        return self.since_s is not None

    def failed(self, now_s: float, error: str, refused: bool = True) -> str | None:
        """Redis failed a request; the line to log, if one is due."""
        if refused:
            self.refused += 1
        if self.since_s is None:
            self.since_s = self._reported_s = now_s
            return f"redis unreachable ({error}); refusing batches until it answers"
        if now_s - self._reported_s >= self.report_every_s:
            self._reported_s = now_s
            return f"redis still unreachable after {now_s - self.since_s:.0f} s; {self.refused} requests refused so far"
        return None

    def answered(self, now_s: float) -> str | None:
        """Redis answered; the line to log if that ends an outage."""
        if self.since_s is None:
            return None
        line = f"redis is back after {now_s - self.since_s:.1f} s; {self.refused} requests were refused"
        self.since_s, self.refused = None, 0
        return line


class Tally:
    """Something that befalls many sessions at once (the store lost their state): the first is
    logged at once, the rest are counted into a line at most every `report_every_s`."""

    def __init__(self, what: str, report_every_s: float = REPORT_EVERY_S) -> None:
        self.what = what
        self.report_every_s = report_every_s
        self._said_s: float | None = None
        self._unsaid = 0

    def note(self, now_s: float) -> str | None:
        """One more; the line to log, if one is due."""
        self._unsaid += 1
        if self._said_s is None:
            self._said_s, self._unsaid = now_s, 0
            return f"{self.what} (the next are counted, a line at most every {self.report_every_s:.0f} s)"
        if now_s - self._said_s >= self.report_every_s:
            line = f"{self.what}: {self._unsaid} more in the last {now_s - self._said_s:.0f} s"
            self._said_s, self._unsaid = now_s, 0
            return line
        return None

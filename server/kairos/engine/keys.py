"""Every Redis key Kairos writes, in one place.

Session keys carry the session id as a hash tag (`{sid}`), so all keys of a session
live in one Redis Cluster slot and one Lua script may touch them all.
"""

PREFIX = "kairos"


class EmptyId(ValueError):
    """A key was asked for an empty visitor or session id.

    After Redis lost its data, a session's hash came back holding only what the
    next batch wrote — no `vid` — and every show of 200 visitors went under one
    key, `kairos:{v:}:shows`, sharing their caps. No key is ever built from an
    empty id: the write is refused here, whichever path it came by.
    """


def _id(kind: str, value: str) -> str:
    if not value:
        raise EmptyId(f"refused to build a Redis key from an empty {kind} id")
    return value
# Sessions seen lately, scored by last page load (ms): the dashboard's list.
LIVE = f"{PREFIX}:live"


# The timer queue: due times and payloads, one hash tag so one Lua script may
# claim from both. (One slot for all timers; shard by tag if it ever runs hot.)
TIMERS_DUE = f"{PREFIX}:{{timers}}:due"
TIMERS_DATA = f"{PREFIX}:{{timers}}:data"
# Claimed timers are leased, not removed: member -> lease deadline (ms), and member ->
# the process holding it. A timer leaves the queue when its outcome is recorded; one
# whose process died (or whose lease ran out) is claimed again by another.
TIMERS_LEASED = f"{PREFIX}:{{timers}}:leased"
TIMERS_HOLDER = f"{PREFIX}:{{timers}}:holder"
# Live processes: node id -> alive until (ms), renewed by each process's heartbeat.
# In the timers' slot so the claim reads it; the dashboard joins sessions' sockets on it.
NODES = f"{PREFIX}:{{timers}}:nodes"
# Pub/sub: a due timer armed sooner than the timer loops expect wakes them.
TIMERS_WAKE = f"{PREFIX}:timers:wake"


# Ended page loads' session rows for training (kairos export-sessions): sid -> last
# write (ms), and sid -> row. One hash tag: one script keeps the two in step.
ARCHIVE_INDEX = f"{PREFIX}:{{archive}}:idx"
ARCHIVE_ROWS = f"{PREFIX}:{{archive}}:rows"


def node_channel(node: str) -> str:
    """Where a process hears of nudges for the sockets it holds."""
    return f"{PREFIX}:node:{node}"


def visitor(vid: str, part: str) -> str:
    """A visitor's keys (info, views, shows), hash-tagged by visitor."""
    return f"{PREFIX}:{{v:{_id('visitor', vid)}}}:{part}"


def visitor_sessions(vid: str) -> str:
    """Every session of a visitor (sorted set: sid -> ms last seen or archived): what forgetting walks."""
    return visitor(vid, "sids")


def rule_window(rule: str, bucket: int) -> str:
    """Shows of a rule to anyone in one fixed window."""
    return f"{PREFIX}:rule:{rule}:{bucket}"


def session(sid: str) -> str:
    return f"{PREFIX}:{{{_id('session', sid)}}}:s"


def log(sid: str) -> str:
    return f"{PREFIX}:{{{_id('session', sid)}}}:log"


def stats(bucket_ms: int) -> str:
    """Rule counters of one five-minute bucket (engine.base.STATS_BUCKET_MS)."""
    return f"{PREFIX}:stats:{bucket_ms}"


# Paused rules (rule -> since ms): read by claim_show.lua with every show.
PAUSED = f"{PREFIX}:paused"
# Dashboard feed: one channel for every process, and a flag that some dashboard watches.
FEED = f"{PREFIX}:feed"
FEED_WATCHED = f"{PREFIX}:feed:watched"


# Staff access. Neither names a person or an address: a client is a keyed hash of
# its address (kairos.lockout), a login a digest of its cookie's random id (kairos.staff).
def staff_failures(client: str) -> str:
    """Wrong admin tokens from one client in its current window; expires with the window."""
    return f"{PREFIX}:staff:failures:{client}"


def staff_session(session: str) -> str:
    """A staff login's record (hash: fp, created_ms, expires_ms); expires with the login."""
    return f"{PREFIX}:staff:session:{session}"

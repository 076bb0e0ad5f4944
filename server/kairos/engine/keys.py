"""Every Redis key Kairos writes, in one place.

Redis Cluster runs a script or a multi-key command only on keys of one hash slot
(the CRC16 of a key's `{tag}`, modulo 16384). Everything a page load's hello, a
batch, a claim or a feedback touches is in its visitor's slot:

- a visitor's keys are tagged `{v:<vid>}`, as they always were (so an upgrade
  keeps their shows, caps and index of sessions: nothing to migrate);
- a session id carries a 3-character tag chosen to hash to that same slot
  (`visitor_tag`), `<tag>.<random>`, and its keys are `kairos:{<tag>}:<sid>:s`
  and `:log`. Two visitors may share a tag (16,384 slots): that only puts
  their keys side by side, never mixes them, as the full ids stay in the keys;
- a session id of the old form (`s_<random>`, no tag: pages open across the
  upgrade) keeps its keys `kairos:{<sid>}:s` and `:log`. Its batches stay in
  one slot; its hello and claims cross slots, which one Redis runs and a
  cluster does not (the engine never resumes one there: kairos.engine.redis).

What a claim used to touch elsewhere is done beside the script, not in it: the
rule counters (`stats`), the per-rule window cap (`rule_window`, reserved before
the claim and given back if it is refused), the paused rules (`PAUSED`, read into
each process) and the dashboard's list (`LIVE`).

Still crossing slots, each because one step must be atomic across them: the
timer scripts (arm_timers.lua and finish_timer.lua take the `{timers}` queue and
the sessions' keys together: a timer leaves the queue only with its outcome in
the session's log). On a cluster they need the queue sharded by the sessions'
tags, or the outcome written in a second step that a re-claimed timer repeats.
"""

import binascii
import itertools
import re
import string
import zlib
from functools import cache

PREFIX = "kairos"
SLOTS = 16384
# A tagged session id: its tag, a dot, then what makes it unique. Old ids
# ("s_" + token_urlsafe) never have a dot at that place.
_TAGGED = re.compile(r"([0-9A-Za-z]{3})\.")


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
# Sessions seen lately, scored by last page load (ms): the dashboard's list. One key
# for all: written beside the hello's script, in the same pipeline, not by it.
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

# On Redis Cluster the queue is sharded: TIMER_SHARDS queues of the four keys above,
# each under a hash tag of its own ({timers:k}), so the shards spread over the
# masters and no one of them carries every timer. A session's timers are all in one
# shard (timer_shard), so arming, firing and forgetting them each touch one. Fixed:
# the processes of one installation must agree on it, or a timer is never found.
TIMER_SHARDS = 16


def timer_shard(sid: str) -> int:
    """The shard of the timer queue that holds a session's timers (on Redis Cluster)."""
    return zlib.crc32(sid.encode()) % TIMER_SHARDS


def live(shard: int) -> str:
    """One shard of the dashboard's list of live sessions, on Redis Cluster (the shard: timer_shard)."""
    return f"{PREFIX}:{{live:{shard}}}"


def archive(shard: int) -> tuple[str, str]:
    """One shard of the rows kept for training, on Redis Cluster: its index and rows (the shard: timer_shard)."""
    tag = f"{PREFIX}:{{archive:{shard}}}"
    return f"{tag}:idx", f"{tag}:rows"


def timer_keys(shard: int) -> tuple[str, str, str, str]:
    """One shard's due times, payloads, leases and holders, in the order the timer scripts take them."""
    tag = f"{PREFIX}:{{timers:{shard}}}"
    return f"{tag}:due", f"{tag}:data", f"{tag}:leased", f"{tag}:holder"


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
    """Shows of a rule to anyone in one fixed window: reserved before a claim, given back
    if it is refused (kairos.engine.redis.RedisEngine.claim_show), never in a script."""
    return f"{PREFIX}:rule:{rule}:{bucket}"


def slot(tag: str) -> int:
    """The Redis Cluster slot of a hash tag (CRC16/XMODEM, as Redis computes it)."""
    return binascii.crc_hqx(tag.encode(), 0) % SLOTS


@cache
def _tags() -> tuple[str, ...]:
    """For each slot, the first 3-character alphanumeric tag that hashes to it.

    238,328 candidates cover all 16,384 slots; built once per process (tens of ms),
    on the first session opened.
    """
    table: dict[int, str] = {}
    for chars in itertools.product(string.digits + string.ascii_letters, repeat=3):
        table.setdefault(slot("".join(chars)), "".join(chars))
        if len(table) == SLOTS:
            break
    return tuple(table[s] for s in range(SLOTS))


def visitor_tag(vid: str) -> str:
    """The tag a session id of this visitor carries: it hashes to the slot of the visitor's keys."""
    return _tags()[slot(f"v:{_id('visitor', vid)}")]


def session_tag(sid: str) -> str | None:
    """The tag a session id carries, None for an id of the old form (no tag)."""
    m = _TAGGED.match(sid)
    return m.group(1) if m else None


def session(sid: str) -> str:
    """A session's state (one MessagePack string, lib/ops.lua), in its visitor's slot."""
    return _session_key(sid, "s")


def log(sid: str) -> str:
    """A session's timeline (a list, newest first), beside its state."""
    return _session_key(sid, "log")


def _session_key(sid: str, part: str) -> str:
    tag = session_tag(_id("session", sid))
    return f"{PREFIX}:{{{tag}}}:{sid}:{part}" if tag else f"{PREFIX}:{{{sid}}}:{part}"


def stats(bucket_ms: int) -> str:
    """Rule counters of one five-minute bucket (engine.base.STATS_BUCKET_MS), counted beside
    the claims and feedback that they count, not in their scripts (another slot)."""
    return f"{PREFIX}:stats:{bucket_ms}"


def arm_stats(day_ms: int) -> str:
    """Experiments' counters of one day (engine.base.arm_day), written as the rule counters are."""
    return f"{PREFIX}:arms:{day_ms}"


# Paused rules (rule -> since ms). Each process keeps a view of it for its claims
# (RedisEngine.paused_view): its own pauses at once, the others' within redis.PAUSED_REFRESH_S.
PAUSED = f"{PREFIX}:paused"
# Dashboard feed: one channel for every process, and a flag that some dashboard watches.
FEED = f"{PREFIX}:feed"
FEED_WATCHED = f"{PREFIX}:feed:watched"
# Visitors erased on request: every process closes their pages (a second tab may be
# open on another one, whose next batch would otherwise open the session again).
FORGOTTEN = f"{PREFIX}:forgotten"


# Staff access. Neither names a person or an address: a client is a keyed hash of
# its address (kairos.lockout), a login a digest of its cookie's random id (kairos.staff).
def staff_failures(client: str) -> str:
    """Wrong admin tokens from one client in its current window; expires with the window."""
    return f"{PREFIX}:staff:failures:{client}"


def staff_session(session: str) -> str:
    """A staff login's record (hash: fp, created_ms, expires_ms); expires with the login."""
    return f"{PREFIX}:staff:session:{session}"

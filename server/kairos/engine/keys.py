"""Every Redis key Kairos writes, in one place.

Session keys carry the session id as a hash tag (`{sid}`), so all keys of a session
live in one Redis Cluster slot and one Lua script may touch them all.
"""

PREFIX = "kairos"
# Sessions seen lately, scored by last page load (ms): the dashboard's list.
LIVE = f"{PREFIX}:live"


def session(sid: str) -> str:
    return f"{PREFIX}:{{{sid}}}:s"


def log(sid: str) -> str:
    return f"{PREFIX}:{{{sid}}}:log"

"""Session storage engines: one interface, a memory engine and a Redis engine.

Both keep the same promises, held by one contract test suite
(tests/test_engine_contract.py): a batch is applied atomically, caps are checked
and recorded atomically, and everything stored expires.
"""

from __future__ import annotations

from .base import Engine
from .memory import MemoryEngine

__all__ = ["Engine", "MemoryEngine", "create_engine"]


def create_engine(kind: str, *, redis_url: str, session_ttl_s: int, redis_pool_size: int = 8,
                  archive_ttl_s: int = 30 * 24 * 3600) -> Engine:
    """Build the engine named on the command line."""
    if kind == "memory":
        return MemoryEngine(session_ttl_s=session_ttl_s, archive_ttl_s=archive_ttl_s)
    if kind == "redis":
        from .cluster import RedisClusterEngine, is_cluster_url
        from .redis import RedisEngine  # imported here so the memory engine needs no Redis client

        if is_cluster_url(redis_url):
            return RedisClusterEngine(redis_url, session_ttl_s=session_ttl_s, pool_size=redis_pool_size,
                                      archive_ttl_s=archive_ttl_s)
        return RedisEngine(redis_url, session_ttl_s=session_ttl_s, pool_size=redis_pool_size, archive_ttl_s=archive_ttl_s)
    raise ValueError(f"unknown engine {kind!r}, expected 'memory' or 'redis'")

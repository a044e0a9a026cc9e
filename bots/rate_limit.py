"""Message limits in Redis, per person and per community (a Telegram group, a Discord guild, a
widget key as a whole): fixed one-minute windows shared by every app process."""

from __future__ import annotations

import re
import time
from enum import Enum

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline

from concierge.reach import Reach
from concierge.redis_keys import entity_key

_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]")


class Verdict(Enum):
    ALLOW = "allow"
    WARN = "warn"  # the first message over the limit: say so once
    DROP = "drop"  # further ones in the same minute: ignore silently
    COMMUNITY = "community"  # the community's first message over its limit: say so once


class RateLimiter:
    def __init__(self, redis: aioredis.Redis, per_minute: int, *, per_community: int | None = None) -> None:
        self._redis = redis
        self._limit = per_minute
        self._community_limit = per_community

    async def check(self, reach: Reach, now: float | None = None) -> Verdict:
        async with self._redis.pipeline(transaction=False) as pipe:
            self.count(pipe, reach, now)
            count, _ = await pipe.execute()
        return self.verdict(count)

    def count(self, pipe: Pipeline, reach: Reach, now: float | None = None) -> None:
        """Add this message to the count, in a pipeline shared with the turn's other reads:
        two replies (the count, then the expiry's) that `verdict` reads the first of."""
        window = int((now if now is not None else time.time()) // 60)
        key = entity_key("ratelimit", f"{reach.channel.value}.{reach.user_id}", str(window))
        pipe.incr(key)
        pipe.expire(key, 120)

    def count_community(self, pipe: Pipeline, community: str, now: float | None = None) -> bool:
        """Add this message to its community's count (two replies, as `count`); False when
        communities are not limited, and nothing was queued."""
        if self._community_limit is None:
            return False
        window = int((now if now is not None else time.time()) // 60)
        # Channels check community ids already; anything else still cannot forge a key.
        key = entity_key("ratelimit", "community." + _UNSAFE.sub("_", community), str(window))
        pipe.incr(key)
        pipe.expire(key, 120)
        return True

    def verdict(self, count: int, community_count: int | None = None) -> Verdict:
        if count > self._limit:
            return Verdict.WARN if count == self._limit + 1 else Verdict.DROP
        limit = self._community_limit
        if community_count is None or limit is None or community_count <= limit:
            return Verdict.ALLOW
        return Verdict.COMMUNITY if community_count == limit + 1 else Verdict.DROP

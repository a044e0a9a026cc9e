"""Per-person message limits in Redis: a fixed one-minute window shared by every app process."""

from __future__ import annotations

import time
from enum import Enum

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline

from concierge.reach import Reach
from concierge.redis_keys import entity_key


class Verdict(Enum):
    ALLOW = "allow"
    WARN = "warn"  # the first message over the limit: say so once
    DROP = "drop"  # further ones in the same minute: ignore silently


class RateLimiter:
    def __init__(self, redis: aioredis.Redis, per_minute: int) -> None:
        self._redis = redis
        self._limit = per_minute

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

    def verdict(self, count: int) -> Verdict:
        if count <= self._limit:
            return Verdict.ALLOW
        return Verdict.WARN if count == self._limit + 1 else Verdict.DROP

"""The line customers wait in when every suitable expert is busy, and where their request waits
for an answer: both in Redis so every app process sees the same order and the same clocks.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from concierge.redis_keys import PREFIX

# Global families: one key each, hash-tagged so a Cluster keeps them in one slot.
QUEUE_KEY = f"{PREFIX}:{{queue}}:requests"
TOLD_KEY = f"{PREFIX}:{{queue}}:told"
DEADLINES_KEY = f"{PREFIX}:{{offers}}:deadlines"


def _text(value: object) -> str:
    # redis-py's stubs type replies as unions of every shape a command can return.
    return value.decode() if isinstance(value, bytes) else str(value)


class WaitingLine:
    """First come, first served; a customer's place is 1-based."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis

    async def join(self, request_id: str, at: float) -> int:
        await self._redis.zadd(QUEUE_KEY, {request_id: at}, nx=True)
        place = await self.place(request_id)
        assert place is not None
        await self._redis.hset(TOLD_KEY, request_id, place)
        return place

    async def leave(self, request_id: str) -> bool:
        removed = await self._redis.zrem(QUEUE_KEY, request_id)
        await self._redis.hdel(TOLD_KEY, request_id)
        return bool(removed)

    async def place(self, request_id: str) -> int | None:
        rank = await self._redis.zrank(QUEUE_KEY, request_id)
        return None if rank is None else int(rank) + 1  # type: ignore[arg-type]

    async def length(self) -> int:
        return int(await self._redis.zcard(QUEUE_KEY))

    async def waiting(self, limit: int = 50) -> list[str]:
        return [_text(member) for member in await self._redis.zrange(QUEUE_KEY, 0, limit - 1)]

    async def moved(self) -> list[tuple[str, int]]:
        """(request, new place) for everyone whose place changed since they were last told."""
        members = [_text(m) for m in await self._redis.zrange(QUEUE_KEY, 0, -1)]
        if not members:
            return []
        told = await self._redis.hmget(TOLD_KEY, members)
        changed = [
            (request_id, place)
            for place, (request_id, last) in enumerate(zip(members, told, strict=True), start=1)
            if last is None or int(last) != place
        ]
        if changed:
            await self._redis.hset(TOLD_KEY, mapping=dict(changed))
        return changed


class OfferClock:
    """When each offered request's current round of offers runs out."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis

    async def start(self, request_id: str, deadline: float) -> None:
        await self._redis.zadd(DEADLINES_KEY, {request_id: deadline})

    async def stop(self, request_id: str) -> None:
        await self._redis.zrem(DEADLINES_KEY, request_id)

    async def take(self, request_id: str) -> bool:
        """Claim the handling of this request's round now; False if another caller has it."""
        return bool(await self._redis.zrem(DEADLINES_KEY, request_id))

    async def running(self) -> int:
        """How many requests wait for experts' answers now."""
        return int(await self._redis.zcard(DEADLINES_KEY))

    async def due(self, now: float, limit: int = 100) -> list[str]:
        """Requests whose round ran out; each is handed to exactly one caller (ZREM decides)."""
        candidates = [
            _text(m) for m in await self._redis.zrangebyscore(DEADLINES_KEY, "-inf", now, start=0, num=limit)
        ]
        return [request_id for request_id in candidates if await self._redis.zrem(DEADLINES_KEY, request_id)]

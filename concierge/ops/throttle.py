"""Failed logins counted per operator name and per client address in Redis (so every app process
counts together); past the limit, logins from that name or address are refused until the
lock-out ends, even with the right password."""

from __future__ import annotations

import hashlib

import redis.asyncio as aioredis

from concierge.redis_keys import entity_key


def _key(kind: str, value: str) -> str:
    # Hashed: names and addresses typed by strangers never become key syntax.
    return entity_key("ops_login_failures", f"{kind}-{hashlib.sha256(value.encode()).hexdigest()[:32]}")


class LoginThrottle:
    def __init__(self, redis: aioredis.Redis, *, attempts: int, lockout_seconds: int) -> None:
        self._redis = redis
        self._attempts = attempts
        self._lockout = lockout_seconds

    def _keys(self, name: str, address: str) -> list[str]:
        return [_key("name", name.lower()), _key("ip", address)]

    async def locked_for(self, name: str, address: str) -> int:
        """Seconds until a login may be tried again for this name or address (0: now)."""
        waits = [0]
        for key in self._keys(name, address):
            count = await self._redis.get(key)
            if count is not None and int(count) >= self._attempts:
                waits.append(max(int(await self._redis.ttl(key)), 1))
        return max(waits)

    async def failed(self, name: str, address: str) -> None:
        for key in self._keys(name, address):
            # The window starts at the first failure (EXPIRE NX would need Redis 7; the embedded one is 6.2).
            if int(await self._redis.incr(key)) == 1:
                await self._redis.expire(key, self._lockout)

    async def succeeded(self, name: str) -> None:
        # Only the name is forgiven: one good login must not reset a guessing address.
        await self._redis.delete(self._keys(name, "")[0])

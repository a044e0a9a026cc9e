"""Operators' login sessions, kept in Redis: the cookie holds a random token, Redis only its
SHA-256, so a copy of Redis cannot be replayed as cookies. A session ends when idle for
`ops_idle_minutes` (the key's TTL, renewed on use) or `ops_session_hours` after login, whichever
comes first; logging out or disabling the operator ends it at once."""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

import redis.asyncio as aioredis

from concierge.redis_keys import entity_key

TOKEN_BYTES = 32
_MAX_TOKEN_CHARS = 128


@dataclass(frozen=True, slots=True)
class LoginSession:
    operator_id: str
    csrf_token: str  # the synchronizer token every form of this session carries
    started: float


def _key(token: str) -> str:
    return entity_key("ops_session", hashlib.sha256(token.encode()).hexdigest())


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class LoginSessions:
    def __init__(self, redis: aioredis.Redis, *, idle_seconds: int, absolute_seconds: int) -> None:
        self._redis = redis
        self._idle = idle_seconds
        self._absolute = absolute_seconds

    async def start(self, operator_id: str) -> str:
        """A new session's token, for the cookie only."""
        token = secrets.token_urlsafe(TOKEN_BYTES)
        key = _key(token)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                key,
                mapping={
                    "operator": operator_id,
                    "csrf": secrets.token_urlsafe(TOKEN_BYTES),
                    "started": repr(time.time()),
                },
            )
            pipe.expire(key, self._idle)
            await pipe.execute()
        return token

    async def find(self, token: str | None) -> LoginSession | None:
        """The live session of this cookie token (renewing its idle timeout), or None."""
        if not token or len(token) > _MAX_TOKEN_CHARS:
            return None
        key = _key(token)
        values = {_text(k): _text(v) for k, v in (await self._redis.hgetall(key)).items()}
        if not {"operator", "csrf", "started"} <= values.keys():
            return None
        started = float(values["started"])
        left = started + self._absolute - time.time()
        if left <= 0:
            await self._redis.delete(key)
            return None
        await self._redis.expire(key, min(self._idle, int(left) + 1))
        return LoginSession(values["operator"], values["csrf"], started)

    async def end(self, token: str | None) -> None:
        if token and len(token) <= _MAX_TOKEN_CHARS:
            await self._redis.delete(_key(token))

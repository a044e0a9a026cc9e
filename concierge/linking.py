"""One person across channels: a one-time code from one identity links another to the same person.

The code lives 10 minutes in Redis and is taken with GETDEL, so it works once. Linking moves
the entering identity to the code's person; an expert listing moves with it, unless both
people have one (that takes an operator).
"""

from __future__ import annotations

import secrets

import redis.asyncio as aioredis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from concierge.errors import DomainError, NotFound
from concierge.model import Channel, ChannelIdentity, Expert
from concierge.redis_keys import entity_key

LINK_CODE_TTL_SECONDS = 10 * 60
_ALPHABET = "23456789ABCDEFGHJKMNPQRSTVWXYZ"  # nothing to misread: no 0/O, 1/I/L, U
_MAX_CODE = 16


class LinkRefused(DomainError):
    def __init__(self, reason: str) -> None:
        super().__init__(f"cannot link: {reason}")
        self.reason = reason  # invalid | same_person | two_listings


class IdentityLinks:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], redis: aioredis.Redis) -> None:
        self._sessions = sessions
        self._redis = redis

    async def new_code(self, person_id: str) -> str:
        code = "".join(secrets.choice(_ALPHABET) for _ in range(8))
        await self._redis.set(entity_key("link", code, "person"), person_id, ex=LINK_CODE_TTL_SECONDS)
        return code

    async def link(self, channel: Channel, user_id: str, code: str) -> str:
        """Move this channel identity to the person who made `code`; that person's id."""
        cleaned = "".join(ch for ch in code.upper() if ch.isalnum())
        if not cleaned or len(cleaned) > _MAX_CODE:
            raise LinkRefused("invalid")
        target = await self._redis.getdel(entity_key("link", cleaned, "person"))
        if target is None:
            raise LinkRefused("invalid")
        target_id = target.decode() if isinstance(target, bytes) else str(target)
        async with self._sessions.begin() as db:
            identity = await db.scalar(
                select(ChannelIdentity).where(
                    ChannelIdentity.channel == channel, ChannelIdentity.external_id == user_id
                )
            )
            if identity is None:
                raise NotFound("identity", f"{channel.value}:{user_id}")
            if identity.person_id == target_id:
                raise LinkRefused("same_person")
            mine = await db.scalar(select(Expert).where(Expert.person_id == identity.person_id))
            theirs = await db.scalar(select(Expert).where(Expert.person_id == target_id))
            if mine is not None and theirs is not None:
                raise LinkRefused("two_listings")
            if mine is not None:
                mine.person_id = target_id
            identity.person_id = target_id
        return target_id

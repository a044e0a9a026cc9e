"""Muting: someone who floods (past the rate limit minute after minute), writes abuse, or is
muted by an operator is ignored until a time, told so once, then met with silence.

The mute itself is on the person (`Person.muted_until`), so it follows them to every channel
and costs the hot path nothing: the identity lookup of each turn reads it anyway. Redis keeps
the flooding strikes of a channel identity and whether the muted person was told.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from enum import StrEnum

import redis.asyncio as aioredis
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from concierge.errors import NotFound
from concierge.model import Channel, ChannelIdentity, Person, utcnow
from concierge.redis_keys import entity_key

STRIKE_WINDOW_SECONDS = 3600  # minutes over the limit within this long add up


class MuteReason(StrEnum):
    FLOODING = "flooding"
    ABUSE = "abuse"
    OPERATOR = "operator"


class Moderation:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        redis: aioredis.Redis,
        *,
        strikes: int,
        minutes: int,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._sessions = sessions
        self._redis = redis
        self._strikes = strikes
        self._minutes = minutes
        self._clock = clock

    def _now(self) -> datetime:
        return self._clock().replace(tzinfo=UTC)

    async def mute(self, person_id: str, reason: MuteReason, minutes: int | None = None) -> datetime:
        """Mute for `minutes` (the configured time by default); a longer mute in force stays."""
        return await mute(
            self._sessions, person_id, reason, minutes if minutes is not None else self._minutes, self._now()
        )

    async def strike(self, channel: Channel, user_id: str) -> datetime | None:
        """A minute in which this identity went past the rate limit; enough of them mute it."""
        key = entity_key("strikes", f"{channel.value}.{user_id}")
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.incr(key)
            pipe.expire(key, STRIKE_WINDOW_SECONDS)
            count, _ = await pipe.execute()
        if int(count) < self._strikes:
            return None
        await self._redis.delete(key)
        async with self._sessions() as db:
            person_id = await db.scalar(
                select(ChannelIdentity.person_id).where(
                    ChannelIdentity.channel == channel, ChannelIdentity.external_id == user_id
                )
            )
        if person_id is None:  # flooding before a first message was ever handled
            return None
        return await self.mute(person_id, MuteReason.FLOODING)

    async def tell_once(self, person_id: str, until: datetime) -> bool:
        """Whether the muted person is still to be told (once per mute: a new mute has a new end)."""
        seconds = max(1, int((until - self._now()).total_seconds()))
        key = entity_key("mute", person_id, f"told.{int(until.timestamp())}")
        return bool(await self._redis.set(key, "1", nx=True, ex=seconds))


async def mute(
    sessions: async_sessionmaker[AsyncSession],
    person_id: str,
    reason: MuteReason,
    minutes: int,
    now: datetime,
) -> datetime:
    """Mute a person until `now` + `minutes` (a longer mute in force stays); the end."""
    until = now + timedelta(minutes=minutes)
    async with sessions.begin() as db:
        person = await db.get(Person, person_id, with_for_update=True)
        if person is None:
            raise NotFound("person", person_id)
        current = person.muted_until.replace(tzinfo=UTC) if person.muted_until else None
        if current is not None and current >= until:
            return current
        person.muted_until, person.muted_reason = until, reason.value
    return until


async def unmute(sessions: async_sessionmaker[AsyncSession], person_id: str) -> None:
    async with sessions.begin() as db:
        result = await db.execute(
            update(Person).where(Person.id == person_id).values(muted_until=None, muted_reason=None)
        )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise NotFound("person", person_id)


async def muted_people(
    sessions: async_sessionmaker[AsyncSession], now: datetime
) -> list[tuple[str, str, datetime | None, str | None]]:
    """(person id, name, until, reason) of everyone muted at `now`, soonest end first."""
    async with sessions() as db:
        rows = await db.execute(
            select(Person.id, Person.display_name, Person.muted_until, Person.muted_reason)
            .where(Person.muted_until > now)
            .order_by(Person.muted_until)
        )
        return [(pid, name, until, reason) for pid, name, until, reason in rows]

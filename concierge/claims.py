"""Experts answering an offer: the first Accept wins, the others learn at once it is taken.

The claim is a Redis `SET NX` on `concierge:{request:<id>}:claim`: one round trip decides the
race across every app process, so the losers never reach the database. The winner then moves
the request through `Lifecycle.claim`, which stays the authority (its compare-and-set would
refuse a second session even without Redis). If that transition fails, the claim is released
with a compare-and-delete so the next expert can take the request.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import redis.asyncio as aioredis
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from concierge.errors import DomainError
from concierge.model import Offer, OfferStatus, Session, utcnow
from concierge.redis_keys import entity_key
from concierge.transitions import Lifecycle

CLAIM_TTL_SECONDS = 24 * 3600  # the database is authoritative long before this expires

# Delete the claim only if it still names us: never release another expert's win.
_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


class AlreadyTaken(DomainError):
    """Another expert accepted first."""

    def __init__(self, request_id: str) -> None:
        super().__init__(f"request {request_id} was already taken")
        self.request_id = request_id


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def claim_key(request_id: str) -> str:
    return entity_key("request", request_id, "claim")


class OfferDesk:
    def __init__(
        self,
        redis: aioredis.Redis,
        sessions: async_sessionmaker[AsyncSession],
        lifecycle: Lifecycle,
    ) -> None:
        self._redis = redis
        self._sessions = sessions
        self._lifecycle = lifecycle

    async def accept(self, request_id: str, expert_id: str, *, commission_percent: Decimal) -> Session:
        """Claim the request for `expert_id`; AlreadyTaken if someone else was first.

        Pressing Accept twice is harmless: the second press returns the same session.
        """
        key = claim_key(request_id)
        won = await self._redis.set(key, expert_id, nx=True, ex=CLAIM_TTL_SECONDS)
        if not won:
            holder = await self._redis.get(key)
            if holder is not None and _text(holder) == expert_id:
                existing = await self._session_of(request_id, expert_id)
                if existing is not None:
                    return existing
            raise AlreadyTaken(request_id)
        try:
            return await self._lifecycle.claim(request_id, expert_id, commission_percent=commission_percent)
        except BaseException:
            await self._redis.eval(_RELEASE, 1, key, expert_id)
            raise

    async def decline(self, request_id: str, expert_id: str, now: datetime | None = None) -> bool:
        """Record a Decline; False when the offer was no longer pending (taken, expired…)."""
        async with self._sessions.begin() as db:
            result = await db.execute(
                update(Offer)
                .where(
                    Offer.request_id == request_id,
                    Offer.expert_id == expert_id,
                    Offer.status == OfferStatus.PENDING,
                )
                .values(status=OfferStatus.DECLINED, answered_at=now or utcnow())
                .execution_options(synchronize_session=False)
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    async def _session_of(self, request_id: str, expert_id: str) -> Session | None:
        async with self._sessions() as db:
            return await db.scalar(
                select(Session).where(Session.request_id == request_id, Session.expert_id == expert_id)
            )

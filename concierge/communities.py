"""Where a request came from: the group, guild or widget a business linked, and what that means
for who is asked (its roster only, or first) and the commission."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from concierge.errors import DomainError
from concierge.model import Business, Channel, Community, HelpRequest, RosterScope


@dataclass(frozen=True, slots=True)
class Scope:
    community_id: str
    business_id: str
    roster_only: bool


class Communities:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], reads: async_sessionmaker[AsyncSession]
    ) -> None:
        self._sessions = sessions
        self._reads = reads

    async def link(self, channel: Channel, external_id: str, setup_code: str) -> str:
        """A group, guild or widget becomes one of a business's communities; the business's name."""
        async with self._sessions.begin() as db:
            business = await db.scalar(select(Business).where(Business.setup_code == setup_code.strip()))
            if business is None:
                raise DomainError("unknown setup code")
            existing = await db.scalar(
                select(Community).where(Community.channel == channel, Community.external_id == external_id)
            )
            if existing is None:
                db.add(Community(business_id=business.id, channel=channel, external_id=external_id))
            else:
                existing.business_id = business.id
            return business.name

    async def scope_of(self, channel: Channel, external_id: str) -> Scope | None:
        async with self._reads() as db:
            row = (
                await db.execute(
                    select(Community.id, Business.id, Business.scope)
                    .join(Business, Business.id == Community.business_id)
                    .where(Community.channel == channel, Community.external_id == external_id)
                )
            ).first()
        return None if row is None else Scope(row[0], row[1], row[2] is RosterScope.ROSTER_ONLY)

    async def scope_of_request(self, community_id: str | None) -> Scope | None:
        if community_id is None:
            return None
        async with self._reads() as db:
            row = (
                await db.execute(
                    select(Business.id, Business.scope)
                    .join(Community, Community.business_id == Business.id)
                    .where(Community.id == community_id)
                )
            ).first()
        return None if row is None else Scope(community_id, row[0], row[1] is RosterScope.ROSTER_ONLY)

    async def commission_override(self, request_id: str) -> Decimal | None:
        """The business's own commission for a request from one of its communities, if it set one."""
        async with self._reads() as db:
            override: Decimal | None = await db.scalar(
                select(Business.commission_percent)
                .join(Community, Community.business_id == Business.id)
                .join(HelpRequest, HelpRequest.community_id == Community.id)
                .where(HelpRequest.id == request_id)
            )
        return override

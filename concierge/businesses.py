"""Businesses as an operator creates them: a setup code for linking groups and guilds, and
widget keys for the web chat on their own sites."""

from __future__ import annotations

import secrets
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from concierge.errors import DomainError, NotFound
from concierge.invites import generate_code
from concierge.model import Business, Channel, Community, RosterScope


async def create_business(
    sessions: async_sessionmaker[AsyncSession],
    name: str,
    *,
    scope: RosterScope = RosterScope.ROSTER_FIRST,
    commission_percent: Decimal | None = None,
) -> Business:
    name = " ".join(name.split())
    if not 1 <= len(name) <= 200:
        raise DomainError("a business name has 1–200 characters")
    if commission_percent is not None and not Decimal(0) <= commission_percent <= Decimal(100):
        raise DomainError("commission must be between 0 and 100 %")
    business = Business(
        name=name, scope=scope, commission_percent=commission_percent, setup_code=generate_code()
    )
    async with sessions.begin() as db:
        db.add(business)
    return business


async def create_widget_key(sessions: async_sessionmaker[AsyncSession], business_id: str) -> str:
    """A new key for the business's web widget (one per site, revocable one by one)."""
    key = secrets.token_urlsafe(18)
    async with sessions.begin() as db:
        if await db.get(Business, business_id) is None:
            raise NotFound("business", business_id)
        db.add(Community(business_id=business_id, channel=Channel.WEB, external_id=key))
    return key

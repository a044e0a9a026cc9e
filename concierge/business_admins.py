"""What a business's admins manage from the chat: who they are, the business's name, greeting,
branding, scope and sponsorship, its linked communities and its roster of experts.

Every change is checked here (the chat only parses), so a refused value is never half-stored.
The commission override stays with the operator (`concierge business create --commission`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from concierge.businesses import create_widget_key
from concierge.errors import DomainError, NotFound
from concierge.invites import create_invite, generate_code, normalise_code
from concierge.model import (
    Business,
    BusinessAdmin,
    Channel,
    Community,
    Expert,
    HelpRequest,
    InviteCode,
    Person,
    RosterScope,
    Session,
    utcnow,
)
from concierge.money import check_currency

MAX_GREETING = 500
MAX_LOGO_URL = 500
MAX_BUDGET = 10**12  # minor units: far above any real monthly budget, far below BigInteger's limit
_COLOUR = re.compile(r"#[0-9a-fA-F]{6}")
# Characters that have no business in a URL we put into a page's src attribute.
_URL_FORBIDDEN = re.compile(r"[\s\"'<>\\`]")


@dataclass(frozen=True, slots=True)
class BusinessView:
    id: str
    name: str
    scope: RosterScope
    greeting: str | None
    brand_colour: str | None
    logo_url: str | None
    sponsors_sessions: bool
    budget_amount: int | None
    budget_currency: str | None
    setup_code: str | None


@dataclass(frozen=True, slots=True)
class LinkedCommunity:
    id: str
    channel: Channel
    external_id: str


@dataclass(frozen=True, slots=True)
class RosterLine:
    expert_id: str
    name: str
    online: bool
    rating: float | None
    sessions_this_month: int


def check_colour(text: str) -> str:
    """ "#1a2B3c" → "#1a2b3c"; anything else (names, rgb(), url(...)) is refused."""
    colour = text.strip()
    if not _COLOUR.fullmatch(colour):
        raise DomainError("a colour is written #rrggbb, for example #0a7d4f")
    return colour.lower()


def check_logo_url(text: str) -> str:
    url = text.strip()
    parts = urlsplit(url)
    if len(url) > MAX_LOGO_URL or _URL_FORBIDDEN.search(url) or parts.scheme != "https" or not parts.hostname:
        raise DomainError("a logo is an https:// address of an image")
    return url


def check_greeting(text: str) -> str:
    greeting = text.strip()
    if not 1 <= len(greeting) <= MAX_GREETING:
        raise DomainError(f"a greeting has 1–{MAX_GREETING} characters")
    return greeting


def check_name(text: str) -> str:
    name = " ".join(text.split())
    if not 1 <= len(name) <= 200:
        raise DomainError("a business name has 1–200 characters")
    return name


def month_start(now: datetime) -> datetime:
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def view_of(business: Business) -> BusinessView:
    return BusinessView(
        id=business.id,
        name=business.name,
        scope=business.scope,
        greeting=business.greeting,
        brand_colour=business.brand_colour,
        logo_url=business.logo_url,
        sponsors_sessions=business.sponsors_sessions,
        budget_amount=business.sponsorship_budget_amount,
        budget_currency=business.sponsorship_currency,
        setup_code=business.setup_code,
    )


class BusinessAdmins:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], *, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self._sessions = sessions
        self._clock = clock

    # ------------------------------------------------------------------ who manages what

    async def admin_code(self, business_id: str, *, renew: bool = False) -> str:
        """The business's admin invitation code (made on first use; the operator hands it out).
        It stays valid for more admins until renewed."""
        async with self._sessions.begin() as db:
            business = await db.get(Business, business_id)
            if business is None:
                raise NotFound("business", business_id)
            if business.admin_code is None or renew:
                business.admin_code = generate_code()
            return business.admin_code

    async def join(self, person_id: str, code: str) -> BusinessView | None:
        """The sender becomes an admin of the business whose admin code this is; None: no such code."""
        normalised = normalise_code(code)
        async with self._sessions() as db:
            business_id = await db.scalar(select(Business.id).where(Business.admin_code == normalised))
        if business_id is None:
            return None
        try:
            async with self._sessions.begin() as db:
                if await db.get(BusinessAdmin, (business_id, person_id)) is None:
                    db.add(BusinessAdmin(business_id=business_id, person_id=person_id))
        except IntegrityError:  # the same person joining twice at once: one row stands
            pass
        return await self.managed(person_id, business_id)

    async def businesses_of(self, person_id: str) -> list[BusinessView]:
        async with self._sessions() as db:
            found = await db.scalars(
                select(Business)
                .join(BusinessAdmin, BusinessAdmin.business_id == Business.id)
                .where(BusinessAdmin.person_id == person_id)
                .order_by(Business.name)
            )
            return [view_of(business) for business in found]

    async def managed(self, person_id: str, business_id: str) -> BusinessView:
        """The business, if this person is one of its admins (NotFound otherwise: no hint it exists)."""
        async with self._sessions() as db:
            business = await self._check(db, person_id, business_id)
            return view_of(business)

    async def brand_in(self, channel: Channel, external_id: str) -> BusinessView | None:
        """The business a group, guild or widget key belongs to: its name, greeting and branding."""
        async with self._sessions() as db:
            business = await db.scalar(
                select(Business)
                .join(Community, Community.business_id == Business.id)
                .where(Community.channel == channel, Community.external_id == external_id)
            )
            return None if business is None else view_of(business)

    async def admins_of(self, business_id: str) -> list[str]:
        async with self._sessions() as db:
            return list(
                await db.scalars(
                    select(BusinessAdmin.person_id).where(BusinessAdmin.business_id == business_id)
                )
            )

    async def _check(self, db: AsyncSession, person_id: str, business_id: str) -> Business:
        business = await db.scalar(
            select(Business)
            .join(BusinessAdmin, BusinessAdmin.business_id == Business.id)
            .where(Business.id == business_id, BusinessAdmin.person_id == person_id)
        )
        if business is None:
            raise NotFound("business", business_id)
        return business

    # ------------------------------------------------------------------ settings

    async def change(self, person_id: str, business_id: str, field: str, value: str | None) -> BusinessView:
        """One setting, checked: name, greeting, colour, logo (None: cleared), scope."""
        changes: dict[str, object]
        if field == "name":
            changes = {"name": check_name(value or "")}
        elif field == "greeting":
            changes = {"greeting": None if value is None else check_greeting(value)}
        elif field == "colour":
            changes = {"brand_colour": None if value is None else check_colour(value)}
        elif field == "logo":
            changes = {"logo_url": None if value is None else check_logo_url(value)}
        elif field == "scope" and value in set(RosterScope):
            changes = {"scope": RosterScope(value)}
        else:
            raise DomainError(f"unknown setting {field!r}")
        return await self._update(person_id, business_id, changes)

    async def sponsor(self, person_id: str, business_id: str, on: bool) -> BusinessView:
        return await self._update(person_id, business_id, {"sponsors_sessions": on})

    async def set_budget(self, person_id: str, business_id: str, amount: int, currency: str) -> BusinessView:
        """The monthly sponsorship budget; setting one switches sponsorship on."""
        check_currency(currency)
        if not 0 < amount <= MAX_BUDGET:
            raise DomainError("a budget must be more than zero")
        return await self._update(
            person_id,
            business_id,
            {
                "sponsorship_budget_amount": amount,
                "sponsorship_currency": currency,
                "sponsors_sessions": True,
            },
        )

    async def _update(self, person_id: str, business_id: str, changes: dict[str, object]) -> BusinessView:
        async with self._sessions.begin() as db:
            business = await self._check(db, person_id, business_id)
            for name, value in changes.items():
                setattr(business, name, value)
            return view_of(business)

    # ------------------------------------------------------------------ communities

    async def new_setup_code(self, person_id: str, business_id: str) -> str:
        """A fresh code for linking a group, guild or widget (the old one stops working)."""
        async with self._sessions.begin() as db:
            business = await self._check(db, person_id, business_id)
            business.setup_code = generate_code()
            return business.setup_code

    async def new_widget_key(self, person_id: str, business_id: str) -> str:
        """A key for the web widget on one more of the business's sites."""
        async with self._sessions() as db:
            await self._check(db, person_id, business_id)
        return await create_widget_key(self._sessions, business_id)

    async def communities(self, person_id: str, business_id: str) -> list[LinkedCommunity]:
        async with self._sessions() as db:
            await self._check(db, person_id, business_id)
            rows = await db.execute(
                select(Community.id, Community.channel, Community.external_id)
                .where(Community.business_id == business_id)
                .order_by(Community.created_at)
            )
            return [LinkedCommunity(row[0], row[1], row[2]) for row in rows]

    async def unlink(self, person_id: str, business_id: str, community_id: str) -> None:
        async with self._sessions.begin() as db:
            await self._check(db, person_id, business_id)
            await db.execute(
                update(HelpRequest).where(HelpRequest.community_id == community_id).values(community_id=None)
            )
            result = await db.execute(
                delete(Community).where(Community.id == community_id, Community.business_id == business_id)
            )
            if result.rowcount != 1:  # type: ignore[attr-defined]
                raise NotFound("community", community_id)

    # ------------------------------------------------------------------ roster

    async def roster(self, person_id: str, business_id: str) -> list[RosterLine]:
        since = month_start(self._clock())
        async with self._sessions() as db:
            await self._check(db, person_id, business_id)
            sessions_this_month = (
                select(func.count(Session.id))
                .where(Session.expert_id == Expert.id, Session.started_at >= since)
                .scalar_subquery()
            )
            rows = await db.execute(
                select(
                    Expert.id,
                    Person.display_name,
                    Expert.online,
                    Expert.rating_count,
                    Expert.rating_total,
                    sessions_this_month,
                )
                .join(Person, Person.id == Expert.person_id)
                .where(Expert.business_id == business_id)
                .order_by(Person.display_name)
            )
            return [
                RosterLine(row[0], row[1], row[2], row[4] / row[3] if row[3] else None, int(row[5] or 0))
                for row in rows
            ]

    async def remove_from_roster(self, person_id: str, business_id: str, expert_id: str) -> None:
        """The expert stays on the marketplace, no longer on this business's roster."""
        async with self._sessions.begin() as db:
            await self._check(db, person_id, business_id)
            result = await db.execute(
                update(Expert)
                .where(Expert.id == expert_id, Expert.business_id == business_id)
                .values(business_id=None)
            )
            if result.rowcount != 1:  # type: ignore[attr-defined]
                raise NotFound("expert", expert_id)

    async def roster_invite(
        self, person_id: str, business_id: str, *, uses: int, expires_in_days: int | None
    ) -> InviteCode:
        async with self._sessions() as db:
            await self._check(db, person_id, business_id)
        return await create_invite(
            self._sessions,
            business_id=business_id,
            uses=uses,
            expires_in_days=expires_in_days,
            clock=self._clock,
        )

"""Bookings as the dialogue engine uses them: whom to tell what, with views instead of rows.

`concierge.bookings` keeps the rules (slots, holds, policies, jobs); this desk resolves the people
around a booking and answers with frozen views, like `Concierge` does for instant help.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from concierge.bookings import Bookings, BookingView, CallOff
from concierge.errors import DomainError, NotFound
from concierge.model import Expert, HelpRequest, Session
from concierge.pricing import Pricing
from concierge.views import PersonView


@dataclass(frozen=True, slots=True)
class SlotChoice:
    """Times the customer can book with one expert, the wanted one first when it is free."""

    request_id: str
    position: int  # the expert's place among the cards shown, so buttons stay short
    expert: PersonView
    slots: tuple[datetime, ...]
    wanted: datetime | None
    minutes: int


@dataclass(frozen=True, slots=True)
class BookingNews:
    """A booking just made, confirmed, declined, moved or called off, and who must hear of it."""

    booking: BookingView
    customer: PersonView
    expert: PersonView
    request_text: str
    pricing: Pricing
    charged: bool = False


class BookingDesk:
    def __init__(
        self,
        bookings: Bookings,
        sessions: async_sessionmaker[AsyncSession],
        *,
        person: Callable[[str], Awaitable[PersonView]],
        expert_people: Callable[[Collection[str]], Awaitable[dict[str, PersonView]]],
        shown: Callable[[str], Awaitable[list[str]]],
        commission: Callable[[str], Awaitable[Decimal]],
    ) -> None:
        self.rules = bookings
        self._sessions = sessions
        self._person = person
        self._expert_people = expert_people
        self._shown = shown
        self._commission = commission

    async def wanted_at(self, request_id: str) -> datetime | None:
        async with self._sessions() as db:
            wanted = await db.scalar(select(HelpRequest.wanted_at).where(HelpRequest.id == request_id))
        return None if wanted is None else _utc(wanted)

    async def slots(self, customer: PersonView, request_id: str, position: int) -> SlotChoice:
        expert_id = await self._expert_at(request_id, position)
        async with self._sessions() as db:
            request = await db.get(HelpRequest, request_id)
            expert = await db.get(Expert, expert_id)
        if request is None or request.customer_id != customer.id or expert is None:
            raise NotFound("request", request_id)
        wanted = _utc(request.wanted_at) if request.wanted_at else None
        slots = await self.rules.offer(expert_id, wanted)
        people = await self._expert_people([expert_id])
        if expert_id not in people:
            raise NotFound("expert", expert_id)
        return SlotChoice(
            request_id, position, people[expert_id], tuple(slots), wanted, expert.booking_minutes
        )

    async def book(self, customer: PersonView, request_id: str, position: int, at: datetime) -> BookingNews:
        expert_id = await self._expert_at(request_id, position)
        booking = await self.rules.book(
            customer.id, request_id, expert_id, at, commission=await self._commission(request_id)
        )
        return await self._news(booking)

    async def confirm(self, expert: PersonView, booking_id: str) -> BookingNews:
        return await self._news(await self.rules.confirm(_expert_id(expert), booking_id))

    async def decline(self, expert: PersonView, booking_id: str) -> BookingNews:
        return await self._news(await self.rules.decline(_expert_id(expert), booking_id))

    async def cancel(self, person: PersonView, booking_id: str) -> BookingNews:
        done: CallOff = await self.rules.cancel(
            person.id, person.expert.id if person.expert else None, booking_id
        )
        return await self._news(done.booking, charged=done.charged)

    async def move_choices(self, customer: PersonView, booking_id: str) -> tuple[BookingView, list[datetime]]:
        booking = await self.rules.get(booking_id)
        if booking.customer_id != customer.id:
            raise NotFound("booking", booking_id)
        slots = await self.rules.offer(booking.expert_id, booking.starts_at, count=5)
        return booking, [slot for slot in slots if slot != booking.starts_at]

    async def move(self, customer: PersonView, booking_id: str, at: datetime) -> BookingNews:
        return await self._news(await self.rules.reschedule(customer.id, booking_id, at))

    async def upcoming(self, person: PersonView) -> list[BookingNews]:
        bookings = await self.rules.upcoming(person.id, person.expert.id if person.expert else None)
        return [await self._news(booking) for booking in bookings]

    async def _expert_at(self, request_id: str, position: int) -> str:
        shown = await self._shown(request_id)
        if not 0 <= position < len(shown):
            raise DomainError("pick one of the experts you were shown")
        return shown[position]

    async def _news(self, booking: BookingView, *, charged: bool = False) -> BookingNews:
        async with self._sessions() as db:
            text = await db.scalar(select(HelpRequest.text).where(HelpRequest.id == booking.request_id))
            # The session's price is the one agreed; the listing's may have changed since.
            session = await db.get(Session, booking.session_id) if booking.session_id else None
            expert = await db.get(Expert, booking.expert_id)
        if expert is None:
            raise NotFound("expert", booking.expert_id)
        experts = await self._expert_people([booking.expert_id])
        if booking.expert_id not in experts:
            raise NotFound("expert", booking.expert_id)
        return BookingNews(
            booking,
            await self._person(booking.customer_id),
            experts[booking.expert_id],
            text or "",
            session.pricing if session is not None else expert.pricing,
            charged,
        )


def _expert_id(person: PersonView) -> str:
    if person.expert is None:
        raise DomainError("only experts can answer bookings")
    return person.expert.id


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)

"""`/calendar/<signed token>`: a booking as an .ics file in the reader's own time zone."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web
from sqlalchemy import select

from concierge.appkeys import SESSIONS
from concierge.calendar_file import ics_for
from concierge.model import Booking, BookingStatus, Expert, HelpRequest, Person, Session
from concierge.receipts import ReceiptLinks
from knowledge.i18n import load_catalogues

CALENDAR_LINKS = web.AppKey("calendar_links", ReceiptLinks)


class CalendarLinks(ReceiptLinks):
    def __init__(self, key: bytes, base_url: str) -> None:
        super().__init__(key, base_url, purpose="calendar", path="/calendar")


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


async def calendar_file(request: web.Request) -> web.Response:
    claims = request.app[CALENDAR_LINKS].verify(request.match_info["token"])
    if claims is None:
        raise web.HTTPForbidden(text="this calendar link is not valid")
    session_id, role, language = claims
    async with request.app[SESSIONS]() as db:
        booking = await db.scalar(select(Booking).where(Booking.session_id == session_id))
        session = await db.get(Session, session_id)
        if booking is None or session is None:
            raise web.HTTPNotFound(text="no booking for this link")
        expert = await db.get(Expert, booking.expert_id)
        customer = await db.get(Person, booking.customer_id)
        expert_person = await db.get(Person, expert.person_id) if expert else None
        text = await db.scalar(select(HelpRequest.text).where(HelpRequest.id == booking.request_id))
    if customer is None or expert_person is None:
        raise web.HTTPNotFound(text="no booking for this link")
    reader, other = (customer, expert_person) if role == "customer" else (expert_person, customer)
    t = load_catalogues()
    other_name = other.display_name or t.text("receipt.customer", language)
    body = ics_for(
        uid=f"{booking.id}@concierge",
        summary=t.text("calendar.summary", language, name=other_name),
        description=f"{text or ''}\n\n{t.text('calendar.description', language)}",
        start=_aware(booking.starts_at),
        end=_aware(booking.ends_at),
        zone=reader.time_zone,
        url=None,
        organizer_name="Concierge",
        sequence=booking.reschedules,
        cancelled=booking.status in (BookingStatus.CANCELLED, BookingStatus.DECLINED),
    )
    return web.Response(
        body=body,
        content_type="text/calendar",
        charset="utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{booking.id}.ics"',
            "Cache-Control": "no-store",
        },
    )

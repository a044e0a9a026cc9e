"""Booking a later time through the web widget: ranking for "tomorrow at 3pm", picking a time,
the expert's schedule edited from the chat, /bookings with move and cancel, the calendar file."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, update

from concierge.model import Booking, BookingStatus, Channel, ChannelIdentity, Person, ScheduledJob
from tests.harness import WebUser, app_sessions, button, concierge_of, link_button, running_service
from tests.test_web_chat import adult, networking_experts, stated


@pytest.fixture
async def service(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str, use_embedder: Any, detector: Any
) -> Any:
    async with running_service(
        monkeypatch, tmp_path, database_url, use_embedder, detector, messages_per_minute="60"
    ) as client:
        yield client


def actions(message: dict[str, Any]) -> list[str]:
    return [b["action"] for row in message["buttons"] for b in row if b.get("action")]


async def customer_zone(service: Any, user: WebUser) -> ZoneInfo:
    async with app_sessions(service)() as db:
        zone = await db.scalar(
            select(Person.time_zone)
            .join(ChannelIdentity, ChannelIdentity.person_id == Person.id)
            .where(ChannelIdentity.channel == Channel.WEB, ChannelIdentity.external_id == user.visitor)
        )
    assert zone is not None
    return ZoneInfo(zone)


async def times_with(
    service: Any, born: str, request: str, expert: str = "Expert 1"
) -> tuple[WebUser, dict[str, Any]]:
    """A new adult customer asks for a later time and opens `expert`'s times: (them, the menu)."""
    customer = await adult(service)
    await stated(customer, born)
    await customer.wait_text("Expert")  # the cards for the age question's first request
    await customer.say("/cancel")
    await customer.wait_text("cancel")
    await customer.say(request)
    cards = await customer.wait_for(lambda m: any(a.startswith("slots:") for a in actions(m)))
    await customer.press(button(cards, f"Times with {expert}"))
    menu = await customer.wait_for(lambda m: any(a.startswith("book:") for a in actions(m)))
    return customer, menu


async def test_booking_tomorrow_at_3pm_with_the_expert_who_is_free_then(service: Any) -> None:
    first, second = await networking_experts(service, "wifi-1", "wifi-2")
    # The second expert takes tomorrow off from the chat; bookings see it at once.
    tomorrow_paris = (datetime.now(ZoneInfo("Europe/Paris")) + timedelta(days=1)).date()
    await second.say(f"/schedule off {tomorrow_paris.isoformat()}")
    settings = await second.wait_text("Your booking settings")
    assert f"{tomorrow_paris.isoformat()}: day off" in settings["text"]
    await second.say("/schedule notice abc")
    await second.wait_text("Minimum notice")
    await second.say("/schedule policy strict")
    await second.wait_text("free cancellation until 72 hours before")

    customer = await adult(service)
    await stated(customer, "1990-02-02")
    await customer.wait_text("Expert")  # the instant cards for the first request
    await customer.say("/cancel")
    await customer.wait_text("cancel")
    await customer.say("Can someone help me with my wifi router tomorrow at 3pm?")
    cards = await customer.wait_for(lambda m: any(a.startswith("slots:") for a in actions(m)))
    zone = await customer_zone(service, customer)
    wanted = datetime.combine(
        datetime.now(zone).date() + timedelta(days=1), datetime.min.time(), tzinfo=zone
    ).replace(hour=15)
    # Free then comes first, and says so; the one on a day off shows their nearest time instead.
    assert cards["text"].index("Expert 1") < cards["text"].index("Expert 2")
    assert "anyone:" not in " ".join(actions(cards))  # a time is booked with one expert

    await customer.press(button(cards, "Times with Expert 1"))
    menu = await customer.wait_text("Free times with Expert 1")
    minute = str(int(wanted.timestamp() // 60))
    book = next(a for a in actions(menu) if a.endswith(f":{minute}"))
    await customer.press(book)
    booked = await customer.wait_text("Booked with Expert 1")
    assert "free cancellation until 1 hour before" in booked["text"]
    new = await first.wait_text("New booking for")
    assert "wifi router" in new["text"]

    async with app_sessions(service)() as db:
        booking = await db.scalar(select(Booking))
    assert booking is not None
    assert booking.starts_at.replace(tzinfo=UTC) == wanted.astimezone(UTC)
    assert booking.status is BookingStatus.CONFIRMED

    # Someone else cannot have that time any more: it is not offered.
    _, rival_menu = await times_with(service, "1991-03-03", "I need wifi router help tomorrow at 3pm please")
    assert not any(a.endswith(f":{minute}") for a in actions(rival_menu))

    # /bookings: move it, then cancel it (well before the 1-hour limit: nothing charged).
    await customer.say("/bookings")
    listed = await customer.wait_text("Your upcoming bookings")
    await customer.press(button(listed, "Move"))
    choices = await customer.wait_text("Pick the new time")
    await customer.press(actions(choices)[0])
    await customer.wait_text("Moved: your booking with Expert 1")
    await first.wait_text("moved their booking")
    await customer.say("/bookings")
    listed = await customer.wait_for(lambda m: "Your upcoming bookings" in m["text"] and m is not listed)
    await customer.press(button(listed, "Cancel"))
    await customer.wait_text("cancelled. Nothing is charged")
    await first.wait_text("cancelled the booking")
    async with app_sessions(service)() as db:
        row = await db.get(Booking, booking.id)
    assert row is not None
    assert row.status is BookingStatus.CANCELLED


async def test_the_last_reminder_brings_the_room_and_a_calendar_file_in_the_readers_zone(
    service: Any,
) -> None:
    (expert,) = await networking_experts(service, "wifi-1")
    customer, menu = await times_with(
        service, "1990-02-02", "wifi router help the day after tomorrow at 10am"
    )
    await customer.press(next(a for a in actions(menu) if a.startswith("book:")))
    await customer.wait_text("Booked with Expert 1")
    async with app_sessions(service)() as db:
        booking = await db.scalar(select(Booking))
    assert booking is not None
    assert booking.session_id is not None

    # Time passes for the ten-minute reminder (its job made due; the service's scheduler runs it
    # and the ticker delivers it to both, each in their own chat).
    async with app_sessions(service).begin() as db:
        await db.execute(
            update(ScheduledJob)
            .where(ScheduledJob.key == f"booking:{booking.id}:0:remind:10")
            .values(run_at=datetime.now(UTC))
        )
    for person, zone_of in (
        (customer, await customer_zone(service, customer)),
        (expert, ZoneInfo("Europe/Paris")),
    ):
        reminder = await person.wait_text("starts in 10 minutes")
        assert "/r/" in link_button(reminder, "Join the video call")
        calendar = link_button(reminder, "Add to calendar")
        response = await service.get(urlsplit(calendar).path)
        assert response.status == 200
        assert response.content_type == "text/calendar"
        body = await response.text()
        local = booking.starts_at.replace(tzinfo=UTC).astimezone(zone_of)
        if zone_of.key == "UTC":
            assert (
                f"DTSTART:{local:%Y%m%dT%H%M%S}Z" in body or f"DTSTART;TZID=UTC:{local:%Y%m%dT%H%M%S}" in body
            )
        else:
            assert f"DTSTART;TZID={zone_of.key}:{local:%Y%m%dT%H%M%S}" in body

    links = concierge_of(service).calendar
    token = links.token(booking.session_id, "expert", "en")
    forged = await service.get(f"/calendar/{token[:-2]}xx")
    assert forged.status == 403
    other = await service.get(f"/receipts/{token}")  # a calendar token is not a receipt token
    assert other.status == 403

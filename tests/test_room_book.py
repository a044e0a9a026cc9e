"""The rooms table behind the gateway's RoomBook, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from concierge.config import load_settings
from concierge.model import Person
from concierge.pricing import Pricing, PricingMode
from concierge.rooms import SessionRooms, SqlRoomBook, room_opener
from concierge.transitions import Lifecycle
from tests.factories import add_expert, add_person
from video_gateway.meter import EndReason, MeterState
from video_gateway.rooms import MediaMode, Participant, RoomRecord, Tariff, new_room_id

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


def _room(**changes: object) -> RoomRecord:
    fields: dict[str, object] = {
        "id": new_room_id(),
        "customer": Participant("Carla", "es"),
        "expert": Participant("Ed", "en"),
        "mode": MediaMode.RELAY,
        "recorded": True,
        "budget_seconds": 3600,
        "links_expire_at": NOW + timedelta(minutes=10),
        "created_at": NOW,
        "tariff": Tariff("JPY", per_minute=150),
    }
    fields.update(changes)
    return RoomRecord(**fields)  # type: ignore[arg-type]


async def test_a_room_round_trips_and_ends_once(sessions: async_sessionmaker[AsyncSession]) -> None:
    book = SqlRoomBook(sessions)
    room = _room()
    await book.add(room)
    assert await book.get(room.id) == room
    await book.progress(room.id, MeterState.LIVE, 12)
    assert await book.finish(room.id, 30, EndReason.BUDGET, NOW + timedelta(minutes=1), "recordings/x.mkv")
    assert not await book.finish(room.id, 99, EndReason.HANGUP, NOW + timedelta(minutes=2), None)
    ended = await book.get(room.id)
    assert ended is not None
    assert (ended.state, ended.billed_seconds, ended.end_reason) == (MeterState.ENDED, 30, EndReason.BUDGET)
    assert ended.recording == "recordings/x.mkv"
    assert await book.get("room_missing") is None


async def test_live_rooms_progress_in_one_write_and_ended_rooms_stay_ended(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    book = SqlRoomBook(sessions)
    live, other, over = _room(), _room(tariff=None), _room()
    for room in (live, other, over):
        await book.add(room)
    await book.finish(over.id, 5, EndReason.HANGUP, NOW, None)
    await book.progress_many(
        [(live.id, MeterState.LIVE, 41), (other.id, MeterState.PAUSED, 7), (over.id, MeterState.LIVE, 500)]
    )
    got = {room.id: await book.get(room.id) for room in (live, other, over)}
    assert [(r.state, r.billed_seconds) for r in got.values() if r] == [
        (MeterState.LIVE, 41),
        (MeterState.PAUSED, 7),
        (MeterState.ENDED, 5),
    ]


async def test_a_session_s_room_is_recorded_for_a_minor_budgeted_per_minute_and_opened_once(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONCIERGE_DATA_DIR", str(tmp_path))
    customer = await add_person(sessions, "Lu")
    async with sessions.begin() as db:
        person = await db.get(Person, customer.id)
        assert person is not None
        person.birth_date = date.today().replace(year=date.today().year - 15)
        person.locale = "fr-CA"
    expert = await add_expert(sessions, "exp-room", pricing=Pricing(PricingMode.PER_MINUTE, 150, "EUR"))
    lifecycle = Lifecycle(sessions)
    request = await lifecycle.open_request(customer.id, "mon wifi")
    await lifecycle.offer(request.id, [(expert.id, 1.0)])
    session = await lifecycle.claim(request.id, expert.id, commission_percent=Decimal(20))
    await lifecycle.request_payment(session.id)
    await lifecycle.payment_authorised(session.id)

    book = SqlRoomBook(sessions)
    rooms = SessionRooms(sessions, room_opener(load_settings(), book))
    links = await rooms.links_for(session.id)
    assert await rooms.links_for(session.id) == links  # asked again: the same room, the same links
    record = await book.get(links.room_id)
    assert record is not None
    assert (record.recorded, record.mode, links.recorded) == (True, MediaMode.RELAY, True)
    assert record.budget_seconds == 60 * 60
    assert record.tariff == Tariff("EUR", per_minute=150)
    assert record.customer == Participant("Lu", "fr")
    assert record.session_id == session.id

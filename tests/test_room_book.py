"""The rooms table behind the gateway's RoomBook, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from concierge.rooms import SqlRoomBook
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

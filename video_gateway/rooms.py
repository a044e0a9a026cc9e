"""Rooms: what the gateway needs to know about one call, and where that is kept.

The durable record (who, which mode, budget, state, billed seconds, recording) sits behind
the `RoomBook` port: the core stores it in its database, tests and tools use `MemoryRoomBook`.
The gateway never imports the core; the core hands it a book.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from video_gateway.links import Role
from video_gateway.meter import EndReason, MeterState


class RelayMethod(StrEnum):
    FORWARD = "forward"  # encoded frames pass through untouched
    TRANSCODE = "transcode"  # aiortc's own decode + re-encode: the fallback


class MediaMode(StrEnum):
    DIRECT = "direct"  # browser to browser; the gateway keeps a control connection with each
    RELAY = "relay"  # media flows through the gateway (required when recorded)


@dataclass(frozen=True, slots=True)
class Tariff:
    """Display only, so the room page can show a running cost; billing decides what is charged."""

    currency: str
    per_minute: int | None = None  # minor units
    per_session: int | None = None


@dataclass(frozen=True, slots=True)
class Participant:
    name: str
    language: str


@dataclass(frozen=True, slots=True)
class RoomRecord:
    id: str
    customer: Participant
    expert: Participant
    mode: MediaMode
    recorded: bool
    budget_seconds: int | None
    links_expire_at: datetime
    created_at: datetime
    session_id: str | None = None
    tariff: Tariff | None = None
    state: MeterState = MeterState.WAITING
    billed_seconds: int = 0
    end_reason: EndReason | None = None
    ended_at: datetime | None = None
    recording: str | None = None  # path of the recording file, relative to the data dir

    def participant(self, role: Role) -> Participant:
        return self.customer if role is Role.CUSTOMER else self.expert

    @property
    def ended(self) -> bool:
        return self.state is MeterState.ENDED

    @property
    def started(self) -> bool:
        return self.state in {MeterState.LIVE, MeterState.PAUSED}


def new_room_id() -> str:
    return "room_" + secrets.token_hex(10)


class RoomBook(Protocol):
    async def add(self, room: RoomRecord) -> None: ...

    async def get(self, room_id: str) -> RoomRecord | None: ...

    async def progress(self, room_id: str, state: MeterState, billed_seconds: int) -> None:
        """The room went live, paused or resumed (not called every second: Redis has that)."""

    async def progress_many(self, updates: Sequence[tuple[str, MeterState, int]]) -> None:
        """Live rooms' billed seconds every few seconds, in one write."""

    async def finish(
        self,
        room_id: str,
        billed_seconds: int,
        reason: EndReason,
        ended_at: datetime,
        recording: str | None,
    ) -> bool:
        """Mark the room ended, once: False when it already was."""


class MemoryRoomBook:
    """The in-process RoomBook: tests, benchmarks and one-off tools."""

    def __init__(self) -> None:
        self.rooms: dict[str, RoomRecord] = {}

    async def add(self, room: RoomRecord) -> None:
        if room.id in self.rooms:
            raise ValueError(f"room {room.id} exists")
        self.rooms[room.id] = room

    async def get(self, room_id: str) -> RoomRecord | None:
        return self.rooms.get(room_id)

    async def progress(self, room_id: str, state: MeterState, billed_seconds: int) -> None:
        room = self.rooms[room_id]
        if not room.ended:
            self.rooms[room_id] = replace(room, state=state, billed_seconds=billed_seconds)

    async def progress_many(self, updates: Sequence[tuple[str, MeterState, int]]) -> None:
        for room_id, state, billed_seconds in updates:
            await self.progress(room_id, state, billed_seconds)

    async def finish(
        self,
        room_id: str,
        billed_seconds: int,
        reason: EndReason,
        ended_at: datetime,
        recording: str | None,
    ) -> bool:
        room = self.rooms[room_id]
        if room.ended:
            return False
        self.rooms[room_id] = replace(
            room,
            state=MeterState.ENDED,
            billed_seconds=billed_seconds,
            end_reason=reason,
            ended_at=ended_at,
            recording=recording,
        )
        return True

"""The gateway: admits links, seats participants in live rooms, and shuts down cleanly."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from video_gateway.errors import LinkRefused, RefusalReason
from video_gateway.events import RoomEventSink
from video_gateway.ice import IceServers
from video_gateway.links import LinkClaims, LinkSigner
from video_gateway.live_room import LiveRoom
from video_gateway.meter import Meter, MeterState
from video_gateway.meter_store import MeterStore
from video_gateway.rooms import RelayMethod, RoomBook, RoomRecord
from video_gateway.seat import Outlet, Seat


class Gateway:
    def __init__(
        self,
        *,
        book: RoomBook,
        signer: LinkSigner,
        meters: MeterStore,
        events: RoomEventSink,
        ice: IceServers,
        relay_method: RelayMethod,
        recordings_dir: Path,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.book = book
        self.signer = signer
        self._meters = meters
        self._events = events
        self._ice = ice
        self._relay_method = relay_method
        self._recordings_dir = recordings_dir
        self._clock = clock
        self.rooms: dict[str, LiveRoom] = {}
        self._lock = asyncio.Lock()

    async def admit(self, token: str) -> tuple[LinkClaims, RoomRecord]:
        """The link's claims and room, or LinkRefused (forged, expired or ended: opens nothing)."""
        claims = self.signer.authentic(token)
        record = await self.book.get(claims.room_id)
        if record is None or record.ended:
            raise LinkRefused(RefusalReason.ENDED, claims.language)
        live = self.rooms.get(claims.room_id)
        started = record.started or (live is not None and live.meter.state is not MeterState.WAITING)
        # Once the call has started, the link keeps working until the room ends: a rejoin after
        # a drop must not fail because the few minutes of an instant-help link have passed.
        if not started and time.time() >= claims.expires_at:
            raise LinkRefused(RefusalReason.EXPIRED, claims.language)
        return claims, record

    async def seat(self, claims: LinkClaims, outlet: Outlet) -> tuple[LiveRoom, Seat]:
        async with self._lock:
            room = self.rooms.get(claims.room_id)
            if room is None:
                room = await self._revive(claims.room_id)
        return room, await room.join(claims.role, outlet)

    async def _revive(self, room_id: str) -> LiveRoom:
        record = await self.book.get(room_id)
        if record is None or record.ended:
            raise LinkRefused(RefusalReason.ENDED)
        saved = await self._meters.load(room_id)
        if saved is not None and saved.state is MeterState.ENDED:
            raise LinkRefused(RefusalReason.ENDED)
        meter = (
            Meter.resumed(record.budget_seconds, saved.billed_ms, saved.state, saved.warned)
            if saved is not None
            else Meter.resumed(record.budget_seconds, record.billed_seconds * 1000, record.state, False)
        )
        room = LiveRoom(
            record,
            meter,
            book=self.book,
            meters=self._meters,
            events=self._events,
            ice=lambda role: self._ice.for_browser(f"{room_id}-{role.value}", time.time()),
            gateway_ice=lambda: self._ice.for_gateway(time.time()),
            relay_method=self._relay_method,
            recordings_dir=self._recordings_dir,
            clock=self._clock,
            on_closed=self._forget,
        )
        self.rooms[room_id] = room
        room.start()
        return room

    async def _forget(self, room: LiveRoom) -> None:
        if self.rooms.get(room.id) is room:
            del self.rooms[room.id]

    async def close(self) -> None:
        """Shutdown (not the end of anyone's call): meters are saved, rooms continue on restart."""
        for room in list(self.rooms.values()):
            await room.close()

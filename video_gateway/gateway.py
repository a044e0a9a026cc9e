"""The gateway: admits links, seats participants in live rooms, and shuts down cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import structlog

from video_gateway.errors import LinkRefused, RefusalReason
from video_gateway.events import RoomEventSink
from video_gateway.heap import HeapKeeper
from video_gateway.ice import IceServers
from video_gateway.links import LinkClaims, LinkSigner
from video_gateway.live_room import LiveRoom
from video_gateway.meter import Meter, MeterState
from video_gateway.meter_store import MeterStore
from video_gateway.rooms import RelayMethod, RoomBook, RoomRecord
from video_gateway.seat import Outlet, Seat
from video_gateway.signalling import TICK_SECONDS

log = structlog.get_logger("video_gateway.gateway")

STEP_SECONDS = 0.25
STEPS_PER_SECOND = 4
# Behind schedule by more than this (a stalled process), the clock starts over from now.
FALLEN_BEHIND_SECONDS = 2.0
# The durable record follows live meters this closely, in seconds (Redis has them every second);
# each second writes the rooms whose turn it is.
PROGRESS_SECONDS = 5
# Meters saved per Redis round trip: redis-py packs and parses a pipeline in one go on the event
# loop (~0.1 ms per room), so a thousand rooms in one would hold every tick and report up that long.
SAVE_CHUNK = 200


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
        self._clock_task: asyncio.Task[None] | None = None
        self._heap = HeapKeeper()
        self._rooms_opened = 0
        self._saving: asyncio.Task[None] | None = None
        self._saved_second = -1

    def start(self) -> None:
        self._clock_task = asyncio.create_task(self._run_clock(), name="room-clock")

    async def _run_clock(self) -> None:
        """One clock for every room of this process: metering steps, ticks, and the meters
        saved in a few Redis pipelines a second (one task and one write per room would cost more
        than the rooms themselves)."""
        steps = 0
        due = time.monotonic()
        while True:
            # On an absolute schedule, so that ticks stay a second apart however long a step took.
            due += STEP_SECONDS
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -FALLEN_BEHIND_SECONDS:
                due = time.monotonic()  # the process stalled: carry on from now rather than rush
            now = time.monotonic()
            rooms = list(self.rooms.values())
            steps += 1
            whole = steps % STEPS_PER_SECOND == 0
            for room in rooms:
                if not (whole or room.fine_steps):
                    continue
                try:
                    room.step(now)
                except Exception:  # one room's bug must not stop every other room's clock
                    log.exception("room step failed", room=room.id)
            if not whole:
                continue
            second = steps // STEPS_PER_SECOND
            for room in rooms:
                try:
                    room.second(now, second)
                except Exception:
                    log.exception("room second failed", room=room.id)
            # Saving runs beside the clock: its round trips to Redis and the database must not push
            # the next second's ticks back. One save at a time; a second that finds one still
            # running leaves its meters to the next (each save writes the latest values).
            if self._saving is None or self._saving.done():
                self._saving = asyncio.create_task(self._save(rooms, second), name="room-meters")
            self._heap.step(time.monotonic(), sum(room.connections() for room in rooms))

    async def _save(self, rooms: list[LiveRoom], second: int) -> None:
        now = time.monotonic()
        # The turns of the seconds since the last save: none is skipped when a save ran long.
        turns = {-s % PROGRESS_SECONDS for s in range(max(self._saved_second + 1, second - 4), second + 1)}
        self._saved_second = second
        changed = [(room, full) for room in rooms if (full := room.unsaved(now)) is not None]
        try:
            for start in range(0, len(changed), SAVE_CHUNK):
                chunk = changed[start : start + SAVE_CHUNK]
                # What is written, taken now: the clock moves the meters on during the round trip.
                written = [room.meter_values() for room, _ in chunk]
                await self._meters.save_many([(room.id, room.meter, full) for room, full in chunk])
                for (room, full), values in zip(chunk, written, strict=True):
                    room.saved(now, values, full=full)
            live = [
                room
                for room in rooms
                if room.meter.state is MeterState.LIVE and room.tick_phase % PROGRESS_SECONDS in turns
            ]
            if live:
                await self.book.progress_many(
                    [(room.id, room.meter.state, room.meter.billed_seconds) for room in live]
                )
        except Exception as exc:  # Redis or the database away: the next second tries again
            log.warning("saving room meters failed", rooms=len(changed), error=repr(exc))

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
        room.tick_phase = self._rooms_opened % TICK_SECONDS
        self._rooms_opened += 1
        self.rooms[room_id] = room
        return room

    async def _forget(self, room: LiveRoom) -> None:
        if self.rooms.get(room.id) is room:
            del self.rooms[room.id]

    async def close(self) -> None:
        """Shutdown (not the end of anyone's call): meters are saved, rooms continue on restart."""
        if self._clock_task is not None:
            self._clock_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._clock_task
            self._clock_task = None
        if self._saving is not None:
            with contextlib.suppress(Exception):
                await self._saving
        for room in list(self.rooms.values()):
            await room.close()
        self._heap.release()

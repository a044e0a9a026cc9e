"""A room while people are in it: two seats, the meter, the recording, and the room's clock."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import structlog
from aiortc import RTCConfiguration, RTCDataChannel, RTCPeerConnection

from video_gateway.errors import LinkRefused, RefusalReason, RoomClosing, SignallingError
from video_gateway.events import RoomEvent, RoomEventSink
from video_gateway.forwarding import Source
from video_gateway.links import Role
from video_gateway.meter import EndReason, Meter, MeterEvent, MeterState
from video_gateway.meter_store import MeterStore
from video_gateway.recording import Kind, Recording, RecordingError
from video_gateway.rooms import MediaMode, RelayMethod, RoomBook, RoomRecord
from video_gateway.seat import Outlet, Seat
from video_gateway.signalling import (
    REPORT_SECONDS,
    TICK_SECONDS,
    Hangup,
    Offer,
    Pong,
    Signal,
    Stats,
    dump,
    parse_control_frame,
)

log = structlog.get_logger("video_gateway.room")

# Media counts as flowing while it has been seen this recently; a second of silence pauses.
FLOWING_WITHIN_SECONDS = 1.0
# A direct-mode page looks at its media every second and reports a change at once: media it reports
# stopped stopped about a second before the report.
PAGE_CHECK_SECONDS = 1.0
# Two missed reports and a page's side counts as stopped.
REPORT_WITHIN_SECONDS = 2 * REPORT_SECONDS + 1.0
# A page not heard from this long is pinged once a second (direct-mode pages report more often).
PING_SECONDS = REPORT_SECONDS + 1.0
SILENT_CONTROL_SECONDS = PING_SECONDS + 4.0
# A meter saved second by second rewrites only its billed time; all of it (and the key's expiry)
# when the state changes and at least this often.
REFRESH_SAVED_SECONDS = 600.0


class LiveRoom:
    def __init__(
        self,
        record: RoomRecord,
        meter: Meter,
        *,
        book: RoomBook,
        meters: MeterStore,
        events: RoomEventSink,
        ice: Callable[[Role], list[dict[str, Any]]],
        gateway_ice: Callable[[], RTCConfiguration],
        relay_method: RelayMethod,
        recordings_dir: Path,
        clock: Callable[[], datetime],
        on_closed: Callable[[LiveRoom], Awaitable[None]],
    ) -> None:
        self.record = record
        self.meter = meter
        self.seats: dict[Role, Seat | None] = dict.fromkeys(Role)
        self._book = book
        self._meters = meters
        self._events = events
        self._ice = ice
        self._gateway_ice = gateway_ice
        self._relay_method = relay_method
        self._recordings_dir = recordings_dir
        self._clock = clock
        self._on_closed = on_closed
        self._recording: Recording | None = None
        self._recording_failed = False
        # The first file of this room's recording, relative to the data dir (later parts share its stem).
        self._recording_name = f"{recordings_dir.name}/{record.id}.mkv"
        self._closing = False
        self._arrived: set[Role] = set()  # who has opened the room at least once (for no-shows)
        self._background: set[asyncio.Future[None]] = set()
        self.offers_answered = 0  # renegotiations show here (screen sharing must not cause any)
        # Which second of the tick period this room ticks in: rooms take turns, so that a thousand
        # rooms do not all send their ticks in the same instant.
        self.tick_phase = 0
        self._saved = self.meter_values()
        self._fully_saved_at: float | None = None

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def relay(self) -> bool:
        return self.record.mode is MediaMode.RELAY

    # ------------------------------------------------------------------ people

    async def join(self, role: Role, outlet: Outlet) -> Seat:
        """Seat a participant; an earlier connection of the same participant is replaced."""
        if self.meter.ended:
            raise LinkRefused(RefusalReason.ENDED, self.record.participant(role).language)
        if self._closing:
            raise RoomClosing(self.id)
        old = self.seats[role]
        seat = Seat(role, outlet, relay=self.relay, method=self._relay_method)
        self.seats[role] = seat
        if old is not None:
            await old.send(dump("replaced"))
            await old.close()
            self._update_flow(role, now=time.monotonic())
        other = self.seats[role.other]
        await seat.send(
            dump(
                "welcome",
                room=self.id,
                role=role.value,
                mode=self.record.mode.value,
                recorded=self.record.recorded,
                ice_servers=self._ice(role),
                budget_seconds=self.record.budget_seconds,
                billed_seconds=self.meter.billed_seconds,
                state=self.meter.state.value,
                peer_present=other is not None,
                tariff=_tariff(self.record),
            )
        )
        if other is not None:
            await other.send(dump("peer", present=True))
            await seat.send(dump("peer", present=True))
        if role not in self._arrived:
            self._arrived.add(role)
            await self._events.publish(
                RoomEvent(
                    self.id,
                    self.record.session_id,
                    "joined",
                    self.meter.billed_seconds,
                    self._clock(),
                    role.value,
                )
            )
        return seat

    async def leave(self, seat: Seat) -> None:
        """The participant's socket closed: their connection goes; the room waits for them."""
        if self.seats[seat.role] is not seat:
            return  # already replaced
        self.seats[seat.role] = None
        await seat.close()
        self._update_flow(seat.role, now=time.monotonic())
        other = self.seats[seat.role.other]
        if other is not None:
            await other.send(dump("peer", present=False))

    async def on_socket_frame(self, seat: Seat, frame: Offer | Signal | Hangup) -> None:
        if self.seats[seat.role] is not seat:
            return
        if isinstance(frame, Offer):
            await self._connect(seat, frame.sdp)
        elif isinstance(frame, Signal):
            if self.relay:
                raise SignallingError("unexpected", "this room relays media through the gateway")
            other = self.seats[seat.role.other]
            if other is not None:
                await other.send(dump("signal", data=frame.data))
        else:
            await self.end(EndReason.HANGUP)

    async def _connect(self, seat: Seat, sdp: str) -> None:
        pc = RTCPeerConnection(configuration=self._gateway_ice())
        try:
            answer = await seat.answer(sdp, pc, self._on_control, self._on_source, self._on_connection_state)
        except (ValueError, RuntimeError, AssertionError) as exc:
            # aiortc raises these for offers it cannot use; the page is told, nothing else changes.
            await seat.close_connection()
            raise SignallingError("malformed", "the offer could not be used") from exc
        if self.relay:
            self._wire_viewers()
        self.offers_answered += 1
        await seat.send(dump("answer", sdp=answer))

    def _on_control(self, seat: Seat, channel: RTCDataChannel) -> None:
        @channel.on("message")
        def _message(message: str | bytes) -> None:
            seat.last_heard = time.monotonic()
            try:
                frame = parse_control_frame(message)
            except SignallingError:
                return  # the control channel is ours; a bad frame there is dropped, not answered
            if isinstance(frame, Stats):
                self._on_stats(seat, frame)
            elif isinstance(frame, Hangup):
                self._spawn(self.end(EndReason.HANGUP))
            elif isinstance(frame, Pong):
                pass

    def _on_source(self, seat: Seat, source: Source) -> None:
        role = seat.role

        def first_after_silence(kind: str, codec: str, data: bytes, timestamp: int, keyframe: bool) -> None:
            # Media starting (or coming back) starts the meter now, not at the next tick.
            if not self.meter.flowing(role) and self.seats[role] is seat:
                self._update_flow(role, time.monotonic())

        source.add_listener(first_after_silence)
        if self.record.recorded:
            participant = role.value

            def record(kind: str, codec: str, data: bytes, timestamp: int, keyframe: bool) -> None:
                # Only while the call is live: frames before the other person arrives are nobody's call.
                recording = self._recording
                if recording is None:
                    return
                try:
                    media: Kind = "audio" if kind == "audio" else "video"
                    recording.write(participant, media, codec, data, timestamp, keyframe)
                except RecordingError as exc:
                    if not self._recording_failed:  # once per room, not once per frame
                        self._recording_failed = True
                        log.error("recording a frame failed", room=self.id, error=str(exc))

            source.add_listener(record)
        self._wire_viewers()

    def _wire_viewers(self) -> None:
        """Each seat's outgoing tracks follow the other seat's incoming ones."""
        for role in Role:
            seat, other = self.seats[role], self.seats[role.other]
            if seat is None:
                continue
            for kind, viewer in seat.viewers.items():
                viewer.follow(other.sources.get(kind) if other is not None else None)

    async def _on_connection_state(self, seat: Seat) -> None:
        if seat.pc is not None and seat.pc.connectionState in ("failed", "closed"):
            self._update_flow(seat.role, now=time.monotonic())

    def _on_stats(self, seat: Seat, stats: Stats) -> None:
        now = time.monotonic()
        flowing = stats.flowing
        if flowing is None:
            flowing = stats.bytes_received > max(seat.reported_bytes, 0)
        flowing = flowing and stats.connected
        if flowing:
            seat.bytes_moved_at = now
        elif seat.reported_flowing and seat.bytes_moved_at is not None:
            # The page saw its counters stop at its last look, a second after they last moved.
            seat.bytes_moved_at = max(seat.bytes_moved_at, now - PAGE_CHECK_SECONDS)
        seat.reported_connected = stats.connected
        seat.reported_flowing = flowing
        seat.reported_bytes = stats.bytes_received
        seat.reported_at = now
        self._update_flow(seat.role, now)

    # ------------------------------------------------------------------ metering

    def _flowing(self, role: Role, now: float) -> tuple[bool, float]:
        """Whether this participant's media is flowing, and since/until when we know it."""
        seat = self.seats[role]
        if seat is None or not seat.connected:
            return False, now
        if self.relay:
            last = max((s.last_frame_at for s in seat.sources.values() if s.last_frame_at), default=None)
            if last is not None and now - last <= FLOWING_WITHIN_SECONDS:
                return True, now
            # Stopped: the meter stops at the last frame that came through.
            return False, last if last is not None else now
        moved = seat.bytes_moved_at
        if seat.reported_flowing and moved is not None and now - moved <= REPORT_WITHIN_SECONDS:
            return True, now
        if moved is None:
            return False, now
        if seat.reported_flowing:
            # Reports overdue: flowing as of the last one, and a second's benefit of the doubt.
            return False, min(now, moved + PAGE_CHECK_SECONDS)
        # Reported stopped: the meter stops where the last evidence of flowing media was.
        return False, min(now, moved)

    def _update_flow(self, role: Role, now: float) -> None:
        flowing, at = self._flowing(role, now)
        self._apply(self.meter.set_flowing(role, flowing, at))

    def _apply(self, events: list[MeterEvent]) -> None:
        for event in events:
            self._spawn(self._announce(event))

    async def _announce(self, event: MeterEvent) -> None:
        if event.kind == "budget_warning":
            frame = dump(
                "budget", remaining_seconds=event.remaining_seconds, billed_seconds=event.billed_seconds
            )
            for seat in self._present():
                seat.tell(frame)
            return
        if event.kind == "ended":
            await self._finish(event)
            return
        # The pages' timers start, stop and resume now, not at the next periodic tick.
        self._tick()
        if event.kind in ("live", "resumed"):
            self._open_recording()
        await self._meters.save(self.id, self.meter)
        await self._book.progress(self.id, self.meter.state, event.billed_seconds)
        await self._events.publish(
            RoomEvent(self.id, self.record.session_id, event.kind, event.billed_seconds, self._clock())
        )

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _present(self) -> list[Seat]:
        return [seat for seat in self.seats.values() if seat is not None]

    def connections(self) -> int:
        """Gateway peer connections this room holds now."""
        return sum(1 for seat in self.seats.values() if seat is not None and seat.pc is not None)

    # ------------------------------------------------------------------ clock (the gateway drives it)

    def step(self, now: float) -> None:
        """A quarter of a second: who is flowing, the meter, connections gone silent."""
        if self._closing or self.meter.ended:
            return
        for role in Role:
            self._silence_check(role, now)
            self._update_flow(role, now)
        self._apply(self.meter.advance(now))

    def second(self, now: float, index: int) -> None:
        """Once a second: the timer to both pages in this room's second of the tick period, a ping
        to a page not heard from lately, and the end of a room nobody started before its links
        expired."""
        if self._closing or self.meter.ended:
            return
        if (index + self.tick_phase) % TICK_SECONDS == 0:
            self._tick()
        for seat in self._present():
            # A page in direct mode reports often enough to need no ping.
            if now - seat.last_heard >= PING_SECONDS:
                seat.tell(dump("ping", t=round(time.time() * 1000)))
        if self.meter.state is MeterState.WAITING and self._clock() >= self.record.links_expire_at:
            self._spawn(self.end(EndReason.EXPIRED))

    def _tick(self) -> None:
        tick = dump("tick", billed_seconds=self.meter.billed_seconds, state=self.meter.state.value)
        for seat in self._present():
            seat.tell(tick)

    @property
    def fine_steps(self) -> bool:
        """Whether the room needs the clock's quarter-second steps, not just whole seconds: relayed
        media is watched frame by frame, and a budget about to run out stops on time. A direct-mode
        room learns of changes from its pages' reports, as they come."""
        if self.relay:
            return True
        budget = self.meter.budget_seconds
        return budget is not None and budget * 1000 - self.meter.billed_ms <= 2000

    def meter_values(self) -> tuple[int, MeterState, bool]:
        return (self.meter.billed_ms, self.meter.state, self.meter.warned)

    def unsaved(self, now: float) -> bool | None:
        """None when the meter has not moved since it was last saved (idle rooms cost no Redis
        writes); True when it needs a full save, False when the billed time alone changed."""
        values = self.meter_values()
        if self._saved == values:
            return None
        full = self._saved[1:] != values[1:]
        return full or self._fully_saved_at is None or now - self._fully_saved_at >= REFRESH_SAVED_SECONDS

    def saved(self, now: float, values: tuple[int, MeterState, bool], *, full: bool) -> None:
        self._saved = values
        if full:
            self._fully_saved_at = now

    def _silence_check(self, role: Role, now: float) -> None:
        """A gateway connection that stopped answering pings is treated as gone."""
        seat = self.seats[role]
        if seat is not None and seat.control is not None and now - seat.last_heard > SILENT_CONTROL_SECONDS:
            self._spawn(seat.close_connection())

    # ------------------------------------------------------------------ the end

    async def end(self, reason: EndReason) -> None:
        self._apply(self.meter.end(reason, time.monotonic()))

    async def _finish(self, event: MeterEvent) -> None:
        assert event.reason is not None
        recording = self._stop_recording()
        finished = await self._book.finish(
            self.id, event.billed_seconds, event.reason, self._clock(), recording
        )
        await self._meters.save(self.id, self.meter)
        frame = dump("ended", reason=event.reason.value, billed_seconds=event.billed_seconds)
        for seat in self._present():
            seat.tell(frame)
            await seat.send(frame)
        if finished:
            await self._events.publish(
                RoomEvent(
                    self.id,
                    self.record.session_id,
                    "ended",
                    event.billed_seconds,
                    self._clock(),
                    reason=event.reason.value,
                )
            )
        await self.close()

    # ------------------------------------------------------------------ recording

    def _open_recording(self) -> None:
        """From the moment the call is live; a room revived after a restart starts a new part."""
        if not self.record.recorded or self._recording is not None:
            return
        self._recordings_dir.mkdir(parents=True, exist_ok=True)
        part = 1 + sum(1 for _ in self._recordings_dir.glob(f"{self.id}*.mkv"))
        name = f"{self.id}.mkv" if part == 1 else f"{self.id}-part{part}.mkv"
        try:
            self._recording = Recording.open(self._recordings_dir / name)
        except RecordingError as exc:
            log.error("cannot open the recording", room=self.id, error=str(exc))
            return
        self._recording_name = f"{self._recordings_dir.name}/{self.id}.mkv"

    def _stop_recording(self) -> str | None:
        """Close the file; the recording's first file, if any frame was ever recorded."""
        recording, self._recording = self._recording, None
        if recording is not None:
            try:
                recording.close()
            except RecordingError as exc:
                log.error("closing the recording failed", room=self.id, error=str(exc))
        first = self._recordings_dir / f"{self.id}.mkv"
        return self._recording_name if first.exists() else None

    # ------------------------------------------------------------------ shutdown

    async def close(self) -> None:
        """Disconnect everyone; the meter is saved so that the room can continue elsewhere."""
        if self._closing:
            return
        self._closing = True
        if self.meter.state is not MeterState.ENDED:
            self._apply(self.meter.advance(time.monotonic()))
            await self._meters.save(self.id, self.meter)
        self._stop_recording()
        for seat in self._present():
            await seat.close()
        self.seats = dict.fromkeys(Role)
        await self._on_closed(self)


def _tariff(record: RoomRecord) -> dict[str, Any] | None:
    tariff = record.tariff
    if tariff is None:
        return None
    return {"currency": tariff.currency, "per_minute": tariff.per_minute, "per_session": tariff.per_session}

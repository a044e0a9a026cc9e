"""The video gateway inside the service: built from settings in the app's lifecycle.

Also runs the two background jobs rooms need: the consumer that turns room events into session
transitions, and the retention sweep that deletes recordings past their time.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import structlog
from aiohttp import web

from concierge.appkeys import REDIS, SESSIONS, SETTINGS
from concierge.config import Settings
from concierge.rooms import RoomEventConsumer, SessionRooms, SqlRoomBook, room_opener
from video_gateway.events import RoomEventStream
from video_gateway.gateway import Gateway
from video_gateway.ice import restrict_host_addresses
from video_gateway.links import LinkSigner
from video_gateway.meter_store import MeterStore
from video_gateway.retention import delete_expired
from video_gateway.web import GATEWAY, add_routes

log = structlog.get_logger("concierge.video")

SESSION_ROOMS = web.AppKey("session_rooms", SessionRooms)

RETENTION_SWEEP_SECONDS = 3600.0
RECORDINGS = "recordings"  # under the data dir


async def gateway_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    restrict_host_addresses(settings.media_address_list)
    book = SqlRoomBook(app[SESSIONS])
    stream = RoomEventStream(app[REDIS])
    gateway = Gateway(
        book=book,
        signer=LinkSigner(settings.signing_key),
        meters=MeterStore(app[REDIS]),
        events=stream,
        ice=settings.ice,
        relay_method=settings.relay_method,
        recordings_dir=settings.data_dir / RECORDINGS,
    )
    app[GATEWAY] = gateway
    gateway.start()
    app[SESSION_ROOMS] = SessionRooms(app[SESSIONS], room_opener(settings, book))
    consumer = RoomEventConsumer(app[SESSIONS], stream, consumer=f"{socket.gethostname()}-{os.getpid()}")
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(consumer.run(stop), name="room-events"),
        asyncio.create_task(_sweep_recordings(settings, stop), name="recording-retention"),
    ]
    try:
        yield
    finally:
        stop.set()
        await gateway.close()
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _sweep_recordings(settings: Settings, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            deleted = await asyncio.to_thread(
                delete_expired,
                settings.data_dir / RECORDINGS,
                settings.recording_retention_days,
                datetime.now(UTC),
            )
            if deleted:
                log.info("recordings deleted after retention", count=len(deleted))
        except OSError as exc:
            log.warning("recording retention sweep failed", error=str(exc))
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), RETENTION_SWEEP_SECONDS)


async def _close_rooms(app: web.Application) -> None:
    # On shutdown, before aiohttp waits for open handlers: the room sockets are those handlers.
    gateway = app.get(GATEWAY)
    if gateway is not None:
        await gateway.close()


def install(app: web.Application) -> None:
    app.cleanup_ctx.append(gateway_ctx)
    app.on_shutdown.append(_close_rooms)
    add_routes(app)

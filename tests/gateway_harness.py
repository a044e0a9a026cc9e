"""A running service with the video gateway, and rooms opened the way the core opens them."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from concierge.app import create_app
from concierge.config import Settings, load_settings
from concierge.database import create_engine, session_factory
from concierge.rooms import SqlRoomBook, room_opener
from video_gateway.client import RoomClient
from video_gateway.opening import RoomLinks, RoomRequest
from video_gateway.rooms import Participant


class GatewayService:
    """The service (`create_app`: database, Redis, gateway) on a real TCP port; restartable."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.runner: web.AppRunner | None = None
        self.app: web.Application | None = None

    @property
    def base(self) -> str:
        return self.settings.base_url

    async def start(self) -> None:
        self.app = create_app(self.settings)
        self.runner = web.AppRunner(self.app, handle_signals=False)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.settings.http_port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    async def open_room(self, **request: Any) -> RoomLinks:
        engine = create_engine(self.settings.database)
        try:
            opener = room_opener(self.settings, SqlRoomBook(session_factory(engine)))
            return await opener.open(
                RoomRequest(
                    customer=request.pop("customer", Participant("Carla", "es")),
                    expert=request.pop("expert", Participant("Ed", "en")),
                    **request,
                )
            )
        finally:
            await engine.dispose()


@contextlib.asynccontextmanager
async def gateway_service(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str, redis_url: str, port: int, **env: str
) -> AsyncIterator[GatewayService]:
    monkeypatch.setenv("CONCIERGE_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("CONCIERGE_DATABASE_URL", database_url)
    monkeypatch.setenv("CONCIERGE_REDIS_URL", redis_url)
    monkeypatch.setenv("CONCIERGE_HTTP_PORT", str(port))
    # aioice leaves 127.0.0.1 out by default; on the test machines only loopback is used.
    monkeypatch.setenv("CONCIERGE_MEDIA_ADDRESSES", "127.0.0.1")
    for name, value in env.items():
        monkeypatch.setenv(f"CONCIERGE_{name.upper()}", value)
    service = GatewayService(load_settings())
    await service.start()
    try:
        yield service
    finally:
        await service.stop()


async def wait_until(condition: Callable[[], bool], within: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def participants(*clients: RoomClient) -> AsyncIterator[tuple[RoomClient, ...]]:
    try:
        yield clients
    finally:
        for client in clients:
            with contextlib.suppress(Exception):
                await client.close()


@contextlib.asynccontextmanager
async def http_session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session

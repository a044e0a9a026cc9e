"""The whole service (core, bots, channels) started for a test, and a web chat user to drive it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientWebSocketResponse
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bots.appkeys import CONCIERGE, DISPATCHER, MATCHER
from concierge.appkeys import SESSIONS
from concierge.cli.commands import service_app
from concierge.config import load_settings
from concierge.hours import WeeklyHours
from concierge.model import Channel, ChannelIdentity, Expert, Person
from concierge.pricing import Pricing, PricingMode
from knowledge.taxonomy import load_taxonomy
from matcher.engine import Matcher

ALWAYS = {day: ["00:00-24:00"] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}


@asynccontextmanager
async def running_service(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    database_url: str,
    embedder: Any,
    detector: Any,
    port: int | None = None,
    **env: str,
) -> AsyncIterator[TestClient]:
    """The service as `concierge serve` builds it, on an embedded Redis and the test's database."""
    monkeypatch.setenv("CONCIERGE_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("CONCIERGE_DATABASE_URL", database_url)
    for name, value in env.items():
        monkeypatch.setenv(f"CONCIERGE_{name.upper()}", value)
    app = service_app(load_settings())
    app[MATCHER] = Matcher(embedder, detector, load_taxonomy())
    client = TestClient(TestServer(app, port=port) if port else TestServer(app))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()


async def add_listed_expert(
    sessions: async_sessionmaker[AsyncSession],
    expert_id: str,
    *,
    name: str,
    headline: str,
    skills: list[str],
    categories: list[str],
    languages: list[str],
    channel: Channel,
    user_id: str,
    pricing: Pricing | None = None,
    online: bool = True,
    locale: str = "en",
) -> Expert:
    """A published expert reachable on `channel` as `user_id`, open all week."""
    person = Person(display_name=name, locale=locale, time_zone="Europe/Paris", birth_date=date(1980, 5, 1))
    expert = Expert(
        id=expert_id,
        person_id=person.id,
        headline=headline,
        bio="",
        skills=skills,
        categories=categories,
        languages=languages,
        pricing=pricing or Pricing(PricingMode.FREE, 0, "EUR"),
        time_zone="Europe/Paris",
        hours_json=WeeklyHours.parse(ALWAYS).to_json(),
        online=online,
        published=True,
    )
    async with sessions.begin() as db:
        db.add(person)
        db.add(ChannelIdentity(channel=channel, external_id=user_id, person_id=person.id))
        db.add(expert)
    return expert


async def refresh_matcher(client: TestClient, expert_ids: list[str]) -> None:
    """Experts written straight into the database become visible to the running matcher."""
    from bots.appkeys import MATCHER_HOST

    await client.app[MATCHER_HOST].refresh(expert_ids)


def app_sessions(client: TestClient) -> async_sessionmaker[AsyncSession]:
    return client.app[SESSIONS]


def concierge_of(client: TestClient) -> Any:
    return client.app[CONCIERGE]


def dispatcher_of(client: TestClient) -> Any:
    return client.app[DISPATCHER]


class WebUser:
    """A browser tab of the web widget: the same frames chat.js sends and reads."""

    def __init__(self, client: TestClient, *, locale: str = "en-GB", key: str | None = None) -> None:
        self._client = client
        self.locale = locale
        self.key = key
        self.token: str | None = None
        self.visitor: str | None = None
        self.socket: ClientWebSocketResponse | None = None
        self.messages: list[dict[str, Any]] = []  # current state, edits applied
        self.errors: list[str] = []
        self._changed = asyncio.Condition()
        self._reader: asyncio.Task[None] | None = None
        self.since = 0

    async def connect(self) -> None:
        self.socket = await self._client.ws_connect("/chat/ws")
        await self.socket.send_json(
            {
                "type": "hello",
                "token": self.token,
                "since": self.since,
                "key": self.key,
                "locale": self.locale,
            }
        )
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.socket is not None
        async for message in self.socket:
            frame = json.loads(message.data)
            async with self._changed:
                if frame["type"] == "welcome":
                    self.token, self.visitor = frame["token"], frame["visitor"]
                elif frame["type"] == "error":
                    self.errors.append(frame["error"])
                elif frame["type"] == "message":
                    self.since = max(self.since, frame["seq"])
                    target = None
                    if frame["edit"] and frame["ref"]:
                        target = next((m for m in self.messages if m["ref"] == frame["ref"]), None)
                    if target is None:
                        self.messages.append(frame)
                    else:
                        target.update(frame)
                self._changed.notify_all()

    async def close(self) -> None:
        if self.socket is not None:
            await self.socket.close()
        if self._reader is not None:
            await self._reader

    async def say(self, text: str) -> None:
        assert self.socket is not None
        await self.socket.send_json({"type": "text", "text": text})

    async def press(self, action: str) -> None:
        assert self.socket is not None
        await self.socket.send_json({"type": "press", "action": action})

    async def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10
    ) -> dict[str, Any]:
        async def found() -> dict[str, Any]:
            async with self._changed:
                while True:
                    for message in self.messages:
                        if predicate(message):
                            return message
                    await self._changed.wait()

        try:
            return await asyncio.wait_for(found(), timeout)
        except TimeoutError:
            recent = "\n---\n".join(m["text"] for m in self.messages[-5:])
            raise AssertionError(f"no matching message; the last ones were:\n{recent}") from None

    async def wait_errors(self, count: int, timeout: float = 10) -> list[str]:
        """The first `count` error frames the server sent."""
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: len(self.errors) >= count), timeout)
        return self.errors[:count]

    async def wait_closed(self, timeout: float = 10) -> None:
        assert self._reader is not None
        await asyncio.wait_for(asyncio.shield(self._reader), timeout)

    async def wait_text(self, fragment: str, timeout: float = 10) -> dict[str, Any]:
        return await self.wait_for(lambda m: fragment in m["text"], timeout)

    async def wait_welcome(self) -> None:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: self.visitor is not None), 10)


def link_button(message: dict[str, Any], label_fragment: str) -> str:
    for row in message["buttons"]:
        for b in row:
            if label_fragment in b["label"] and "url" in b:
                return str(b["url"])
    raise AssertionError(f"no link button {label_fragment!r} in {message['buttons']}")


def button(message: dict[str, Any], label_fragment: str) -> str:
    for row in message["buttons"]:
        for b in row:
            if label_fragment in b["label"]:
                return str(b["action"])
    raise AssertionError(f"no button {label_fragment!r} in {message['buttons']}")

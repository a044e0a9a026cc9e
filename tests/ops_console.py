"""The operator console for tests: the service app on the test's database and Redis, a logged-in
HTTP client, and sessions seeded through the real lifecycle and cashier."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.invoice import InvoiceProvider
from concierge.app import create_app
from concierge.appkeys import SESSIONS
from concierge.config import load_settings
from concierge.lifecycle import State
from concierge.model import Expert, utcnow
from concierge.money_back import MoneyBack
from concierge.ops.accounts import create_operator
from concierge.payments import Cashier
from concierge.pricing import Pricing, PricingMode
from concierge.transitions import Lifecycle
from tests.factories import add_expert, add_person

PASSWORD = "correct horse battery staple"
HTML = {"Accept": "text/html"}
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(page: str) -> str:
    match = _CSRF.search(page)
    assert match is not None, page
    return match.group(1)


@asynccontextmanager
async def console(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    database_url: str,
    redis_url: str,
    port: int | None = None,
    **env: str,
) -> AsyncIterator[TestClient]:
    """The core app (the console included) on this test's database; the console's Redis keys
    (login sessions, failure counts) start empty. Only those: the Redis database may be shared."""
    redis = aioredis.Redis.from_url(redis_url)
    try:
        async for key in redis.scan_iter(match="concierge:{ops_*"):
            await redis.delete(key)
    finally:
        await redis.aclose()
    monkeypatch.setenv("CONCIERGE_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("CONCIERGE_DATABASE_URL", database_url)
    monkeypatch.setenv("CONCIERGE_REDIS_URL", redis_url)
    for name, value in env.items():
        monkeypatch.setenv(f"CONCIERGE_{name.upper()}", value)
    server = (
        TestServer(create_app(load_settings()), port=port)
        if port
        else TestServer(create_app(load_settings()))
    )
    client = TestClient(server)
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()


def sessions_of(client: TestClient) -> async_sessionmaker[AsyncSession]:
    return client.app[SESSIONS]


async def add_operator(client: TestClient, name: str = "alice", password: str = PASSWORD) -> str:
    return (await create_operator(sessions_of(client), name, password)).id


async def log_in(client: TestClient, name: str = "alice", password: str = PASSWORD) -> ClientResponse:
    form = await client.get("/ops/login")
    assert form.status == 200
    return await client.post(
        "/ops/login",
        data={"csrf": csrf_of(await form.text()), "name": name, "password": password},
        allow_redirects=False,
    )


async def page_csrf(client: TestClient) -> str:
    live = await client.get("/ops/", headers=HTML)
    assert live.status == 200
    return csrf_of(await live.text())


class Clock:
    def __init__(self, now: datetime | None = None) -> None:
        self.now = now or utcnow()

    def __call__(self) -> datetime:
        return self.now


class Seeder:
    """Sessions made the way the service makes them, at times the test chooses."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions
        self.clock = Clock()
        self.lifecycle = Lifecycle(sessions, clock=self.clock)
        self.cashier = Cashier(load_settings(), sessions, InvoiceProvider(), clock=self.clock)
        self.money_back = MoneyBack(sessions, self.cashier, clock=self.clock)
        self._count = 0

    async def settled(
        self,
        at: datetime,
        *,
        minutes: int = 10,
        accept_after: float = 30,
        offer_after: float = 0,
        customer: str = "Carla",
        price: int = 150,
    ) -> tuple[str, str, str]:
        """(session, customer person, expert person): asked at `at`, offered `offer_after` seconds
        later, accepted `accept_after` seconds after that, `minutes` long at `price` cents a
        minute, settled."""
        self._count += 1
        self.clock.now = at
        person = await add_person(self.sessions, customer)
        pricing = (
            Pricing(PricingMode.PER_MINUTE, price, "EUR") if price else Pricing(PricingMode.FREE, 0, "EUR")
        )
        expert = await add_expert(
            self.sessions, f"ex-{self._count}-{person.id[-6:]}", name="Tomás", pricing=pricing
        )
        request = await self.lifecycle.open_request(person.id, "my bike brakes squeal")
        self.clock.now = at + timedelta(seconds=offer_after)
        await self.lifecycle.offer(request.id, [(expert.id, 1.0)])
        self.clock.now += timedelta(seconds=accept_after)
        session = await self.lifecycle.claim(request.id, expert.id, commission_percent=Decimal(20))
        assert (await self.cashier.hand_off(session.id)).state is State.READY
        self.clock.now += timedelta(seconds=60)
        await self.lifecycle.go_live(session.id, at=self.clock.now)
        self.clock.now += timedelta(minutes=minutes, seconds=5)
        await self.lifecycle.end(session.id, minutes * 60)
        assert await self.cashier.settle(session.id) is not None
        return session.id, person.id, expert.person_id

    async def live(self, at: datetime, customer: str = "Lena") -> str:
        """A session live since `at`, with its expert online."""
        self._count += 1
        self.clock.now = at
        person = await add_person(self.sessions, customer)
        expert = await add_expert(self.sessions, f"ex-live-{self._count}", name="Wes")
        async with self.sessions.begin() as db:
            row = await db.get(Expert, expert.id)
            assert row is not None
            row.online, row.published = True, True
        request = await self.lifecycle.open_request(person.id, "my router will not talk to my laptop")
        await self.lifecycle.offer(request.id, [(expert.id, 1.0)])
        session = await self.lifecycle.claim(request.id, expert.id, commission_percent=Decimal(20))
        assert (await self.cashier.hand_off(session.id)).state is State.READY
        await self.lifecycle.go_live(session.id, at=at)
        return session.id

    async def unmatched(self, at: datetime) -> str:
        self.clock.now = at
        person = await add_person(self.sessions, "Nadia")
        return (await self.lifecycle.open_request(person.id, "nobody can help with this")).id

    async def escalated(self, at: datetime) -> tuple[str, str]:
        """(money-back request, session) escalated to the operators."""
        session_id, customer, expert = await self.settled(at)
        self.clock.now += timedelta(hours=1)
        asked = await self.money_back.ask(customer, session_id, "The brakes squeal again.")
        await self.money_back.answer(expert, asked.id, "decline")
        await self.money_back.escalate(customer, asked.id)
        return asked.id, session_id


Configure = Callable[..., Any]

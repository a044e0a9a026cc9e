"""The first Accept wins through an atomic Redis claim; the database stays the authority."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from concierge.claims import AlreadyTaken, OfferDesk, claim_key
from concierge.embedded_redis import EmbeddedRedis
from concierge.errors import DomainError, IllegalTransition
from concierge.lifecycle import State
from concierge.model import Session
from concierge.transitions import Lifecycle
from tests.factories import add_expert, add_person

COMMISSION = Decimal(20)


@pytest.fixture
async def redis(tmp_path: Path) -> AsyncIterator[aioredis.Redis]:
    server = EmbeddedRedis(tmp_path)
    client = aioredis.Redis.from_url(await server.start())
    yield client
    await client.aclose()
    await server.stop()


async def offered(
    sessions: async_sessionmaker[AsyncSession], experts: int
) -> tuple[Lifecycle, str, list[str]]:
    lifecycle = Lifecycle(sessions)
    customer = await add_person(sessions, "Customer")
    ids = [(await add_expert(sessions, f"x{i}")).id for i in range(experts)]
    request = await lifecycle.open_request(customer.id, "my wifi is broken")
    await lifecycle.offer(request.id, [(expert, 1.0 - i / 10) for i, expert in enumerate(ids)])
    return lifecycle, request.id, ids


async def test_simultaneous_accepts_have_one_winner(
    sessions: async_sessionmaker[AsyncSession], redis: aioredis.Redis
) -> None:
    lifecycle, request_id, experts = await offered(sessions, 6)
    desk = OfferDesk(redis, sessions, lifecycle)
    results = await asyncio.gather(
        *(desk.accept(request_id, expert, commission_percent=COMMISSION) for expert in experts),
        return_exceptions=True,
    )
    winners = [r for r in results if isinstance(r, Session)]
    assert len(winners) == 1
    assert sum(isinstance(r, AlreadyTaken) for r in results) == 5
    assert (await redis.get(claim_key(request_id))) == winners[0].expert_id.encode()
    assert await redis.ttl(claim_key(request_id)) > 0
    assert await lifecycle.state_of(request_id) is State.CLAIMED
    # The winner pressing Accept again gets the same session; the others still may not.
    again = await desk.accept(request_id, winners[0].expert_id, commission_percent=COMMISSION)
    assert again.id == winners[0].id
    loser = next(e for e in experts if e != winners[0].expert_id)
    with pytest.raises(AlreadyTaken):
        await desk.accept(request_id, loser, commission_percent=COMMISSION)
    assert await desk.decline(request_id, loser) is False  # already marked taken


async def test_a_failed_claim_is_released_for_the_next_expert(
    sessions: async_sessionmaker[AsyncSession], redis: aioredis.Redis
) -> None:
    lifecycle, request_id, experts = await offered(sessions, 2)
    desk = OfferDesk(redis, sessions, lifecycle)
    assert await desk.decline(request_id, experts[0]) is True
    with pytest.raises(DomainError, match="not offered"):
        await desk.accept(request_id, experts[0], commission_percent=COMMISSION)  # declined earlier
    assert await redis.get(claim_key(request_id)) is None
    session = await desk.accept(request_id, experts[1], commission_percent=COMMISSION)
    assert session.expert_id == experts[1]


async def test_a_cancelled_request_cannot_be_claimed(
    sessions: async_sessionmaker[AsyncSession], redis: aioredis.Redis
) -> None:
    lifecycle, request_id, experts = await offered(sessions, 1)
    await lifecycle.cancel(request_id, "customer left")
    desk = OfferDesk(redis, sessions, lifecycle)
    with pytest.raises((IllegalTransition, DomainError)):
        await desk.accept(request_id, experts[0], commission_percent=COMMISSION)
    assert await redis.get(claim_key(request_id)) is None


async def test_releasing_never_removes_someone_elses_claim(
    sessions: async_sessionmaker[AsyncSession], redis: aioredis.Redis
) -> None:
    lifecycle, request_id, experts = await offered(sessions, 1)
    await redis.set(claim_key(request_id), "someone-else")
    desk = OfferDesk(redis, sessions, lifecycle)
    with pytest.raises(AlreadyTaken):
        await desk.accept(request_id, experts[0], commission_percent=COMMISSION)
    assert await redis.get(claim_key(request_id)) == b"someone-else"

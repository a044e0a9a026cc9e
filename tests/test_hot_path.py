"""What every help request passes through, made cheap: plain-SQL reads and writes, and the
guarantees they keep (atomic, never blocking the event loop on another process's lock)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest
from sqlalchemy import Connection, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from concierge.database import read, write
from concierge.lifecycle import State
from concierge.model import HelpRequest, Person
from concierge.transitions import Lifecycle
from tests.factories import add_person


def _count_requests(db: Connection) -> int:
    return int(db.scalar(select(func.count()).select_from(HelpRequest)) or 0)


async def test_open_request_writes_the_request_and_the_adopted_language_together(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    customer = await add_person(sessions)
    request = await Lifecycle(sessions).open_request(
        customer.id, "mon wifi ne marche plus", language="fr", customer_locale="fr"
    )
    async with sessions() as db:
        stored = await db.get(HelpRequest, request.id)
        person = await db.get(Person, customer.id)
    assert stored is not None and stored.status is State.OPEN and stored.language == "fr"
    assert stored.created_at == request.created_at
    assert person is not None and person.locale == "fr"
    assert await read(sessions, _count_requests) == 1


async def test_a_failed_write_changes_nothing(sessions: async_sessionmaker[AsyncSession]) -> None:
    customer = await add_person(sessions)
    lifecycle = Lifecycle(sessions)
    first = await lifecycle.open_request(customer.id, "help me")

    def twice(db: Connection) -> None:
        db.execute(HelpRequest.__table__.insert(), [{**_row(first), "id": "req_new"}])
        db.execute(HelpRequest.__table__.insert(), [_row(first)])  # the same id again

    with pytest.raises(IntegrityError):
        await write(sessions, twice)
    assert await read(sessions, _count_requests) == 1


def _row(request: HelpRequest) -> dict[str, object]:
    return {column.key: getattr(request, column.key) for column in HelpRequest.__mapper__.column_attrs}


@pytest.mark.parametrize("engine_name", ["sqlite"])
async def test_a_write_waits_for_another_process_lock_without_blocking_the_loop(
    sessions: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    customer = await add_person(sessions)
    path = make_url(database_url).database
    assert path is not None and Path(path).exists()
    other = sqlite3.connect(path, isolation_level=None)  # another process's connection, in effect
    other.execute("BEGIN IMMEDIATE")
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    opening = asyncio.create_task(Lifecycle(sessions).open_request(customer.id, "help me"))
    started = time.monotonic()
    while time.monotonic() - started < 0.3:
        await asyncio.sleep(0.01)
    assert not opening.done()  # waiting for the lock…
    assert ticks >= 10  # …while the loop goes on serving others
    other.execute("COMMIT")
    other.close()
    request = await asyncio.wait_for(opening, 10)
    ticker.cancel()
    assert await read(sessions, lambda db: db.scalar(select(HelpRequest.text))) == request.text

"""The SQL engine: SQLite (aiosqlite) by default, PostgreSQL (asyncpg) when the URL says so."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from concierge.errors import StorageError

_SQLITE_BUSY_TIMEOUT_MS = 5000


def create_engine(url: str) -> AsyncEngine:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_async_engine(url, pool_pre_ping=True)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url)
    _configure_sqlite(engine)
    return engine


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from the driver so that BEGIN below is really issued.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute(f"PRAGMA busy_timeout = {_SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        # IMMEDIATE takes the write lock up front: a deferred transaction that reads and then
        # writes fails at once with SQLITE_BUSY when another writer got in between. Sessions
        # that only read say so (`read_sessions`) and begin deferred: WAL lets them run
        # alongside the one writer instead of queueing for its lock.
        if connection.get_execution_options().get(_READ_ONLY):
            connection.exec_driver_sql("BEGIN")
        else:
            connection.exec_driver_sql("BEGIN IMMEDIATE")


_READ_ONLY = "concierge_read_only"


class _OneWriterAtATime(async_sessionmaker[AsyncSession]):
    """SQLite has one writer at a time. Writers of this process queue here, in asyncio, rather
    than in SQLite's busy handler, which sleeps in steps of up to 100 ms and, under a burst of
    writes, turned a millisecond insert into hundreds of milliseconds of waiting."""

    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__(engine, expire_on_commit=False)
        self._writer = asyncio.Lock()

    @asynccontextmanager
    async def _serialised(self) -> AsyncIterator[AsyncSession]:
        async with self._writer, super().begin() as session:
            yield session

    def begin(self) -> AbstractAsyncContextManager[AsyncSession]:  # type: ignore[override]
        return self._serialised()


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    if engine.dialect.name == "sqlite":
        return _OneWriterAtATime(engine)
    return async_sessionmaker(engine, expire_on_commit=False)


def read_sessions(sessions: async_sessionmaker[AsyncSession]) -> async_sessionmaker[AsyncSession]:
    """Sessions on the same engine for work that only reads (never write through them)."""
    engine = sessions.kw["bind"]
    return async_sessionmaker(engine.execution_options(**{_READ_ONLY: True}), expire_on_commit=False)


async def ping(engine: AsyncEngine) -> None:
    """Raise StorageError unless the database answers a trivial query."""
    try:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except (SQLAlchemyError, OSError) as exc:
        raise StorageError(f"database unreachable: {type(exc).__name__}") from exc


def redacted(url: str) -> str:
    """The URL with its password hidden, for logs and error messages."""
    return make_url(url).render_as_string(hide_password=True)

"""The SQL engine: SQLite (aiosqlite) by default, PostgreSQL (asyncpg) when the URL says so."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, event, text
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from concierge.errors import StorageError

_SQLITE_BUSY_TIMEOUT_MS = 5000
T = TypeVar("T")


def create_engine(url: str) -> AsyncEngine:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        # At most 15 connections, as with the defaults (5 + 10 overflow), but 10 kept open: under
        # a burst of requests the overflow ones were opened and closed again by the dozen, each
        # a new server process to PostgreSQL (bench-bots: ~120 -> ~165 requests/s).
        return create_async_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=5)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url)
    _configure_sqlite(engine.sync_engine, _SQLITE_BUSY_TIMEOUT_MS)
    return engine


def _configure_sqlite(engine: Engine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from the driver so that BEGIN below is really issued.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
        cursor.close()

    @event.listens_for(engine, "begin")
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
        self._inline: Engine | None = None
        database = engine.url.database
        if database and database != ":memory:":
            # The same file through the synchronous driver, called from the event loop itself.
            # No busy wait: when another process holds the write lock, the work goes the
            # asynchronous way instead of blocking the loop.
            self._inline = create_sync_engine(
                engine.url.set(drivername="sqlite"), pool_size=1, max_overflow=0
            )
            _configure_sqlite(self._inline, 0)
            event.listen(engine.sync_engine, "engine_disposed", lambda _: self._inline_dispose())

    def _inline_dispose(self) -> None:
        if self._inline is not None:
            self._inline.dispose()

    async def write(self, work: Callable[[Connection], T]) -> T:
        async with self._writer:
            if self._inline is not None:
                try:
                    with self._inline.begin() as inline:
                        return work(inline)
                except OperationalError as exc:
                    if not _is_busy(exc):
                        raise
            engine: AsyncEngine = self.kw["bind"]
            async with engine.begin() as connection:
                return await connection.run_sync(work)

    async def read(self, work: Callable[[Connection], T]) -> T:
        if self._inline is not None:
            try:
                with (
                    self._inline.connect().execution_options(**{_READ_ONLY: True}) as inline,
                    inline.begin(),
                ):
                    return work(inline)
            except OperationalError as exc:
                if not _is_busy(exc):
                    raise
        engine: AsyncEngine = self.kw["bind"]
        async with engine.execution_options(**{_READ_ONLY: True}).connect() as connection:
            return await connection.run_sync(work)

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


async def write(sessions: async_sessionmaker[AsyncSession], work: Callable[[Connection], T]) -> T:
    """Run `work` (SQL through a plain connection, no ORM session) as one write transaction.

    For the few statements every request makes. SQLite is a library in this process, not a
    server: through aiosqlite each statement, BEGIN and COMMIT is a hand-off to a thread and
    back, each waiting for a turn of a busy event loop (and for the GIL), while this
    process's write lock is held; under load that made a one-row insert hold it for ~20 ms
    and capped the process at ~50 requests/s. Called directly, the same transaction takes a
    fraction of a millisecond. `work` may run twice (a first try that found the database
    locked by another process changes nothing), so it must only touch the database."""
    if isinstance(sessions, _OneWriterAtATime):
        return await sessions.write(work)
    engine: AsyncEngine = sessions.kw["bind"]
    async with engine.begin() as connection:
        return await connection.run_sync(work)


async def read(sessions: async_sessionmaker[AsyncSession], work: Callable[[Connection], T]) -> T:
    """Run `work` (SQL through a plain connection) for a lookup every request makes; see `write`.

    On a database server its statements run without a transaction around them (each sees
    what is committed when it runs): BEGIN and ROLLBACK would be two more round trips."""
    if isinstance(sessions, _OneWriterAtATime):
        return await sessions.read(work)
    engine: AsyncEngine = sessions.kw["bind"]
    async with engine.execution_options(isolation_level="AUTOCOMMIT").connect() as connection:
        return await connection.run_sync(work)


def _is_busy(exc: OperationalError) -> bool:
    code = getattr(exc.orig, "sqlite_errorcode", None)
    return code in {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED}


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

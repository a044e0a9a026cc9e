"""The SQL engine: SQLite (aiosqlite) by default, PostgreSQL (asyncpg) when the URL says so."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, Executable, RootTransaction, event, text
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InvalidatePoolError, OperationalError, SQLAlchemyError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.util import await_only

from concierge.errors import StorageError

_SQLITE_BUSY_TIMEOUT_MS = 5000
T = TypeVar("T")


def create_engine(url: str) -> AsyncEngine:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        # At most 15 connections, as with the defaults (5 + 10 overflow), all kept open: under a
        # burst of requests overflow ones were opened and closed again by the dozen, each a new
        # server process to PostgreSQL (bench-bots: 10 + 5 overflow still opened one for every
        # ~10 requests).
        if parsed.get_driver_name() != "asyncpg":
            return create_async_engine(url, pool_pre_ping=True, pool_size=15, max_overflow=0)
        engine = create_async_engine(url, pool_size=15, max_overflow=0)
        event.listen(engine.sync_engine, "checkout", _ping_asyncpg)
        return engine
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url)
    _configure_sqlite(engine.sync_engine, _SQLITE_BUSY_TIMEOUT_MS)
    return engine


def _ping_asyncpg(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """What pool_pre_ping does, in one round trip instead of three.

    Its asyncpg ping wraps ";" in BEGIN and ROLLBACK (for PgBouncer's transaction mode; this
    one goes by the simple query protocol, no prepared statement): with a lookup and an insert
    per request, that was six of a request's ten round trips to the server. As with pre-ping,
    a connection that does not answer is replaced, with every one pooled before it (the
    server restarted, most likely)."""
    if _UNPINGED.get():
        return  # `read` and `write`: they try again themselves on a connection that was dropped
    try:
        await_only(dbapi_connection.driver_connection.execute("SELECT 1"))
    except Exception as exc:
        raise InvalidatePoolError(f"a pooled connection did not answer: {exc!r}") from exc


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
_Queued = tuple[Callable[[Connection], Any], "asyncio.Future[Any]"]
_Outcome = tuple["asyncio.Future[Any]", Any, Exception | None]
_BUSY_PAUSES = (0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064)  # seconds, 127 ms in all


class _OneWriterAtATime(async_sessionmaker[AsyncSession]):
    """SQLite has one writer at a time. Writers of this process queue here, in asyncio, rather
    than in SQLite's busy handler, which sleeps in steps of up to 100 ms and, under a burst of
    writes, turned a millisecond insert into hundreds of milliseconds of waiting."""

    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__(engine, expire_on_commit=False)
        self._writer = asyncio.Lock()
        self._inline: Engine | None = None
        self._inline_writes: Engine | None = None
        self._queued: list[_Queued] = []
        self._flushing: asyncio.Task[None] | None = None
        self._committer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-commit")
        database = engine.url.database
        if database and database != ":memory:":
            # The same file through the synchronous driver, called from the event loop itself.
            # No busy wait: when another process holds the write lock, the work goes the
            # asynchronous way instead of blocking the loop. Writes have a connection of
            # their own: their COMMIT runs on a thread while reads go on.
            url = engine.url.set(drivername="sqlite")
            self._inline = create_sync_engine(url, pool_size=1, max_overflow=0)
            self._inline_writes = create_sync_engine(url, pool_size=1, max_overflow=0)
            for inline in (self._inline, self._inline_writes):
                _configure_sqlite(inline, 0)
            event.listen(engine.sync_engine, "engine_disposed", lambda _: self._inline_dispose())

    def _inline_dispose(self) -> None:
        for inline in (self._inline, self._inline_writes):
            if inline is not None:
                inline.dispose()

    async def write(self, work: Callable[[Connection], T]) -> T:
        if self._inline_writes is None:
            async with self._writer:
                return await self._write_async(work)
        loop = asyncio.get_running_loop()
        done: asyncio.Future[T] = loop.create_future()
        self._queued.append((work, done))
        if self._flushing is None:
            self._flushing = loop.create_task(self._flush())
        return await done

    async def _flush(self) -> None:
        """Group commit: what was queued goes in one transaction, each work in a savepoint of
        its own (one that fails changes nothing and fails alone), committed on a thread.

        A COMMIT waits for the disk: on the loop, that stopped every person's turn for
        0.3-1 ms per request. Now the loop goes on while a batch commits, and the writes
        asked for meanwhile make the next batch: one wait for the disk for several."""
        try:
            while self._queued:
                async with self._writer:
                    batch, self._queued = self._queued, []
                    await self._write_batch([(work, done) for work, done in batch if not done.done()])
        finally:
            self._flushing = None
            queued, self._queued = self._queued, []
            for _, done in queued:  # only when cancelled (shutting down)
                done.cancel()

    async def _write_batch(self, batch: list[_Queued]) -> None:
        try:
            outcomes = await self._commit_together(batch)
        except Exception as exc:  # nothing of the batch was written
            for _, done in batch:
                if not done.done():
                    done.set_exception(exc)
            return
        except BaseException:
            for _, done in batch:
                done.cancel()
            raise
        for done, value, error in outcomes:
            if done.done():
                continue  # its caller gave up; what it asked for is written all the same
            if error is None:
                done.set_result(value)
            else:
                done.set_exception(error)

    async def _commit_together(self, batch: list[_Queued]) -> list[_Outcome]:
        """The works' outcomes, once committed."""
        assert self._inline_writes is not None
        loop = asyncio.get_running_loop()
        for pause in (*_BUSY_PAUSES, None):
            inline = self._inline_writes.connect()
            try:
                transaction = inline.begin()
            except OperationalError as exc:
                inline.close()
                if not _is_busy(exc):
                    raise
                if pause is None:
                    break
                # Another connection holds the write lock (one of this process's sessions
                # that writes outside this queue, or another process): most let go within
                # milliseconds, so try again shortly rather than the slow way at once.
                await asyncio.sleep(pause)
                continue
            try:
                outcomes = _apply(inline, batch)
            except BaseException:
                inline.close()  # rolls the transaction back
                raise

            def commit(inline: Connection = inline, transaction: RootTransaction = transaction) -> None:
                try:
                    transaction.commit()
                finally:
                    inline.close()

            # Shielded: a cancelled flush still lets the thread finish with the connection.
            await asyncio.shield(loop.run_in_executor(self._committer, commit))
            return outcomes
        # Still locked (another process, most likely): the asynchronous way, whose waiting
        # for the lock happens on a thread, not on the loop.
        engine: AsyncEngine = self.kw["bind"]
        async with engine.begin() as connection:
            return await connection.run_sync(_apply, batch)

    async def _write_async(self, work: Callable[[Connection], T]) -> T:
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


def _apply(connection: Connection, batch: list[_Queued]) -> list[_Outcome]:
    """Each work in a savepoint of its own: one that fails changes nothing and fails alone."""
    outcomes: list[_Outcome] = []
    for work, done in batch:
        savepoint = connection.begin_nested()
        try:
            value = work(connection)
        except Exception as exc:  # that caller's error, not the batch's
            savepoint.rollback()
            outcomes.append((done, None, exc))
        else:
            savepoint.commit()
            outcomes.append((done, value, None))
    return outcomes


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
    and capped the process at ~50 requests/s. Called directly, the same statements take a
    fraction of a millisecond; only the COMMIT, which waits for the disk, runs on a thread,
    for every write asked for meanwhile at once (each in a savepoint: it fails alone).
    `work` may run twice (a first try that found the database locked by another process
    changes nothing), so it must only touch the database."""
    if isinstance(sessions, _OneWriterAtATime):
        return await sessions.write(work)
    engine: AsyncEngine = sessions.kw["bind"]

    async def once() -> T:
        async with engine.connect() as connection:
            transaction = await connection.begin()
            try:
                value = await connection.run_sync(work)
            except DBAPIError as exc:
                if not exc.connection_invalidated:
                    raise
                raise _Dropped() from exc  # before COMMIT was sent: nothing was written
            await transaction.commit()
            return value

    return await _unpinged(once)


async def write_statement(
    sessions: async_sessionmaker[AsyncSession],
    statement: Executable,
    parameters: dict[str, Any] | None = None,
) -> None:
    """One statement, atomic by itself, written as `write` would (on SQLite: in the group commit).

    On a database server it runs in autocommit: one round trip, where a transaction around
    it took three (BEGIN, the statement, COMMIT), and as durable (the server commits it
    before it answers). Tried again on a fresh connection only when the pooled one turns out
    to have been dropped before the statement reached the server; statements with a primary
    key of their own (every insert here) could not be written twice even so."""
    if isinstance(sessions, _OneWriterAtATime):
        await sessions.write(lambda db: db.execute(statement, parameters))
        return
    engine: AsyncEngine = sessions.kw["bind"]

    async def once() -> None:
        async with engine.connect() as connection:
            await connection.execution_options(isolation_level="AUTOCOMMIT")
            try:
                await connection.execute(statement, parameters)
            except DBAPIError as exc:
                if not exc.connection_invalidated:
                    raise
                raise _Dropped() from exc

    await _unpinged(once)


def writes_in_one_statement(sessions: async_sessionmaker[AsyncSession]) -> bool:
    """Whether one statement can carry a second write in its WITH clause (PostgreSQL can;
    SQLite cannot), so that `write_statement` writes both at once."""
    engine: AsyncEngine = sessions.kw["bind"]
    return engine.dialect.name == "postgresql"


async def read(sessions: async_sessionmaker[AsyncSession], work: Callable[[Connection], T]) -> T:
    """Run `work` (SQL through a plain connection) for a lookup every request makes; see `write`.

    On a database server its statements run without a transaction around them (each sees
    what is committed when it runs): BEGIN and ROLLBACK would be two more round trips."""
    if isinstance(sessions, _OneWriterAtATime):
        return await sessions.read(work)
    engine: AsyncEngine = sessions.kw["bind"]

    async def once() -> T:
        # Not engine.execution_options(...): that makes an engine, registering listeners, on
        # each call, which cost as much CPU as the lookup.
        async with engine.connect() as connection:
            await connection.execution_options(isolation_level="AUTOCOMMIT")
            try:
                return await connection.run_sync(work)
            except DBAPIError as exc:
                if not exc.connection_invalidated:
                    raise
                raise _Dropped() from exc

    return await _unpinged(once)


class _Dropped(Exception):
    """The pooled connection had been dropped by the server before the work took effect."""


_UNPINGED: ContextVar[bool] = ContextVar("concierge_unpinged_checkout", default=False)


async def _unpinged(once: Callable[[], Awaitable[T]]) -> T:
    """`once()` on a pooled connection taken without the checkout ping, tried again (pinged, as
    usual) if the server had dropped it, as after a restart.

    Every request looks its sender up, checks blocks and writes itself: three checkouts, whose
    pings were three of its round trips to the server. A dropped connection is found by the
    work's first statement instead, and SQLAlchemy then drops every connection pooled before
    it, as the ping would have."""
    token = _UNPINGED.set(True)
    try:
        return await once()
    except _Dropped:
        pass
    finally:
        _UNPINGED.reset(token)
    return await once()


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

"""Jobs due at a time (reminders, expiries, auto-cancels), kept in the database and run once.

A job is scheduled inside the caller's transaction, so it exists exactly when the change that
asked for it was committed. Every app process runs a `Scheduler`; each round it claims a batch
of due jobs with a lease (one atomic UPDATE … RETURNING; on PostgreSQL the rows are picked
with FOR UPDATE SKIP LOCKED, so processes take different jobs instead of queueing on the same
ones), then runs each job's handler in a transaction that also marks the job done, but only if
this process still holds the lease. A process that stalled past its lease (another took the
job over) therefore has its database effects rolled back: they happen exactly once. Effects
outside the database (a message sent) are at least once and should be idempotent; better, a
handler writes what is to be sent (a notice row) and the sending happens after the commit, as
payment notices do. Keep handlers short: their transaction is a write transaction (on SQLite
it holds the one write lock for its whole run).

A handler that raises is retried later with exponential backoff; after `max_attempts` the job
is given up (kept, with its last error, for `concierge jobs list --failed` and `jobs retry`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import delete, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from concierge.clock import Clock
from concierge.model import ScheduledJob, new_id, utcnow

log = structlog.get_logger("concierge.scheduler")

MAX_KEY_CHARS = 200
MAX_KIND_CHARS = 64
_MAX_ERROR_CHARS = 2000


@dataclass(frozen=True, slots=True)
class Job:
    id: str
    kind: str
    key: str
    run_at: datetime
    payload: dict[str, Any]
    attempts: int  # including the current one


Handler = Callable[[AsyncSession, Job], Awaitable[None]]
# For work that calls out (a payment provider) and opens its own transactions: run before the
# job is marked done, so at least once; it must be idempotent.
OutsideHandler = Callable[[Job], Awaitable[None]]


async def schedule(db: AsyncSession, kind: str, run_at: datetime, payload: dict[str, Any], key: str) -> None:
    """Run `kind` at `run_at`, in the caller's transaction.

    `key` names the job: scheduling a key again moves its time and payload (and gives a failed
    job a fresh start) as long as it has not run; a job that is done stays done, so a job that
    must run again takes a new key (e.g. with the booking's sequence number in it)."""
    if run_at.tzinfo is None:
        raise ValueError("run_at must be an aware datetime")
    if not 0 < len(key) <= MAX_KEY_CHARS:
        raise ValueError(f"a job key has 1 to {MAX_KEY_CHARS} characters")
    if not 0 < len(kind) <= MAX_KIND_CHARS:
        raise ValueError(f"a job kind has 1 to {MAX_KIND_CHARS} characters")
    dialect = db.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(ScheduledJob).values(
        id=new_id("job"), key=key, kind=kind, run_at=run_at, payload=payload, attempts=0, created_at=utcnow()
    )
    fresh = statement.excluded
    await db.execute(
        statement.on_conflict_do_update(
            index_elements=[ScheduledJob.key],
            set_={
                "kind": fresh.kind,
                "run_at": fresh.run_at,
                "payload": fresh.payload,
                "attempts": 0,
                "last_error": None,
                # A process running the old version loses its lease: its effects roll back.
                "lease_owner": None,
                "lease_until": None,
                "failed_at": None,
            },
            where=ScheduledJob.done_at.is_(None),
        )
    )


async def unschedule(db: AsyncSession, key: str) -> None:
    """Drop the job unless it has already run (in the caller's transaction)."""
    await db.execute(delete(ScheduledJob).where(ScheduledJob.key == key, ScheduledJob.done_at.is_(None)))


def owner_id() -> str:
    """Unique per process and start: host, pid and a random part (pids are reused)."""
    return f"{socket.gethostname()[:80]}:{os.getpid()}:{secrets.token_hex(4)}"


class _LeaseLost(Exception):
    """Another owner took the job over while this one ran it: roll this run back."""


class Scheduler:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        clock: Clock,
        *,
        owner: str,
        lease_seconds: float = 60,
        batch: int = 20,
        max_attempts: int = 8,
        retry_seconds: float = 30,
        max_retry_seconds: float = 3600,
    ) -> None:
        if lease_seconds <= 0 or batch < 1 or max_attempts < 1:
            raise ValueError("lease_seconds must be positive, batch and max_attempts at least 1")
        self._sessions = sessions
        self._clock = clock
        self.owner = owner
        self._lease = timedelta(seconds=lease_seconds)
        self._batch = batch
        self.max_attempts = max_attempts
        self._retry = retry_seconds
        self._max_retry = max_retry_seconds
        self._handlers: dict[str, Handler] = {}
        self._outside: set[str] = set()

    def handle(self, kind: str, handler: Handler) -> None:
        """Run jobs of `kind` with `handler(db, job)`; its database work commits with the job."""
        if kind in self._handlers:
            raise ValueError(f"jobs of kind {kind!r} already have a handler")
        self._handlers[kind] = handler

    @property
    def kinds(self) -> frozenset[str]:
        return frozenset(self._handlers)

    def handle_outside(self, kind: str, handler: OutsideHandler) -> None:
        """Run jobs of `kind` with `handler(job)` outside the job's transaction (it may open its
        own: on SQLite a transaction inside another one would wait for itself), then mark the job
        done if the lease is still held."""

        async def outside(_db: AsyncSession, job: Job) -> None:
            await handler(job)

        self.handle(kind, outside)
        self._outside.add(kind)

    def retry_delay(self, attempts: int) -> timedelta:
        """After the n-th failed attempt: 30 s, 1 min, 2 min, … up to an hour."""
        return timedelta(seconds=min(self._retry * 2 ** (attempts - 1), self._max_retry))

    async def run_due(self) -> int:
        """Claim the due jobs this process has handlers for and run them; how many were claimed."""
        if not self._handlers:
            return 0  # nothing to run here: not even a query
        claimed = await self._claim()
        for job, lease_until in claimed:
            if self._clock.now() >= lease_until:
                # The batch took too long: another process may have this one already.
                log.info("job lease ran out before its turn", job=job.id, kind=job.kind)
                continue
            await self._run(job)
        return len(claimed)

    async def run_forever(self, stop: asyncio.Event, interval: float) -> None:
        while not stop.is_set():
            try:
                claimed = await self.run_due()
            except Exception as exc:  # the database away for a moment: try again next round
                log.warning("scheduler round failed", owner=self.owner, error=repr(exc))
                claimed = 0
            if claimed >= self._batch:
                continue  # more may be due at once
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)

    async def _claim(self) -> list[tuple[Job, datetime]]:
        now = self._clock.now()
        lease_until = now + self._lease
        due = (
            select(ScheduledJob.id)
            .where(
                ScheduledJob.done_at.is_(None),
                ScheduledJob.failed_at.is_(None),
                ScheduledJob.run_at <= now,
                ScheduledJob.kind.in_(list(self._handlers)),
                or_(ScheduledJob.lease_until.is_(None), ScheduledJob.lease_until <= now),
            )
            .order_by(ScheduledJob.run_at)
            .limit(self._batch)
        )
        async with self._sessions.begin() as db:
            if db.get_bind().dialect.name == "postgresql":
                due = due.with_for_update(skip_locked=True)
            rows = await db.execute(
                update(ScheduledJob)
                .where(ScheduledJob.id.in_(due))
                .values(lease_owner=self.owner, lease_until=lease_until, attempts=ScheduledJob.attempts + 1)
                .returning(
                    ScheduledJob.id,
                    ScheduledJob.kind,
                    ScheduledJob.key,
                    ScheduledJob.run_at,
                    ScheduledJob.payload,
                    ScheduledJob.attempts,
                )
                .execution_options(synchronize_session=False)
            )
            jobs = [Job(*row) for row in rows]
        jobs.sort(key=lambda job: job.run_at)
        return [(job, lease_until) for job in jobs]

    async def _run(self, job: Job) -> None:
        handler = self._handlers[job.kind]
        try:
            if job.kind in self._outside:
                await handler(None, job)  # type: ignore[arg-type]  # it takes no session
            async with self._sessions.begin() as db:
                if job.kind not in self._outside:
                    await handler(db, job)
                done = await db.scalar(
                    update(ScheduledJob)
                    .where(ScheduledJob.id == job.id, ScheduledJob.lease_owner == self.owner)
                    .values(done_at=self._clock.now(), lease_until=None, last_error=None)
                    .returning(ScheduledJob.id)
                    .execution_options(synchronize_session=False)
                )
                if done is None:
                    raise _LeaseLost()
        except _LeaseLost:
            log.warning("job taken over by another process: this run rolled back", job=job.id, kind=job.kind)
        except Exception as exc:
            await self._failed(job, exc)
        else:
            log.info("job done", job=job.id, kind=job.kind, key=job.key, attempts=job.attempts)

    async def _failed(self, job: Job, exc: Exception) -> None:
        now = self._clock.now()
        error = f"{type(exc).__name__}: {exc}"[:_MAX_ERROR_CHARS]
        give_up = job.attempts >= self.max_attempts
        values: dict[str, Any] = {"last_error": error, "lease_owner": None, "lease_until": None}
        if give_up:
            values["failed_at"] = now
        else:
            values["run_at"] = now + self.retry_delay(job.attempts)
        async with self._sessions.begin() as db:
            await db.execute(
                update(ScheduledJob)
                .where(ScheduledJob.id == job.id, ScheduledJob.lease_owner == self.owner)
                .values(**values)
                .execution_options(synchronize_session=False)
            )
        if give_up:
            log.error(
                "job given up", job=job.id, kind=job.kind, key=job.key, attempts=job.attempts, error=error
            )
        else:
            log.warning(
                "job failed, will retry",
                job=job.id,
                kind=job.kind,
                attempts=job.attempts,
                retry_at=values["run_at"].isoformat(),
                error=error,
            )


@dataclass(frozen=True, slots=True)
class JobView:
    """A job as `concierge jobs list` shows it."""

    id: str
    kind: str
    key: str
    run_at: datetime
    state: str  # waiting | running | done | failed
    attempts: int
    last_error: str | None
    lease_owner: str | None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "key": self.key,
            "run_at": self.run_at.isoformat(),
            "state": self.state,
            "attempts": self.attempts,
            "last_error": self.last_error,
            "lease_owner": self.lease_owner,
        }


async def list_jobs(
    sessions: async_sessionmaker[AsyncSession],
    now: datetime,
    *,
    due_only: bool = False,
    failed_only: bool = False,
    limit: int = 200,
) -> list[JobView]:
    query = select(ScheduledJob).order_by(ScheduledJob.run_at, ScheduledJob.id).limit(limit)
    if due_only:
        query = query.where(
            ScheduledJob.done_at.is_(None), ScheduledJob.failed_at.is_(None), ScheduledJob.run_at <= now
        )
    if failed_only:
        query = query.where(ScheduledJob.failed_at.is_not(None))
    async with sessions() as db:
        return [_view(job, now) for job in await db.scalars(query)]


def _view(job: ScheduledJob, now: datetime) -> JobView:
    if job.done_at is not None:
        state = "done"
    elif job.failed_at is not None:
        state = "failed"
    elif job.lease_until is not None and job.lease_until > now:
        state = "running"
    else:
        state = "waiting"
    return JobView(
        job.id, job.kind, job.key, job.run_at, state, job.attempts, job.last_error, job.lease_owner
    )


async def retry(sessions: async_sessionmaker[AsyncSession], job_id: str, now: datetime) -> bool:
    """Run a given-up job again now, with a fresh count of attempts; False if no such job is failed."""
    async with sessions.begin() as db:
        found = await db.scalar(
            update(ScheduledJob)
            .where(ScheduledJob.id == job_id, ScheduledJob.failed_at.is_not(None))
            .values(failed_at=None, attempts=0, run_at=now, lease_owner=None, lease_until=None)
            .returning(ScheduledJob.id)
            .execution_options(synchronize_session=False)
        )
    return found is not None

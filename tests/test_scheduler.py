"""The job scheduler on both engines, with a clock the tests move: due jobs run once, moved
jobs move, failures back off and give up, a stalled owner's work is rolled back when another
takes the job over, and several OS processes racing over the same jobs run each exactly once."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from click.testing import CliRunner
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from concierge.app import create_app
from concierge.cli import main
from concierge.clock import FakeClock
from concierge.config import load_settings
from concierge.database import create_engine, session_factory
from concierge.model import ScheduledJob
from concierge.scheduler import Handler, Job, Scheduler, list_jobs, retry, schedule, unschedule
from concierge.scheduler_web import SCHEDULER, register_jobs

START = datetime(2026, 3, 29, 0, 30, tzinfo=UTC)
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
async def effects(engine: AsyncEngine) -> AsyncEngine:
    """A table the handlers write to: what a job did is what is in it."""
    async with engine.begin() as connection:
        await connection.execute(text("CREATE TABLE job_effects (job_key VARCHAR(200), owner VARCHAR(128))"))
    return engine


async def effect_rows(sessions: async_sessionmaker[AsyncSession]) -> list[tuple[str, str]]:
    async with sessions() as db:
        rows = await db.execute(text("SELECT job_key, owner FROM job_effects ORDER BY job_key, owner"))
        return [(str(key), str(owner)) for key, owner in rows]


def counting(owner: str, ran: list[str] | None = None) -> Handler:
    async def handler(db: AsyncSession, job: Job) -> None:
        await db.execute(
            text("INSERT INTO job_effects (job_key, owner) VALUES (:key, :owner)"),
            {"key": job.key, "owner": owner},
        )
        if ran is not None:
            ran.append(f"{job.key}:{job.payload.get('n')}")

    return handler


async def add(sessions: async_sessionmaker[AsyncSession], key: str, at: datetime, **payload: object) -> None:
    async with sessions.begin() as db:
        await schedule(db, "count", at, dict(payload), key)


async def test_a_job_runs_once_when_due_and_not_before(
    sessions: async_sessionmaker[AsyncSession], effects: AsyncEngine
) -> None:
    clock = FakeClock(START)
    scheduler = Scheduler(sessions, clock, owner="a")
    ran: list[str] = []
    scheduler.handle("count", counting("a", ran))
    await add(sessions, "reminder:1", START + timedelta(minutes=10), n=1)

    assert await scheduler.run_due() == 0
    clock.advance(timedelta(minutes=9, seconds=59))
    assert await scheduler.run_due() == 0
    clock.advance(timedelta(seconds=1))
    assert await scheduler.run_due() == 1
    assert ran == ["reminder:1:1"]
    clock.advance(timedelta(hours=2))  # well past any lease
    assert await scheduler.run_due() == 0
    assert await effect_rows(sessions) == [("reminder:1", "a")]
    [view] = await list_jobs(sessions, clock.now())
    assert (view.state, view.attempts, view.lease_owner) == ("done", 1, "a")


async def test_a_job_of_a_kind_without_a_handler_is_left_for_a_process_that_has_one(
    sessions: async_sessionmaker[AsyncSession], effects: AsyncEngine
) -> None:
    clock = FakeClock(START)
    other = Scheduler(sessions, clock, owner="other")
    other.handle("something-else", counting("other"))
    await add(sessions, "k", START)
    assert await other.run_due() == 0
    [view] = await list_jobs(sessions, clock.now(), due_only=True)
    assert (view.state, view.attempts) == ("waiting", 0)


async def test_a_job_scheduled_in_a_rolled_back_transaction_never_exists(
    sessions: async_sessionmaker[AsyncSession], effects: AsyncEngine
) -> None:
    class Refused(Exception):
        pass

    with pytest.raises(Refused):
        async with sessions.begin() as db:
            await schedule(db, "count", START, {}, "booking:b1:cancel-unpaid")
            raise Refused()
    clock = FakeClock(START + timedelta(days=1))
    scheduler = Scheduler(sessions, clock, owner="a")
    scheduler.handle("count", counting("a"))
    assert await scheduler.run_due() == 0
    assert await list_jobs(sessions, clock.now()) == []


async def test_scheduling_a_key_again_moves_it_and_unscheduling_drops_it(
    sessions: async_sessionmaker[AsyncSession], effects: AsyncEngine
) -> None:
    clock = FakeClock(START)
    scheduler = Scheduler(sessions, clock, owner="a")
    ran: list[str] = []
    scheduler.handle("count", counting("a", ran))
    await add(sessions, "moved", START + timedelta(minutes=5), n=1)
    await add(sessions, "moved", START + timedelta(hours=1), n=2)  # the booking was moved
    await add(sessions, "dropped", START + timedelta(minutes=5), n=3)
    async with sessions.begin() as db:
        await unschedule(db, "dropped")

    clock.advance(timedelta(minutes=30))
    assert await scheduler.run_due() == 0
    clock.advance(timedelta(minutes=30))
    assert await scheduler.run_due() == 1
    assert ran == ["moved:2"]

    # Done is done: the same key again changes nothing (a new run takes a new key).
    await add(sessions, "moved", START + timedelta(hours=2), n=4)
    clock.advance(timedelta(hours=3))
    assert await scheduler.run_due() == 0
    assert ran == ["moved:2"]
    async with sessions() as db:
        assert await db.scalar(select(func.count()).select_from(ScheduledJob)) == 1


async def test_a_failing_job_is_retried_later_then_given_up_and_can_be_retried_by_hand(
    sessions: async_sessionmaker[AsyncSession], effects: AsyncEngine
) -> None:
    clock = FakeClock(START)
    scheduler = Scheduler(sessions, clock, owner="a", max_attempts=3, retry_seconds=30)
    calls: list[datetime] = []
    healthy = False

    async def flaky(db: AsyncSession, job: Job) -> None:
        calls.append(clock.now())
        await db.execute(text("INSERT INTO job_effects (job_key, owner) VALUES ('flaky', 'a')"))
        if not healthy:
            raise RuntimeError("provider said no")

    scheduler.handle("count", flaky)
    await add(sessions, "flaky", START)
    assert await scheduler.run_due() == 1
    [view] = await list_jobs(sessions, clock.now())
    assert (view.state, view.attempts, view.last_error) == ("waiting", 1, "RuntimeError: provider said no")
    assert view.run_at == START + timedelta(seconds=30)

    clock.advance(timedelta(seconds=29))
    assert await scheduler.run_due() == 0
    clock.advance(timedelta(seconds=1))
    assert await scheduler.run_due() == 1  # second attempt fails, next in 60 s
    clock.advance(timedelta(seconds=59))
    assert await scheduler.run_due() == 0
    clock.advance(timedelta(seconds=1))
    assert await scheduler.run_due() == 1  # third attempt: given up
    clock.advance(timedelta(days=1))
    assert await scheduler.run_due() == 0
    assert len(calls) == 3
    assert await effect_rows(sessions) == []  # every failed attempt was rolled back
    [failed] = await list_jobs(sessions, clock.now(), failed_only=True)
    assert (failed.state, failed.attempts) == ("failed", 3)

    assert await retry(sessions, failed.id, clock.now())
    assert not await retry(sessions, failed.id, clock.now())  # not failed any more
    healthy = True
    assert await scheduler.run_due() == 1
    assert await effect_rows(sessions) == [("flaky", "a")]
    assert await list_jobs(sessions, clock.now(), failed_only=True) == []


@pytest.fixture
async def second_sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Another process's view of the same database (its own engine, pool and write queue)."""
    engine = create_engine(database_url)
    yield session_factory(engine)
    await engine.dispose()


async def test_a_lease_that_runs_out_mid_run_is_taken_over_and_the_first_run_rolled_back(
    sessions: async_sessionmaker[AsyncSession],
    second_sessions: async_sessionmaker[AsyncSession],
    effects: AsyncEngine,
) -> None:
    clock = FakeClock(START)
    slow = Scheduler(sessions, clock, owner="slow", lease_seconds=60)
    fast = Scheduler(second_sessions, clock, owner="fast", lease_seconds=60)
    started, go_on = asyncio.Event(), asyncio.Event()

    async def stalls(db: AsyncSession, job: Job) -> None:
        started.set()
        await go_on.wait()  # e.g. a provider call that hangs past the lease
        await db.execute(
            text("INSERT INTO job_effects (job_key, owner) VALUES (:key, 'slow')"), {"key": job.key}
        )

    slow.handle("count", stalls)
    fast.handle("count", counting("fast"))
    await add(sessions, "stall", START)

    first = asyncio.create_task(slow.run_due())
    await asyncio.wait_for(started.wait(), 10)
    clock.advance(timedelta(seconds=30))
    assert await fast.run_due() == 0  # the lease still holds
    clock.advance(timedelta(seconds=31))
    assert await fast.run_due() == 1  # taken over, run and done
    go_on.set()
    assert await asyncio.wait_for(first, 10) == 1

    assert await effect_rows(sessions) == [("stall", "fast")]
    [view] = await list_jobs(sessions, clock.now())
    assert (view.state, view.lease_owner, view.attempts) == ("done", "fast", 2)


async def test_scheduler_processes_racing_over_the_same_jobs_run_each_exactly_once(
    database_url: str, sessions: async_sessionmaker[AsyncSession], effects: AsyncEngine, tmp_path: Path
) -> None:
    jobs = 200
    async with sessions.begin() as db:
        for n in range(jobs):
            await schedule(db, "count", START + timedelta(seconds=n), {"n": n}, f"race:{n:03d}")
    go = tmp_path / "go"
    at = (START + timedelta(hours=1)).isoformat()
    workers = [
        await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "tests.scheduler_worker", database_url, f"p{i}", str(go), at),
            cwd=ROOT,
            stderr=asyncio.subprocess.PIPE,
        )
        for i in range(3)
    ]
    try:
        await asyncio.sleep(1.5)  # imports: let every worker reach the starting line
        go.touch()
        for worker in workers:
            _, errors = await asyncio.wait_for(worker.communicate(), 150)
            assert worker.returncode == 0, errors.decode()[-3000:]
    finally:
        for worker in workers:
            if worker.returncode is None:
                worker.kill()

    rows = await effect_rows(sessions)
    keys = [key for key, _ in rows]
    assert sorted(keys) == [f"race:{n:03d}" for n in range(jobs)]  # each once, none missing
    owners = {owner for _, owner in rows}
    assert len(owners) >= 2, f"one process did all the work: {owners}"
    async with sessions() as db:
        assert await db.scalar(select(func.count()).where(ScheduledJob.done_at.is_(None))) == 0


@pytest.mark.parametrize("engine_name", ["sqlite"])
async def test_the_app_runs_the_jobs_other_parts_registered_and_stops_cleanly(
    database_url: str,
    sessions: async_sessionmaker[AsyncSession],
    redis_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CONCIERGE_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("CONCIERGE_DATABASE_URL", database_url)
    monkeypatch.setenv("CONCIERGE_REDIS_URL", redis_url)
    monkeypatch.setenv("CONCIERGE_SCHEDULER_INTERVAL_SECONDS", "0.05")
    ran = asyncio.Event()
    seen: list[dict[str, object]] = []

    async def remind(db: AsyncSession, job: Job) -> None:
        seen.append(job.payload)
        ran.set()

    def bookings(app: web.Application, scheduler: Scheduler) -> None:
        scheduler.handle("booking.reminder", remind)

    app = create_app(load_settings())
    register_jobs(app, bookings)
    async with sessions.begin() as db:
        await schedule(db, "booking.reminder", datetime.now(UTC), {"booking": "bk_1"}, "bk_1:reminder")
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        await asyncio.wait_for(ran.wait(), 10)
        assert app[SCHEDULER].kinds == {"booking.reminder"}
        for _ in range(100):  # the handler has run; its transaction commits just after
            [view] = await list_jobs(sessions, datetime.now(UTC))
            if view.state == "done":
                break
            await asyncio.sleep(0.05)
    finally:
        await client.close()
    assert seen == [{"booking": "bk_1"}]
    assert view.state == "done"
    assert view.lease_owner == app[SCHEDULER].owner


@pytest.mark.parametrize("engine_name", ["sqlite"])
async def test_jobs_list_and_retry_on_the_command_line(
    database_url: str, sessions: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONCIERGE_DATABASE_URL", database_url)
    clock = FakeClock(datetime.now(UTC) - timedelta(hours=1))
    scheduler = Scheduler(sessions, clock, owner="a", max_attempts=1)

    async def broken(db: AsyncSession, job: Job) -> None:
        raise LookupError("booking bk_9 is gone")

    scheduler.handle("count", broken)
    await add(sessions, "bk_9:cancel-unpaid", clock.now())
    await add(sessions, "later", clock.now() + timedelta(days=2))
    assert await scheduler.run_due() == 1

    async def cli(*args: str) -> Any:
        return await asyncio.to_thread(CliRunner().invoke, main, list(args))

    listed = await cli("jobs", "list", "--json")
    assert listed.exit_code == 0, listed.output
    states = {job["key"]: job["state"] for job in json.loads(listed.output)}
    assert states == {"bk_9:cancel-unpaid": "failed", "later": "waiting"}
    failed = await cli("jobs", "list", "--failed")
    assert "bk_9:cancel-unpaid" in failed.output
    assert "booking bk_9 is gone" in failed.output
    assert "later" not in failed.output
    [job_id] = [job["id"] for job in json.loads(listed.output) if job["state"] == "failed"]

    retried = await cli("jobs", "retry", job_id)
    assert retried.exit_code == 0, retried.output
    due = json.loads((await cli("jobs", "list", "--due", "--json")).output)
    assert [(job["key"], job["attempts"]) for job in due] == [("bk_9:cancel-unpaid", 0)]
    again = await cli("jobs", "retry", job_id)
    assert again.exit_code == 1
    assert "no failed job" in again.output
    unknown = await cli("jobs", "retry", "job_nope")
    assert unknown.exit_code == 1


@pytest.mark.parametrize(
    ("kind", "at", "key", "problem"),
    [
        ("count", datetime(2026, 1, 1), "k", "aware"),
        ("count", START, "", "key"),
        ("count", START, "k" * 201, "key"),
        ("", START, "k", "kind"),
    ],
)
async def test_a_bad_job_is_refused_and_nothing_is_scheduled(
    sessions: async_sessionmaker[AsyncSession], kind: str, at: datetime, key: str, problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        async with sessions.begin() as db:
            await schedule(db, kind, at, {}, key)
    assert await list_jobs(sessions, START) == []

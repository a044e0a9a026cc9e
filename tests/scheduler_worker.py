"""One scheduler process for the race test: `python -m tests.scheduler_worker URL OWNER GO_FILE AT`.

It waits for GO_FILE (so every process starts at once), then runs due jobs until none is left,
each job writing one row to `job_effects`; the test counts them."""

from __future__ import annotations

import asyncio
import sys
import time
from datetime import datetime
from pathlib import Path

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from concierge.clock import FakeClock
from concierge.database import create_engine, session_factory
from concierge.model import ScheduledJob
from concierge.scheduler import Job, Scheduler


def wait_for(go: Path) -> None:
    while not go.exists():
        time.sleep(0.01)


async def main(url: str, owner: str, at: datetime) -> None:
    engine = create_engine(url)
    sessions = session_factory(engine)
    scheduler = Scheduler(sessions, FakeClock(at), owner=owner, batch=5)

    async def effect(db: AsyncSession, job: Job) -> None:
        await db.execute(
            text("INSERT INTO job_effects (job_key, owner) VALUES (:key, :owner)"),
            {"key": job.key, "owner": owner},
        )
        await asyncio.sleep(0.002)  # a little work, so the others get their turns

    scheduler.handle("count", effect)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            if await scheduler.run_due():
                continue
            async with sessions() as db:
                left = await db.scalar(select(func.count()).where(ScheduledJob.done_at.is_(None)))
            if not left:
                return
            await asyncio.sleep(0.02)  # the rest is leased by the others
    finally:
        await engine.dispose()


if __name__ == "__main__":
    wait_for(Path(sys.argv[3]))
    asyncio.run(main(sys.argv[1], sys.argv[2], datetime.fromisoformat(sys.argv[4])))

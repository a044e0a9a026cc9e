"""The scheduler in the aiohttp app: one per process, started and stopped with the app.

Other parts give it their job kinds with `register_jobs(app, registrar)` before the app starts
(their `install`); a registrar is called with the app and the Scheduler once the database is
there, and calls `scheduler.handle(kind, handler)`. The running Scheduler is `app[SCHEDULER]`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import structlog
from aiohttp import web

from concierge.appkeys import SESSIONS, SETTINGS
from concierge.clock import SystemClock
from concierge.scheduler import Scheduler, owner_id

log = structlog.get_logger("concierge.scheduler")

JobRegistrar = Callable[[web.Application, Scheduler], None]

SCHEDULER = web.AppKey("scheduler", Scheduler)
JOB_REGISTRARS = web.AppKey("job_registrars", list[JobRegistrar])


def register_jobs(app: web.Application, registrar: JobRegistrar) -> None:
    """Have `registrar(app, scheduler)` add its handlers when the scheduler starts."""
    if JOB_REGISTRARS not in app:
        app[JOB_REGISTRARS] = []
    app[JOB_REGISTRARS].append(registrar)


async def scheduler_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    scheduler = Scheduler(
        app[SESSIONS], SystemClock(), owner=owner_id(), lease_seconds=settings.scheduler_lease_seconds
    )
    for registrar in app.get(JOB_REGISTRARS, []):
        registrar(app, scheduler)
    app[SCHEDULER] = scheduler
    log.info("scheduler", owner=scheduler.owner, kinds=sorted(scheduler.kinds))
    stop = asyncio.Event()
    task = asyncio.create_task(
        scheduler.run_forever(stop, settings.scheduler_interval_seconds), name="scheduler"
    )
    try:
        yield
    finally:
        # A job cut short here is rolled back and run again once its lease has passed.
        stop.set()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def install(app: web.Application) -> None:
    app.cleanup_ctx.append(scheduler_ctx)

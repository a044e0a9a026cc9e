"""`concierge jobs`: what the scheduler has waiting, running, done or given up, and a retry."""

from __future__ import annotations

import json

import click

from concierge.cli.commands import main
from concierge.cli.common import database, run, settings_or_exit
from concierge.clock import SystemClock
from concierge.errors import ConciergeError
from concierge.scheduler import JobView, list_jobs, retry


@main.group()
def jobs() -> None:
    """Scheduled jobs: reminders, expiries, auto-cancels."""


@jobs.command("list")
@click.option("--due", is_flag=True, help="Only jobs due now that have not run yet.")
@click.option("--failed", is_flag=True, help="Only jobs given up after too many attempts.")
@click.option("--json", "as_json", is_flag=True)
def jobs_list(due: bool, failed: bool, as_json: bool) -> None:
    """Jobs, earliest first."""
    settings = settings_or_exit()

    async def run_command() -> list[JobView]:
        async with database(settings) as sessions:
            return await list_jobs(sessions, SystemClock().now(), due_only=due, failed_only=failed)

    found = run(run_command)
    if as_json:
        click.echo(json.dumps([job.as_json() for job in found]))
        return
    for job in found:
        line = f"{job.id}  {job.run_at:%Y-%m-%d %H:%M:%S}Z  {job.state:<7}  {job.kind}  {job.key}"
        line += f"  attempts={job.attempts}"
        if job.last_error:
            line += f"  error={job.last_error!r}"
        click.echo(line)
    if not found:
        click.echo("no jobs")


@jobs.command("retry")
@click.argument("job_id")
def jobs_retry(job_id: str) -> None:
    """Run a given-up job again now."""
    settings = settings_or_exit()

    async def run_command() -> None:
        async with database(settings) as sessions:
            if not await retry(sessions, job_id, SystemClock().now()):
                raise ConciergeError(f"no failed job {job_id!r} (only given-up jobs are retried)")

    run(run_command)
    click.echo(f"job {job_id} will run again now")

"""Trust and safety for operators: `concierge flags`, `concierge reports` and `concierge people`."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import click

from concierge import people as people_core
from concierge.cli.commands import main
from concierge.cli.common import database, run, settings_or_exit
from concierge.contact_flags import recent_flags
from concierge.model import ReportStatus, ReviewStatus, utcnow
from concierge.moderation import MuteReason, mute, muted_people, unmute
from concierge.reports import Reports, ReportView

MINUTES = click.IntRange(1, 525_600)


def _now() -> datetime:
    return utcnow().replace(tzinfo=UTC)


@main.group()
def flags() -> None:
    """Contact details hidden from what people wrote (listings, requests, reviews, money back)."""


@flags.command("list")
@click.option("--person", "person_id", default=None, help="Only this person's flags.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=100)
@click.option("--json", "as_json", is_flag=True)
def flags_list(person_id: str | None, limit: int, as_json: bool) -> None:
    """The newest flags first: who, where, what was found and the original text."""
    settings = settings_or_exit()

    async def run_command() -> list[dict[str, Any]]:
        async with database(settings) as sessions:
            lines = await recent_flags(sessions, person_id=person_id, limit=limit)
        return [
            {
                "id": f.id,
                "person": f.person_id,
                "place": f.place,
                "ref": f.ref,
                "kinds": f.kinds.split(","),
                "original": f.original,
                "at": f.created_at.isoformat(),
            }
            for f in lines
        ]

    listed = run(run_command)
    if as_json:
        click.echo(json.dumps(listed, ensure_ascii=False))
        return
    for f in listed:
        click.echo(
            f"{f['id']} {f['at']} {f['person']} {f['place']} [{','.join(f['kinds'])}]: {f['original']}"
        )


@main.group()
def reports() -> None:
    """Reports of one session party about the other."""


def _report_json(view: ReportView) -> dict[str, Any]:
    return {
        "id": view.id,
        "session": view.session_id,
        "reporter": view.reporter_id,
        "reported": view.reported_id,
        "status": view.status.value,
        "reason": view.reason,
        "at": view.created_at.isoformat(),
        "note": view.note,
    }


@reports.command("list")
@click.option("--status", type=click.Choice([*(s.value for s in ReportStatus), "all"]), default="open")
@click.option("--json", "as_json", is_flag=True)
def reports_list(status: str, as_json: bool) -> None:
    """Reports, oldest first (open ones by default)."""
    settings = settings_or_exit()

    async def run_command() -> list[dict[str, Any]]:
        async with database(settings) as sessions:
            views = await Reports(sessions).listed(None if status == "all" else ReportStatus(status))
        return [_report_json(v) for v in views]

    listed = run(run_command)
    if as_json:
        click.echo(json.dumps(listed, ensure_ascii=False))
        return
    for r in listed:
        click.echo(f"{r['id']} {r['status']} session {r['session']} about {r['reported']}: {r['reason']}")


@reports.command("show")
@click.argument("report_id")
def reports_show(report_id: str) -> None:
    """The report with the session's facts as they were when reported, as JSON."""
    settings = settings_or_exit()

    async def run_command() -> dict[str, Any]:
        async with database(settings) as sessions:
            return await Reports(sessions).show(report_id)

    click.echo(json.dumps(run(run_command), indent=2, ensure_ascii=False))


@reports.command("close")
@click.argument("report_id")
@click.option("--note", required=True, help="The conclusion, kept with the report.")
@click.option("--uphold", is_flag=True, help="The report was right: mute the reported person.")
@click.option(
    "--minutes", type=click.IntRange(1, 525_600), default=None, help="Mute length (default: setting)."
)
def reports_close(report_id: str, note: str, uphold: bool, minutes: int | None) -> None:
    """Close a report; with --uphold the reported person is muted for CONCIERGE_MUTE_MINUTES."""
    settings = settings_or_exit()

    async def run_command() -> tuple[ReportView, datetime | None]:
        async with database(settings) as sessions:
            view = await Reports(sessions).close(report_id, note)
            until = None
            if uphold:
                length = minutes or settings.mute_minutes
                until = await mute(sessions, view.reported_id, MuteReason.OPERATOR, length, _now())
        return view, until

    view, until = run(run_command)
    click.echo(
        f"report {view.id} closed"
        + (f"; {view.reported_id} muted until {until.isoformat()}" if until else "")
    )


@main.group()
def people() -> None:
    """People: birth date changes waiting for review, mutes."""


@people.group("reviews")
def people_reviews() -> None:
    """Birth date changes that would cross an age gate (13, 18), waiting for an operator."""


@people_reviews.command("list")
@click.option("--status", type=click.Choice([*(s.value for s in ReviewStatus), "all"]), default="pending")
@click.option("--json", "as_json", is_flag=True)
def people_reviews_list(status: str, as_json: bool) -> None:
    settings = settings_or_exit()

    async def run_command() -> list[dict[str, Any]]:
        async with database(settings) as sessions:
            lines = await people_core.birth_date_reviews(
                sessions, None if status == "all" else ReviewStatus(status)
            )
        return [
            {
                "id": r.id,
                "person": r.person_id,
                "name": r.name,
                "stated": r.stated.isoformat(),
                "previous": r.previous.isoformat() if r.previous else None,
                "status": r.status.value,
                "at": r.created_at.isoformat(),
                "note": r.note,
            }
            for r in lines
        ]

    listed = run(run_command)
    if as_json:
        click.echo(json.dumps(listed, ensure_ascii=False))
        return
    for r in listed:
        click.echo(f"{r['id']} {r['status']} {r['person']} {r['previous'] or 'refused'} -> {r['stated']}")


def _decide(review_id: str, note: str, *, approve: bool) -> None:
    settings = settings_or_exit()

    async def run_command() -> str:
        async with database(settings) as sessions:
            gate = await people_core.decide_birth_date(
                sessions, review_id, approve=approve, note=note, today=_now().date()
            )
        return gate.value

    gate = run(run_command)
    click.echo(f"review {review_id} {'approved' if approve else 'refused'}; age check now: {gate}")


@people_reviews.command("approve")
@click.argument("review_id")
@click.option("--note", default="", help="Why, kept with the review.")
def people_reviews_approve(review_id: str, note: str) -> None:
    """Apply the stated birth date."""
    _decide(review_id, note, approve=True)


@people_reviews.command("refuse")
@click.argument("review_id")
@click.option("--note", required=True, help="Why, kept with the review.")
def people_reviews_refuse(review_id: str, note: str) -> None:
    """Keep the birth date in force."""
    _decide(review_id, note, approve=False)


@people.command("mute")
@click.argument("person_id")
@click.option(
    "--minutes", type=click.IntRange(1, 525_600), default=None, help="Default: CONCIERGE_MUTE_MINUTES."
)
def people_mute(person_id: str, minutes: int | None) -> None:
    """Ignore a person's messages for a while (they are told once, on their next message)."""
    settings = settings_or_exit()

    async def run_command() -> datetime:
        async with database(settings) as sessions:
            return await mute(
                sessions, person_id, MuteReason.OPERATOR, minutes or settings.mute_minutes, _now()
            )

    click.echo(f"{person_id} muted until {run(run_command).isoformat()}")


@people.command("unmute")
@click.argument("person_id")
def people_unmute(person_id: str) -> None:
    settings = settings_or_exit()

    async def run_command() -> None:
        async with database(settings) as sessions:
            await unmute(sessions, person_id)

    run(run_command)
    click.echo(f"{person_id} unmuted")


@people.command("muted")
@click.option("--json", "as_json", is_flag=True)
def people_muted(as_json: bool) -> None:
    """Everyone muted now, soonest end first."""
    settings = settings_or_exit()

    async def run_command() -> list[dict[str, Any]]:
        async with database(settings) as sessions:
            rows = await muted_people(sessions, _now())
        return [
            {"person": pid, "name": name, "until": until.isoformat() if until else None, "reason": reason}
            for pid, name, until, reason in rows
        ]

    listed = run(run_command)
    if as_json:
        click.echo(json.dumps(listed, ensure_ascii=False))
        return
    for m in listed:
        click.echo(f"{m['person']} {m['name']} until {m['until']} ({m['reason']})")

"""`concierge rooms`: ad-hoc video rooms for operators, through the same path as matched sessions."""

from __future__ import annotations

import json
from typing import Any

import click
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from concierge.cli.commands import main
from concierge.cli.common import database, run, settings_or_exit
from concierge.errors import ConciergeError
from concierge.languages import check_language
from concierge.rooms import SqlRoomBook, room_opener
from video_gateway.meter_store import MeterStore
from video_gateway.opening import RoomRequest
from video_gateway.rooms import Participant, RoomRecord

_MAX_BUDGET_SECONDS = 24 * 3600


def _language(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    try:
        return check_language(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


def _name(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    value = value.strip()
    if not 1 <= len(value) <= 120:
        raise click.BadParameter("a name has 1 to 120 characters")
    return value


@main.group()
def rooms() -> None:
    """Video rooms: one-off links for a customer and an expert."""


@rooms.command("create")
@click.option("--customer", required=True, callback=_name, help="The customer's name, as the expert sees it.")
@click.option("--expert", required=True, callback=_name, help="The expert's name, as the customer sees it.")
@click.option(
    "--budget-seconds",
    type=click.IntRange(1, _MAX_BUDGET_SECONDS),
    default=None,
    help="End the call after this many connected seconds.",
)
@click.option("--record", is_flag=True, help="Relay and record the call (as for customers under 18).")
@click.option("--customer-language", default="en", show_default=True, callback=_language)
@click.option("--expert-language", default="en", show_default=True, callback=_language)
@click.option("--json", "as_json", is_flag=True, help="Print {room, links} as JSON.")
def rooms_create(
    customer: str,
    expert: str,
    budget_seconds: int | None,
    record: bool,
    customer_language: str,
    expert_language: str,
    as_json: bool,
) -> None:
    """Open a free ad-hoc room and print one link per participant."""
    settings = settings_or_exit()

    async def run_command() -> dict[str, Any]:
        async with database(settings) as sessions:
            opener = room_opener(settings, SqlRoomBook(sessions))
            links = await opener.open(
                RoomRequest(
                    customer=Participant(customer, customer_language),
                    expert=Participant(expert, expert_language),
                    budget_seconds=budget_seconds,
                    recorded=record,
                )
            )
            return links.as_json()

    created = run(run_command)
    if as_json:
        click.echo(json.dumps(created))
    else:
        click.echo(f"room {created['room']}")
        click.echo(f"  customer ({customer}): {created['links']['customer']}")
        click.echo(f"  expert ({expert}): {created['links']['expert']}")


@rooms.command("show")
@click.argument("room_id")
@click.option("--json", "as_json", is_flag=True)
def rooms_show(room_id: str, as_json: bool) -> None:
    """A room's state, billed seconds and recording."""
    settings = settings_or_exit()

    async def run_command() -> dict[str, Any]:
        async with database(settings) as sessions:
            record = await SqlRoomBook(sessions).get(room_id)
        if record is None:
            raise ConciergeError(f"no room {room_id}")
        view = _view(record, await _live_billed(settings.redis_url, record))
        if record.recording is not None:
            view["recording"] = str(settings.data_dir / record.recording)
        return view

    shown = run(run_command)
    if as_json:
        click.echo(json.dumps(shown))
    else:
        for key, value in shown.items():
            click.echo(f"{key}: {value}")


async def _live_billed(redis_url: str | None, record: RoomRecord) -> int | None:
    """The meter as of the last second, when the room is open and its Redis is reachable.

    The database has the billed seconds as of the last few seconds; with the embedded Redis
    (no CONCIERGE_REDIS_URL) the CLI cannot reach the server's Redis and that is what it shows.
    """
    if record.ended or redis_url is None:
        return None
    client = aioredis.Redis.from_url(redis_url)
    try:
        saved = await MeterStore(client).load(record.id)
    except (RedisError, OSError):
        return None
    finally:
        await client.aclose()
    return None if saved is None else saved.billed_ms // 1000


def _view(record: RoomRecord, live_billed: int | None) -> dict[str, Any]:
    return {
        "state": record.state.value,
        "billed_seconds": live_billed if live_billed is not None else record.billed_seconds,
        "recorded": record.recorded,
        "recording": record.recording,
        "mode": record.mode.value,
        "session": record.session_id,
        "budget_seconds": record.budget_seconds,
        "end_reason": record.end_reason.value if record.end_reason else None,
    }

"""The `concierge` commands: serve, migrate, import and list experts, invite, businesses, the demo."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import click
from aiohttp import web

from concierge import migrate
from concierge.app import create_app
from concierge.business_admins import BusinessAdmins
from concierge.businesses import create_business, create_widget_key
from concierge.catalogue import ImportReport, import_experts
from concierge.catalogue_queries import list_experts
from concierge.cli.common import database, run, settings_or_exit
from concierge.config import Settings
from concierge.database import create_engine, redacted
from concierge.errors import ConciergeError
from concierge.invites import create_invite, display_code
from concierge.languages import check_language
from concierge.model import Business, RosterScope
from concierge.money import Money, format_money
from concierge.pricing import PricingMode
from knowledge.demo import demo_catalogue_path
from knowledge.taxonomy import load_taxonomy


@click.group()
@click.version_option(package_name="concierge")
def main() -> None:
    """Concierge: ask for help in plain language, get matched to a human expert."""


@main.command()
def serve() -> None:
    """Start the service (HTTP on CONCIERGE_HTTP_HOST:CONCIERGE_HTTP_PORT)."""
    settings = settings_or_exit()
    run(lambda: _serve(settings))


def service_app(settings: Settings) -> web.Application:
    """The whole service: the core app plus the bots and their channels.

    The CLI is the composition root, the one place allowed to know every package: the core
    itself never imports the bots.
    """
    from bots.wiring import install

    app = create_app(settings)
    install(app)
    return app


async def _serve(settings: Settings) -> None:
    runner = web.AppRunner(service_app(settings), access_log=None, handle_signals=False)
    try:
        await runner.setup()
        site = web.TCPSite(runner, settings.http_host, settings.http_port)
        try:
            await site.start()
        except OSError as exc:
            raise ConciergeError(
                f"cannot listen on {settings.http_host}:{settings.http_port}: {exc.strerror}; "
                "set CONCIERGE_HTTP_PORT to a free port"
            ) from exc
        host, port = runner.addresses[0][:2]
        click.echo(f"Concierge is running on http://{host}:{port}  (Ctrl+C stops it)")
        click.echo(f"  customers: http://{host}:{port}/chat   experts: http://{host}:{port}/expert")
        if settings.base_url != f"http://{host}:{port}":
            click.echo(f"Links sent to people start with {settings.base_url}")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        click.echo("Concierge is stopping")
    finally:
        await runner.cleanup()


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Create or migrate the schema (safe to run repeatedly)."""
    settings = settings_or_exit()

    async def run_command() -> str | None:
        engine = create_engine(settings.database)
        try:
            await migrate.upgrade(engine, revision)
            return await migrate.current_revision(engine)
        finally:
            await engine.dispose()

    current = run(run_command)
    click.echo(f"database {redacted(settings.database)} is at revision {current}")


@db.command("current")
def db_current() -> None:
    """Print the schema revision of the database and of the code."""
    settings = settings_or_exit()

    async def run_command() -> str | None:
        engine = create_engine(settings.database)
        try:
            return await migrate.current_revision(engine)
        finally:
            await engine.dispose()

    click.echo(f"database: {run(run_command) or 'empty'}; code: {migrate.head_revision()}")


@db.command("revision")
@click.option("-m", "--message", required=True, help="What the schema change does.")
def db_revision(message: str) -> None:
    """For developers: write a migration from the model's difference to a migrated database."""
    settings = settings_or_exit()

    async def run_command() -> None:
        engine = create_engine(settings.database)
        try:
            if await migrate.current_revision(engine) != migrate.head_revision():
                raise ConciergeError("migrate the database first: concierge db upgrade")
            await migrate.autogenerate(engine, message)
        finally:
            await engine.dispose()

    run(run_command)


@main.group()
def experts() -> None:
    """Expert listings."""


@experts.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def experts_import(path: Path, as_json: bool) -> None:
    """Upsert listings from a JSON Lines file; bad lines are reported and skipped.

    Exits 1 when any line was rejected (the valid lines are imported all the same).
    """
    settings = settings_or_exit()

    async def run_command() -> ImportReport:
        async with database(settings) as sessions:
            return await import_experts(sessions, path)

    _report(run(run_command), as_json)


def _report(report: ImportReport, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(report.to_json()))
    else:
        for rejected in report.rejected:
            click.echo(f"rejected {rejected}", err=True)
        click.echo(
            f"imported {report.imported} experts: {report.created} new, {report.updated} "
            f"updated, {report.unchanged} unchanged; {len(report.rejected)} lines rejected"
        )
    if report.rejected:
        sys.exit(1)


def _category(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    known = load_taxonomy().ids
    if value is not None and value not in known:
        raise click.BadParameter(f"unknown category; use one of {', '.join(sorted(known))}")
    return value


def _language(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    try:
        return None if value is None else check_language(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@experts.command("list")
@click.option("--category", callback=_category, help="Only listings in this category id.")
@click.option("--language", callback=_language, help="Only listings in this ISO 639-1 language.")
@click.option("--online/--offline", default=None, help="Only online (or offline) experts.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def experts_list(category: str | None, language: str | None, online: bool | None, as_json: bool) -> None:
    """List expert listings."""
    settings = settings_or_exit()

    async def run_command() -> list[dict[str, Any]]:
        async with database(settings) as sessions, sessions() as db:
            rows = await list_experts(db, category=category, language=language, online=online)
        return [
            {
                "id": expert.id,
                "name": person.display_name,
                "headline": expert.headline,
                "categories": expert.categories,
                "languages": expert.languages,
                "pricing": expert.pricing.to_json(),
                "online": expert.online,
            }
            for expert, person in rows
        ]

    rows = run(run_command)
    if as_json:
        for row in rows:
            click.echo(json.dumps(row, ensure_ascii=False))
        return
    for row in rows:
        click.echo(
            f"{row['id']:<12} {row['name'][:28]:<28} {','.join(row['categories']):<24} "
            f"{','.join(row['languages']):<12} {_price(row['pricing']):<14} "
            f"{'online' if row['online'] else ''}"
        )
    click.echo(f"{len(rows)} experts", err=True)


def _price(pricing: dict[str, Any]) -> str:
    mode = PricingMode(pricing["mode"])
    if mode is PricingMode.FREE:
        return "free"
    amount = format_money(Money(pricing["amount"], pricing["currency"]))
    return f"{amount}/min" if mode is PricingMode.PER_MINUTE else f"{amount}/session"


@main.group()
def invite() -> None:
    """Invitation codes for experts."""


@invite.command("create")
@click.option("--business", "business_id", help="Invite to this business's roster.")
@click.option("--uses", default=1, show_default=True, type=click.IntRange(1, 10_000))
@click.option(
    "--expires",
    "expires_days",
    default=30,
    show_default=True,
    type=click.IntRange(0, 3650),
    help="Days until the code expires; 0 for never.",
)
@click.option("--json", "as_json", is_flag=True)
def invite_create(business_id: str | None, uses: int, expires_days: int, as_json: bool) -> None:
    """Create an invitation code an expert redeems with /expert CODE."""
    settings = settings_or_exit()

    async def run_command() -> dict[str, Any]:
        async with database(settings) as sessions:
            code = await create_invite(
                sessions,
                business_id=business_id,
                uses=uses,
                expires_in_days=expires_days or None,
            )
        return {
            "code": display_code(code.code),
            "business": code.business_id,
            "uses": code.uses_left,
            "expires_at": code.expires_at.isoformat() if code.expires_at else None,
        }

    result = run(run_command)
    if as_json:
        click.echo(json.dumps(result))
    else:
        expiry = f"until {result['expires_at']}" if result["expires_at"] else "with no expiry"
        click.echo(f"{result['code']}  ({result['uses']} use(s), valid {expiry})")


@main.group()
def business() -> None:
    """Businesses: their setup codes and web widget keys."""


@business.command("create")
@click.argument("name")
@click.option("--roster-only", is_flag=True, help="Send its communities' requests only to its own experts.")
@click.option("--commission", type=Decimal, default=None, help="Commission percent instead of the default.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def business_create(name: str, roster_only: bool, commission: Decimal | None, as_json: bool) -> None:
    """Create a business; its setup code links groups and guilds with /setup CODE, its admin code
    makes its admins (they manage it from the chat)."""
    settings = settings_or_exit()

    async def run_command() -> tuple[Business, str]:
        async with database(settings) as sessions:
            scope = RosterScope.ROSTER_ONLY if roster_only else RosterScope.ROSTER_FIRST
            created = await create_business(sessions, name, scope=scope, commission_percent=commission)
            return created, await BusinessAdmins(sessions).admin_code(created.id)

    created, admin_code = run(run_command)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "id": created.id,
                    "name": created.name,
                    "setup_code": created.setup_code,
                    "admin_code": admin_code,
                }
            )
        )
    else:
        click.echo(f"business {created.id} ({created.name})")
        click.echo(
            f"setup code: {created.setup_code}  (a group or server admin sends /setup {created.setup_code})"
        )
        click.echo(f"admin code: {admin_code}  (its admins send /setup {admin_code} to the bot in private)")


@business.command("admin-code")
@click.argument("business_id")
@click.option("--new", "renew", is_flag=True, help="Replace the code (the old one stops working).")
def business_admin_code(business_id: str, renew: bool) -> None:
    """Print the code that makes whoever sends /setup CODE in a private chat an admin of the business."""
    settings = settings_or_exit()

    async def run_command() -> str:
        async with database(settings) as sessions:
            return await BusinessAdmins(sessions).admin_code(business_id, renew=renew)

    code = run(run_command)
    click.echo(f"admin code: {code}  (send /setup {code} to the bot in a private chat)")


@business.command("widget")
@click.argument("business_id")
def business_widget(business_id: str) -> None:
    """Create a web widget key for a business and print the snippet for its site."""
    settings = settings_or_exit()

    async def run_command() -> str:
        async with database(settings) as sessions:
            return await create_widget_key(sessions, business_id)

    key = run(run_command)
    click.echo(f"widget key: {key}")
    click.echo(f'<script src="{settings.base_url}/chat/assets/widget.js" data-key="{key}" async></script>')


@main.group()
def demo() -> None:
    """The demo catalogue."""


@demo.command("load")
def demo_load() -> None:
    """Load the fictional demo experts (idempotent)."""
    settings = settings_or_exit()

    async def run_command() -> ImportReport:
        async with database(settings) as sessions:
            return await import_experts(sessions, demo_catalogue_path())

    _report(run(run_command), as_json=False)

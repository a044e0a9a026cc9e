"""`concierge operators`: the accounts that may log in to the operator console at /ops."""

from __future__ import annotations

import json
import sys

import click

from concierge.cli.commands import main
from concierge.cli.common import database, run, settings_or_exit
from concierge.errors import NotFound
from concierge.ops.accounts import (
    MAX_PASSWORD_CHARS,
    OperatorRefused,
    OperatorView,
    check_name,
    check_password,
    create_operator,
    disable_operator,
    list_operators,
)


@main.group()
def operators() -> None:
    """Operator accounts for the console at /ops."""


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        # One line; the newline a script's echo adds is not part of the password.
        password = sys.stdin.readline(MAX_PASSWORD_CHARS + 2).rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt="Repeat the password")
    try:
        return check_password(password)
    except OperatorRefused as exc:
        raise click.ClickException(str(exc)) from exc


@operators.command("create")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from one line of standard input.")
def operators_create(name: str, password_stdin: bool) -> None:
    """Create operator NAME; the password is asked twice (or read with --password-stdin)."""
    try:
        check_name(name)
    except OperatorRefused as exc:
        raise click.ClickException(str(exc)) from exc
    password = _read_password(password_stdin)
    settings = settings_or_exit()

    async def run_command() -> OperatorView:
        async with database(settings) as sessions:
            return await create_operator(sessions, name, password)

    created = run(run_command)
    click.echo(f"operator {created.name} created: log in at {settings.base_url}/ops/")


@operators.command("list")
@click.option("--json", "as_json", is_flag=True)
def operators_list(as_json: bool) -> None:
    """Every operator, enabled or not, with their last login."""
    settings = settings_or_exit()

    async def run_command() -> list[OperatorView]:
        async with database(settings) as sessions:
            return await list_operators(sessions)

    listed = run(run_command)
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "name": o.name,
                        "disabled": o.disabled,
                        "created_at": o.created_at.isoformat(),
                        "last_login_at": o.last_login_at.isoformat() if o.last_login_at else None,
                    }
                    for o in listed
                ]
            )
        )
        return
    if not listed:
        click.echo("no operators yet: concierge operators create NAME")
    for o in listed:
        state = "disabled" if o.disabled else "enabled"
        last = o.last_login_at.strftime("%Y-%m-%d %H:%M") if o.last_login_at else "never"
        click.echo(f"{o.name:<24} {state:<9} last login {last}")


@operators.command("disable")
@click.argument("name")
def operators_disable(name: str) -> None:
    """Disable operator NAME: their sessions end at their next request, their logins are refused."""
    settings = settings_or_exit()

    async def run_command() -> OperatorView:
        async with database(settings) as sessions:
            try:
                return await disable_operator(sessions, name)
            except NotFound:
                raise click.ClickException(f"there is no operator named {name!r}") from None

    run(run_command)
    click.echo(f"operator {name} disabled")

"""What every `concierge` command shares: settings, logging, the event loop, the database."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import click
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from concierge import migrate
from concierge.config import Settings, load_settings
from concierge.database import create_engine, redacted, session_factory
from concierge.errors import ConciergeError, ConfigError
from concierge.logs import configure_logging

T = TypeVar("T")


def settings_or_exit() -> Settings:
    try:
        settings = load_settings()
    except ConfigError as exc:
        click.echo(f"concierge: {exc}", err=True)
        sys.exit(2)
    configure_logging(settings)
    return settings


def run(coroutine: Callable[[], Awaitable[T]]) -> T:
    try:
        return asyncio.run(with_errors(coroutine))
    except ConciergeError as exc:
        raise click.ClickException(str(exc)) from exc


async def with_errors(coroutine: Callable[[], Awaitable[T]]) -> T:
    try:
        return await coroutine()
    except SQLAlchemyError as exc:
        raise ConciergeError(f"database error: {type(exc).__name__}: {exc}") from exc
    except OSError as exc:
        raise ConciergeError(str(exc)) from exc


@contextlib.asynccontextmanager
async def database(settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions on a reachable database whose schema is at the code's revision."""
    engine = create_engine(settings.database)
    try:
        try:
            revision = await migrate.current_revision(engine)
        except (SQLAlchemyError, OSError) as exc:
            raise ConciergeError(
                f"cannot reach the database at {redacted(settings.database)}: {exc}"
            ) from exc
        if revision != migrate.head_revision():
            raise ConciergeError(
                f"the database at {redacted(settings.database)} is not migrated: "
                "run `concierge db upgrade` first"
            )
        yield session_factory(engine)
    finally:
        await engine.dispose()

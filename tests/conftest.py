"""Shared fixtures: real SQLite and PostgreSQL databases, real Redis servers.

Each test gets its own database copied from a migrated template (a file copy for SQLite,
CREATE DATABASE … TEMPLATE for PostgreSQL), so tests never see each other's rows.
With CI=true a missing PostgreSQL or Redis fails the run instead of skipping tests.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import socket
from collections.abc import AsyncIterator, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import asyncpg
import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from concierge import migrate
from concierge.database import create_engine, session_factory

POSTGRES_URL = os.environ.get(
    "CONCIERGE_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("CONCIERGE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
T = TypeVar("T")
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url.replace("+asyncpg", ""))
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or default_port), 1):
            return True
    except OSError:
        return False


def require(service: str, url: str, default_port: int) -> None:
    if _reachable(url, default_port):
        return
    message = f"{service} is not reachable at {url}"
    if IN_CI:
        pytest.fail(f"{message}: CI requires it (.ci/run starts it when installed)")
    pytest.skip(message)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests start from the documented defaults, whatever the developer's shell exports."""
    for name in list(os.environ):
        if name.upper().startswith("CONCIERGE_") and not name.upper().startswith("CONCIERGE_TEST_"):
            monkeypatch.delenv(name)


def _postgres_admin_dsn(database: str | None = None) -> str:
    url = make_url(POSTGRES_URL).set(drivername="postgresql")
    if database is not None:
        url = url.set(database=database)
    return url.render_as_string(hide_password=False)


def run_in_own_loop(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion even when called from inside a running event loop
    (session fixtures are first requested from async function-scoped fixtures)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


async def _migrate(url: str) -> None:
    engine = create_engine(url)
    try:
        await migrate.upgrade(engine)
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    run_in_own_loop(_migrate(f"sqlite+aiosqlite:///{path}"))
    return path


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[str]:
    require("PostgreSQL", POSTGRES_URL, 5432)
    name = f"concierge_tmpl_{secrets.token_hex(4)}"

    async def create() -> None:
        admin = await asyncpg.connect(_postgres_admin_dsn())
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        await _migrate(make_url(POSTGRES_URL).set(database=name).render_as_string(False))

    async def drop() -> None:
        admin = await asyncpg.connect(_postgres_admin_dsn())
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()

    run_in_own_loop(create())
    yield name
    run_in_own_loop(drop())


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def database_url(
    engine_name: str, request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[str]:
    """A fresh, migrated database on the engine named by `engine_name`."""
    if engine_name == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        target = tmp_path / "test.db"
        shutil.copyfile(template, target)
        yield f"sqlite+aiosqlite:///{target}"
        return
    template_name: str = request.getfixturevalue("postgres_template")
    name = f"concierge_t_{secrets.token_hex(5)}"
    admin = await asyncpg.connect(_postgres_admin_dsn())
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_name}"')
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


@pytest.fixture
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return session_factory(engine)


@pytest.fixture
def redis_url() -> str:
    require("Redis", REDIS_URL, 6379)
    return REDIS_URL


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ---------------------------------------------------------------- matcher (loaded once per run)


@pytest.fixture(scope="session")
def detector() -> Any:
    from matcher.language import LanguageDetectorPort

    return LanguageDetectorPort()


@pytest.fixture(scope="session")
def use_embedder() -> Any:
    from matcher.embedders import create_embedder

    return create_embedder("use", 2)


@pytest.fixture(scope="session")
def demo_listings() -> Any:
    from concierge.matching import demo_listings

    return demo_listings()


@pytest.fixture(scope="session")
def demo_matcher(use_embedder: Any, detector: Any, demo_listings: Any) -> Any:
    from knowledge.taxonomy import load_taxonomy
    from matcher.engine import Matcher

    matcher = Matcher(use_embedder, detector, load_taxonomy())
    matcher.sync(demo_listings)
    return matcher

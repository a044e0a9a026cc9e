"""The aiohttp service over real sockets: liveness, readiness, metrics, the landing page."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from concierge.app import create_app
from concierge.appkeys import EMBEDDED_REDIS
from concierge.catalogue import import_experts
from concierge.config import load_settings
from concierge.database import create_engine, session_factory
from concierge.errors import StorageError
from knowledge.demo import demo_catalogue_path
from tests.conftest import free_port


@pytest.fixture
def configure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    def apply(**variables: str) -> None:
        monkeypatch.setenv("CONCIERGE_DATA_DIR", str(tmp_path / "var"))
        for name, value in variables.items():
            monkeypatch.setenv(f"CONCIERGE_{name.upper()}", value)

    return apply


@pytest.fixture
def sqlite_copy(sqlite_template: Path, tmp_path: Path) -> Path:
    """A migrated SQLite file of this test's own."""
    database = tmp_path / "app.db"
    database.write_bytes(sqlite_template.read_bytes())
    return database


async def started() -> TestClient:
    client = TestClient(TestServer(create_app(load_settings())))
    await client.start_server()
    return client


def pid_alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists() and "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()


async def test_embedded_defaults_are_ready_and_clean_up(
    configure: Callable[..., None], sqlite_copy: Path
) -> None:
    configure(database_url=f"sqlite:///{sqlite_copy}")
    client = await started()
    try:
        embedded = client.app[EMBEDDED_REDIS]
        redis_pid = embedded.pid
        assert redis_pid is not None
        assert pid_alive(redis_pid)

        health = await client.get("/healthz")
        assert health.status == 200
        assert await health.json() == {"status": "ok"}

        ready = await client.get("/readyz")
        assert ready.status == 200
        assert await ready.json() == {"status": "ready", "checks": {"database": "ok", "redis": "ok"}}

        await client.get("/no/such/page")
        metrics = await client.get("/metrics")
        assert metrics.status == 200
        assert metrics.headers["Content-Type"].startswith("text/plain; version=")
        text = await metrics.text()
        assert 'concierge_http_requests_total{method="GET",route="/healthz",status="200"} 1.0' in text
        assert 'concierge_http_requests_total{method="GET",route="unmatched",status="404"} 1.0' in text
        assert 'concierge_dependency_up{dependency="redis"} 1.0' in text
        assert 'concierge_build_info{version="0.1.0"} 1.0' in text
    finally:
        await client.close()
    assert not pid_alive(redis_pid)


async def test_ready_against_external_servers(
    configure: Callable[..., None], database_url: str, redis_url: str
) -> None:
    configure(database_url=database_url, redis_url=redis_url)
    client = await started()
    try:
        assert EMBEDDED_REDIS not in client.app
        ready = await client.get("/readyz")
        assert ready.status == 200, await ready.text()
    finally:
        await client.close()


async def test_not_ready_when_redis_is_down(configure: Callable[..., None], sqlite_copy: Path) -> None:
    configure(database_url=f"sqlite:///{sqlite_copy}", redis_url=f"redis://127.0.0.1:{free_port()}/0")
    client = await started()
    try:
        ready = await client.get("/readyz")
        assert ready.status == 503
        body = await ready.json()
        assert body["checks"]["database"] == "ok"
        assert body["checks"]["redis"].startswith("redis unreachable")
        metrics = await (await client.get("/metrics")).text()
        assert 'concierge_dependency_up{dependency="redis"} 0.0' in metrics
    finally:
        await client.close()


async def test_not_ready_when_the_database_is_down(configure: Callable[..., None]) -> None:
    configure(database_url=f"postgresql://postgres:s3cret@127.0.0.1:{free_port()}/concierge")
    client = await started()
    try:
        ready = await client.get("/readyz")
        assert ready.status == 503
        body = await ready.json()
        assert body["checks"]["database"].startswith("database unreachable")
        assert body["checks"]["redis"] == "ok"
        assert "s3cret" not in await ready.text()
    finally:
        await client.close()


async def test_an_unmigrated_database_stops_the_start(configure: Callable[..., None], tmp_path: Path) -> None:
    configure(database_url=f"sqlite:///{tmp_path / 'empty.db'}")
    app = create_app(load_settings())
    server = TestServer(app)
    with pytest.raises(StorageError, match="run `concierge db upgrade`"):
        await server.start_server()
    await server.close()


async def test_landing_page_lists_categories_in_the_visitors_language(
    configure: Callable[..., None], sqlite_copy: Path
) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{sqlite_copy}")
    report = await import_experts(session_factory(engine), demo_catalogue_path())
    await engine.dispose()
    configure(database_url=f"sqlite:///{sqlite_copy}")
    client = await started()
    try:
        japanese = await (await client.get("/", headers={"Accept-Language": "ja-JP,en;q=0.5"})).text()
        assert '<html lang="ja">' in japanese
        assert "パソコン" in japanese
        assert f"専門家 {report.created} 名" in japanese
        preferred = await (
            await client.get("/", headers={"Accept-Language": "xx, de;q=0.9, fr;q=0.8"})
        ).text()
        assert '<html lang="de">' in preferred
        fallback = await (await client.get("/", headers={"Accept-Language": "tlh;q=abc"})).text()
        assert '<html lang="en">' in fallback
    finally:
        await client.close()

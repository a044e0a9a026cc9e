"""The aiohttp application: every client it owns is created and closed in its lifecycle."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable

import redis.asyncio as aioredis
import structlog
from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError

from concierge import business_web, migrate, payments_web, routes, scheduler_web, video
from concierge.appkeys import EMBEDDED_REDIS, ENGINE, METRICS, REDIS, SESSIONS, SETTINGS
from concierge.config import Settings
from concierge.database import create_engine, redacted, session_factory
from concierge.embedded_redis import EmbeddedRedis
from concierge.errors import StorageError
from concierge.metrics import Metrics
from concierge.ops import web as ops_web

log = structlog.get_logger("concierge.app")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

REDIS_CONNECTIONS = 200


async def database_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    engine = create_engine(settings.database)
    app[ENGINE] = engine
    app[SESSIONS] = session_factory(engine)
    try:
        revision = await migrate.current_revision(engine)
    except (SQLAlchemyError, OSError) as exc:
        # Start anyway: /readyz reports 503 until the database answers.
        log.warning("database unreachable at start", url=redacted(settings.database), error=str(exc))
    else:
        if revision != migrate.head_revision():
            await engine.dispose()
            raise StorageError(
                f"database schema is at {revision or 'nothing'}, the code needs "
                f"{migrate.head_revision()}: run `concierge db upgrade`"
            )
        log.info("database ready", url=redacted(settings.database))
    yield
    await engine.dispose()


async def redis_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    embedded: EmbeddedRedis | None = None
    url = settings.redis_url
    if url is None:
        embedded = EmbeddedRedis(settings.data_dir)
        url = await embedded.start()
        app[EMBEDDED_REDIS] = embedded
        log.info("embedded redis started", pid=embedded.pid, socket=str(embedded.socket_path))
    # A blocking pool: past its size a command waits for a free connection instead of failing
    # (redis-py's default pool raises MaxConnectionsError, which a busy gateway hit).
    pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=REDIS_CONNECTIONS, timeout=10)
    app[REDIS] = aioredis.Redis.from_pool(pool)
    try:
        yield
    finally:
        await app[REDIS].aclose()
        if embedded is not None:
            await embedded.stop()
            log.info("embedded redis stopped")


@web.middleware
async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    metrics = request.app[METRICS]
    # The route template, not the raw path: paths will carry room tokens.
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        elapsed = time.perf_counter() - started
        metrics.http_requests.labels(route, request.method, str(status)).inc()
        metrics.http_latency.labels(route).observe(elapsed)
        log.info(
            "http request",
            method=request.method,
            route=route,
            status=status,
            ms=round(elapsed * 1000, 1),
        )


def create_app(settings: Settings) -> web.Application:
    app = web.Application(middlewares=[observe], client_max_size=1024**2)
    app[SETTINGS] = settings
    app[METRICS] = Metrics.create()
    app.cleanup_ctx.append(database_ctx)
    app.cleanup_ctx.append(redis_ctx)
    routes.add_routes(app)
    video.install(app)
    payments_web.install(app)
    scheduler_web.install(app)
    ops_web.install(app)
    business_web.install(app)
    return app

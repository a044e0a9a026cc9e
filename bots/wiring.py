"""Adds the concierge core, the dialogue engine and every configured channel to the app.

Order of start-up (aiohttp runs cleanup contexts in order, and tears them down in reverse):
the matcher (loaded once per process, then synced from the database), the core and the
dispatcher, the background ticker, then the channels. A channel without a token is off, which
is said once in the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Protocol

import structlog
from aiohttp import web

from bots import appkeys as keys
from bots.conversation import ConversationStore
from bots.dialogue import Dialogue
from bots.discord import DiscordChannel
from bots.dispatcher import Dispatcher
from bots.events import Reply
from bots.rate_limit import RateLimiter
from bots.telegram import TelegramChannel
from bots.texts import Texts
from bots.web import VisitorTokens, WebChannel, WebSockets, asset, chat_page, expert_page, relay_ctx
from concierge.appkeys import REDIS, SESSIONS, SETTINGS
from concierge.config import TelegramMode
from concierge.matching import MatcherHost, MatcherProcess, build_matcher
from concierge.model import Channel
from concierge.payments_web import CASHIER
from concierge.scheduler_web import SCHEDULER
from concierge.service import Concierge
from concierge.video import SESSION_ROOMS
from knowledge.i18n import load_catalogues
from matcher.engine import Matcher

log = structlog.get_logger("bots.wiring")

TICK_SECONDS = 1.0
SERVE_LINE_EVERY = 5  # ticks


async def core_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    matcher: Matcher | MatcherProcess | None = app.get(keys.MATCHER)
    if matcher is None:
        matcher = MatcherProcess(functools.partial(build_matcher, settings))
        await matcher.start()
    host = MatcherHost(matcher, app[SESSIONS])
    try:
        report = await host.load_all()
        await host.warm_up()
    except BaseException:
        await host.close()
        raise
    log.info("matcher ready", listings=report.listings, embedded=report.embedded)
    concierge = Concierge(
        settings, app[SESSIONS], app[REDIS], host, rooms=app.get(SESSION_ROOMS), cashier=app.get(CASHIER)
    )
    started = time.perf_counter()
    try:
        articles = await concierge.articles.load()
        await host.load_articles(concierge.articles.passages())
    except BaseException:
        await host.close()
        raise
    log.info("articles ready", articles=articles, seconds=round(time.perf_counter() - started, 2))
    dialogue = Dialogue(concierge, Texts(load_catalogues()), max_chars=settings.max_message_chars)
    store = ConversationStore(app[REDIS], settings.conversation_ttl_hours * 3600)
    app[keys.MATCHER_HOST] = host
    app[keys.CONCIERGE] = concierge
    if SCHEDULER in app:
        # The scheduler starts before the core exists (it is the service's, not the bots'):
        # booking jobs join it here; it reads its handlers afresh every round.
        concierge.bookings.register(app[SCHEDULER])
        log.info("scheduler jobs", kinds=sorted(app[SCHEDULER].kinds))
    limiter = RateLimiter(
        app[REDIS], settings.messages_per_minute, per_community=settings.community_messages_per_minute
    )
    app[keys.DISPATCHER] = Dispatcher(dialogue, store, limiter, concierge.moderation)
    try:
        yield
    finally:
        await host.close()


async def ticker_ctx(app: web.Application) -> AsyncIterator[None]:
    dispatcher = app[keys.DISPATCHER]

    async def run() -> None:
        count = 0
        while True:
            await asyncio.sleep(TICK_SECONDS)
            count += 1
            try:
                await dispatcher.tick(serve_line=count % SERVE_LINE_EVERY == 0)
            except Exception as exc:  # keep ticking: the next tick retries what failed
                log.warning("tick failed", error=repr(exc))

    task = asyncio.create_task(run(), name="offer-ticker")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def web_ctx(app: web.Application) -> AsyncIterator[None]:
    channel = WebChannel(app[REDIS])
    app[keys.WEB_CHANNEL] = channel
    app[keys.DISPATCHER].register(Channel.WEB, channel)
    sockets = WebSockets(
        channel, app[keys.DISPATCHER], VisitorTokens(app[SETTINGS].signing_key), app[SESSIONS]
    )
    app[keys.WEB_SOCKETS] = sockets
    async for _ in relay_ctx(channel):
        yield


class _ChatApp(Protocol):
    """What wiring needs of the Telegram and Discord channels."""

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def deliver(self, reply: Reply) -> None: ...


@asynccontextmanager
async def _chat_app(app: web.Application, channel: Channel, chat_app: _ChatApp) -> AsyncIterator[None]:
    """Start a chat app's channel, route its replies to it, stop it with the app."""
    await chat_app.start()
    app[keys.DISPATCHER].register(channel, chat_app)
    try:
        yield
    finally:
        app[keys.DISPATCHER].unregister(channel)
        await chat_app.stop()


async def telegram_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    if settings.telegram_token is None:
        log.info("telegram channel off: CONCIERGE_TELEGRAM_TOKEN is not set")
        yield
        return
    channel = TelegramChannel(settings, app[keys.DISPATCHER], app[REDIS])
    app[keys.TELEGRAM] = channel
    async with _chat_app(app, Channel.TELEGRAM, channel):
        yield


async def discord_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    if settings.discord_token is None:
        log.info("discord channel off: CONCIERGE_DISCORD_TOKEN is not set")
        yield
        return
    channel = DiscordChannel(settings, app[keys.DISPATCHER], app[REDIS])
    app[keys.DISCORD] = channel
    async with _chat_app(app, Channel.DISCORD, channel):
        yield


async def _telegram_webhook(request: web.Request) -> web.StreamResponse:
    channel = request.app.get(keys.TELEGRAM)
    if channel is None or request.app[SETTINGS].telegram_mode is not TelegramMode.WEBHOOK:
        raise web.HTTPNotFound()
    return await channel.webhook(request)


async def _ws(request: web.Request) -> web.StreamResponse:
    return await request.app[keys.WEB_SOCKETS].handle(request)


def install(app: web.Application) -> None:
    """Add the bots' lifecycles and routes to the concierge app (before it starts)."""
    app.cleanup_ctx.append(core_ctx)
    app.cleanup_ctx.append(ticker_ctx)
    app.cleanup_ctx.append(web_ctx)
    app.cleanup_ctx.append(telegram_ctx)
    app.cleanup_ctx.append(discord_ctx)
    app.router.add_post("/webhooks/telegram", _telegram_webhook)
    app.router.add_get("/chat", chat_page)
    app.router.add_get("/expert", expert_page)
    app.router.add_get("/chat/ws", _ws)
    app.router.add_get("/chat/assets/{name}", asset)

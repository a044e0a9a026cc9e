"""Typed keys for what the bots add to the aiohttp application (see `bots.wiring`)."""

from __future__ import annotations

from aiohttp import web

from bots.discord import DiscordChannel
from bots.dispatcher import Dispatcher
from bots.telegram import TelegramChannel
from bots.web import WebChannel, WebSockets
from concierge.matching import MatcherHost
from concierge.service import Concierge
from matcher.engine import Matcher

# Set before start-up to reuse a loaded matcher (tests, benchmarks); built from settings otherwise.
MATCHER = web.AppKey("matcher", Matcher)
MATCHER_HOST = web.AppKey("matcher_host", MatcherHost)
CONCIERGE = web.AppKey("concierge", Concierge)
DISPATCHER = web.AppKey("dispatcher", Dispatcher)
WEB_CHANNEL = web.AppKey("web_channel", WebChannel)
WEB_SOCKETS = web.AppKey("web_sockets", WebSockets)
TELEGRAM = web.AppKey("telegram", TelegramChannel)
DISCORD = web.AppKey("discord", DiscordChannel)

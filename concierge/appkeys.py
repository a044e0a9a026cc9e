"""Typed keys for everything the aiohttp application owns (see `concierge.app`)."""

from __future__ import annotations

import redis.asyncio as aioredis
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from concierge.config import Settings
from concierge.embedded_redis import EmbeddedRedis
from concierge.metrics import Metrics

SETTINGS = web.AppKey("settings", Settings)
ENGINE = web.AppKey("engine", AsyncEngine)
SESSIONS = web.AppKey("sessions", async_sessionmaker[AsyncSession])
REDIS = web.AppKey("redis", aioredis.Redis)
EMBEDDED_REDIS = web.AppKey("embedded_redis", EmbeddedRedis)
METRICS = web.AppKey("metrics", Metrics)

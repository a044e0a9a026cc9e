"""Typed keys for what the console's sub-application owns."""

from __future__ import annotations

from aiohttp import web

from concierge.ops.lists import ListRegistry

LISTS = web.AppKey("ops_lists", ListRegistry)

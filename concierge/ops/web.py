"""The console mounted on the service's aiohttp app: a sub-application at /ops, so its guard and
headers apply to its routes only."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from concierge.ops import login_pages, pages, recordings
from concierge.ops.guard import console_headers, operators_only
from concierge.ops.keys import LISTS
from concierge.ops.lists import default_lists

STATIC = Path(__file__).resolve().parent / "static"


async def _to_console(_request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/ops/")


def console() -> web.Application:
    ops = web.Application(middlewares=[console_headers, operators_only])
    ops[LISTS] = default_lists()
    ops.router.add_get("/login", login_pages.login_form)
    ops.router.add_post("/login", login_pages.login)
    ops.router.add_post("/logout", login_pages.logout)
    ops.router.add_get("/", pages.live)
    ops.router.add_get("/charts", pages.charts)
    ops.router.add_get("/lists/{name}", pages.list_page)
    ops.router.add_get("/sessions/{session_id}", pages.session_page)
    ops.router.add_post("/disputes/{request_id}/decide", pages.decide)
    ops.router.add_get("/recordings/{session_id}", recordings.recording_file)
    ops.router.add_static("/static/", STATIC)
    return ops


def install(app: web.Application) -> None:
    app.router.add_get("/ops", _to_console)
    app.add_subapp("/ops", console())

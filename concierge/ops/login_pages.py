"""Logging in and out of the console."""

from __future__ import annotations

import html
import math
import secrets

from aiohttp import web

from concierge.appkeys import SESSIONS
from concierge.ops.accounts import authenticate
from concierge.ops.guard import (
    LOGIN_COOKIE,
    SESSION_COOKIE,
    client_address,
    login_sessions,
    login_throttle,
    set_cookie,
    tokens_match,
)
from concierge.ops.html import Markup, esc, page

MAX_NAME_CHARS = 64


def _safe_next(target: str | None) -> str:
    # Only back into the console: never an absolute URL or //host (an open redirect).
    if target and target.startswith("/ops/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/ops/"


def _form(request: web.Request, message: str = "", status: int = 200, name: str = "") -> web.Response:
    token = secrets.token_urlsafe(32)
    error = f'<p class="error" role="alert">{esc(message)}</p>' if message else ""
    target = _safe_next(request.query.get("next"))
    body = Markup(
        f'{error}<form class="login" method="post" action="/ops/login?next={html.escape(target)}">'
        f'<input type="hidden" name="csrf" value="{token}">'
        '<label>Operator name <input name="name" autocomplete="username" required '
        f'maxlength="{MAX_NAME_CHARS}" '
        f'value="{html.escape(name)}"></label>'
        '<label>Password <input name="password" type="password" autocomplete="current-password" required>'
        '</label><button type="submit">Log in</button></form>'
    )
    response = page("Operator login", body, status=status)
    set_cookie(request, response, LOGIN_COOKIE, token)
    return response


async def login_form(request: web.Request) -> web.StreamResponse:
    if await login_sessions(request).find(request.cookies.get(SESSION_COOKIE)) is not None:
        raise web.HTTPFound(_safe_next(request.query.get("next")))
    return _form(request)


async def login(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    if not tokens_match(request.cookies.get(LOGIN_COOKIE), form.get("csrf")):
        return _form(request, "The login form expired or was not sent by this console: try again.", 403)
    name, password = form.get("name"), form.get("password")
    if not isinstance(name, str) or not isinstance(password, str) or not name or not password:
        return _form(request, "Type your operator name and password.", 400)
    name = name.strip()[:MAX_NAME_CHARS]
    throttle, address = login_throttle(request), client_address(request)
    wait = await throttle.locked_for(name, address)
    if wait:
        minutes = math.ceil(wait / 60)
        return _form(
            request,
            f"Too many failed logins for this name or from this address: try again in {minutes} minute"
            f"{'' if minutes == 1 else 's'}.",
            429,
            name,
        )
    operator = await authenticate(request.config_dict[SESSIONS], name, password)
    if operator is None:
        await throttle.failed(name, address)
        return _form(request, "Wrong operator name or password, or this operator is disabled.", 401, name)
    await throttle.succeeded(name)
    sessions = login_sessions(request)
    await sessions.end(request.cookies.get(SESSION_COOKIE))  # a fresh token each login: no fixation
    token = await sessions.start(operator.id)
    response = web.HTTPSeeOther(_safe_next(request.query.get("next")))
    set_cookie(request, response, SESSION_COOKIE, token)
    response.del_cookie(LOGIN_COOKIE, path="/ops")
    raise response


async def logout(request: web.Request) -> web.StreamResponse:
    # Reached only through the guard: a logged-in operator with this session's CSRF token.
    await login_sessions(request).end(request.cookies.get(SESSION_COOKIE))
    response = web.HTTPSeeOther("/ops/login")
    response.del_cookie(SESSION_COOKIE, path="/ops")
    raise response

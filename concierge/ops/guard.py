"""Who may see the console and how its pages are sent: the login-session cookie, CSRF tokens
on every form, and the headers every /ops response carries."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable

from aiohttp import web
from yarl import URL

from concierge.appkeys import REDIS, SESSIONS, SETTINGS
from concierge.ops.accounts import OperatorView, enabled_operator
from concierge.ops.login_sessions import LoginSession, LoginSessions
from concierge.ops.throttle import LoginThrottle

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

SESSION_COOKIE = "ops_session"
LOGIN_COOKIE = "ops_login"  # the login form's own CSRF token, before any session exists
COOKIE_PATH = "/ops"
PUBLIC_PATHS = ("/ops/login", "/ops/static/")
HEADERS = {
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    # Nothing inline, nothing from elsewhere: the only style sheet is ours, there are no scripts.
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; media-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
_OPERATOR = web.RequestKey("ops_operator", OperatorView)
_LOGIN = web.RequestKey("ops_login_session", LoginSession)


def login_sessions(request: web.Request) -> LoginSessions:
    settings = request.config_dict[SETTINGS]
    return LoginSessions(
        request.config_dict[REDIS],
        idle_seconds=settings.ops_idle_minutes * 60,
        absolute_seconds=settings.ops_session_hours * 3600,
    )


def login_throttle(request: web.Request) -> LoginThrottle:
    settings = request.config_dict[SETTINGS]
    return LoginThrottle(
        request.config_dict[REDIS],
        attempts=settings.ops_login_attempts,
        lockout_seconds=settings.ops_lockout_minutes * 60,
    )


def client_address(request: web.Request) -> str:
    return request.remote or "unknown"


def secure_cookies(request: web.Request) -> bool:
    return request.secure or request.config_dict[SETTINGS].base_url.startswith("https://")


def set_cookie(request: web.Request, response: web.StreamResponse, name: str, value: str) -> None:
    response.set_cookie(
        name,
        value,
        path=COOKIE_PATH,
        httponly=True,
        samesite="Strict",
        secure=secure_cookies(request),
    )


def operator_of(request: web.Request) -> OperatorView:
    return request[_OPERATOR]


def login_of(request: web.Request) -> LoginSession:
    return request[_LOGIN]


def tokens_match(expected: str | None, given: object) -> bool:
    if not expected or not isinstance(given, str) or not given:
        return False
    return secrets.compare_digest(expected.encode(), given.encode())


def refused(request: web.Request, status: int, text: str) -> web.Response:
    return web.Response(text=text + "\n", status=status, content_type="text/plain", charset="utf-8")


@web.middleware
async def console_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        exc.headers.update(HEADERS)
        raise
    response.headers.update(HEADERS)
    return response


@web.middleware
async def operators_only(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith(PUBLIC_PATHS):
        return await handler(request)
    sessions = login_sessions(request)
    token = request.cookies.get(SESSION_COOKIE)
    login = await sessions.find(token)
    operator = None
    if login is not None:
        operator = await enabled_operator(request.config_dict[SESSIONS], login.operator_id)
        if operator is None:  # disabled since logging in: the session ends now
            await sessions.end(token)
    if login is None or operator is None:
        if request.method == "GET" and "text/html" in request.headers.get("Accept", ""):
            raise web.HTTPFound(URL("/ops/login").with_query(next=request.path_qs))
        return refused(request, 401, "Log in to the operator console first.")
    if request.method == "POST":
        form = await request.post()
        if not tokens_match(login.csrf_token, form.get("csrf")):
            return refused(request, 403, "This form is stale or was not sent by the console: reload it.")
    request[_OPERATOR] = operator
    request[_LOGIN] = login
    return await handler(request)

"""HTTP side of the gateway: the room page `/r/<token>`, its WebSocket and its local assets.

A link that opens nothing (forged, altered, expired, room over) gets a 403 page in the
person's language — the token's language when the token is authentic, the browser's
otherwise — and never reaches a room.
"""

from __future__ import annotations

import html
import json
import time
from functools import cache
from importlib.resources import files

import structlog
from aiohttp import WSCloseCode, WSMsgType, web

from knowledge.i18n import Catalogues, load_catalogues, negotiate
from video_gateway.errors import LinkRefused, RoomClosing, SignallingError
from video_gateway.gateway import Gateway
from video_gateway.live_room import LiveRoom
from video_gateway.seat import Seat
from video_gateway.signalling import dump, parse_socket_frame

log = structlog.get_logger("video_gateway.web")

GATEWAY = web.AppKey("gateway", Gateway)

_ASSETS = {"room.js": "application/javascript", "room.css": "text/css"}
_SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",  # the token is in the URL: never leak it to another site
    "X-Content-Type-Options": "nosniff",
    "Permissions-Policy": "camera=(self), microphone=(self), display-capture=(self)",
}


@cache
def _static(name: str) -> str:
    return files("video_gateway").joinpath("static", name).read_text("utf-8")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/r/assets/{name}", room_asset)
    app.router.add_get("/r/{token}", room_page)
    app.router.add_get("/r/{token}/ws", room_socket)


def _texts(catalogues: Catalogues, language: str) -> dict[str, object]:
    """The page's texts as templates: the page fills in {name}, {amount}… itself."""
    reference = catalogues.messages["en"]
    own = catalogues.messages.get(language, reference)
    return {key: own.get(key, message) for key, message in reference.items() if key.startswith("room.")}


def _refusal(request: web.Request, refused: LinkRefused) -> web.Response:
    catalogues = load_catalogues()
    language = refused.language or negotiate(request.headers.get("Accept-Language", "").split(","))
    title = catalogues.text("room.refused.title", language)
    reason = catalogues.text(f"room.refused.{refused.reason.value}", language)
    page = (
        f'<!doctype html><html lang="{language}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>{html.escape(title)}</title><link rel="stylesheet" href="/r/assets/room.css"></head>'
        f'<body class="refused"><main><h1>{html.escape(title)}</h1>'
        f"<p>{html.escape(reason)}</p></main></body></html>"
    )
    log.info("room link refused", reason=refused.reason.value)
    return web.Response(
        status=403, text=page, content_type="text/html", charset="utf-8", headers=_SECURITY_HEADERS
    )


async def room_page(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    token = request.match_info["token"]
    try:
        claims, record = await gateway.admit(token)
    except LinkRefused as refused:
        return _refusal(request, refused)
    catalogues = load_catalogues()
    language = claims.language
    title = catalogues.text("room.title", language)
    config = {
        "ws": f"/r/{token}/ws",
        "lang": language,
        "role": claims.role.value,
        "peer_name": record.participant(claims.role.other).name,
        "recorded": record.recorded,
        "texts": _texts(catalogues, language),
    }
    page = (
        _static("room.html")
        .replace("{{lang}}", language)
        .replace("{{title}}", html.escape(title))
        .replace("{{config}}", json.dumps(config, ensure_ascii=False).replace("</", "<\\/"))
    )
    return web.Response(text=page, content_type="text/html", charset="utf-8", headers=_SECURITY_HEADERS)


async def room_asset(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in _ASSETS:
        raise web.HTTPNotFound
    return web.Response(
        text=_static(name), content_type=_ASSETS[name], headers={"Cache-Control": "max-age=300"}
    )


class _SocketOutlet:
    def __init__(self, socket: web.WebSocketResponse) -> None:
        self._socket = socket

    async def send(self, text: str) -> None:
        if not self._socket.closed:
            await self._socket.send_str(text)

    async def close(self) -> None:
        await self._socket.close()


async def room_socket(request: web.Request) -> web.StreamResponse:
    gateway = request.app[GATEWAY]
    try:
        claims, _record = await gateway.admit(request.match_info["token"])
    except LinkRefused as refused:
        return _refusal(request, refused)
    # aiohttp would close the socket on a frame over max_msg_size; up to 1 MiB is read and
    # answered with an error frame instead, so a huge frame gets a clear answer.
    socket = web.WebSocketResponse(heartbeat=20.0, max_msg_size=1024 * 1024)
    await socket.prepare(request)
    try:
        room, seat = await gateway.seat(claims, _SocketOutlet(socket))
    except LinkRefused:
        await socket.send_str(dump("ended", reason="ended", billed_seconds=0))
        await socket.close()
        return socket
    except RoomClosing:
        # 1012 "service restart": the page shows the connection lost and offers to rejoin.
        await socket.close(code=WSCloseCode.SERVICE_RESTART)
        return socket
    try:
        await _serve(socket, room, seat, claims.language)
    finally:
        await room.leave(seat)
    return socket


async def _serve(socket: web.WebSocketResponse, room: LiveRoom, seat: Seat, language: str) -> None:
    catalogues = load_catalogues()
    async for message in socket:
        if message.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
            break
        started = time.monotonic()
        try:
            if message.type is WSMsgType.BINARY:
                raise SignallingError("malformed", "the protocol is JSON text frames")
            await room.on_socket_frame(seat, parse_socket_frame(message.data))
        except SignallingError as exc:
            text = catalogues.text(f"room.error.{exc.code}", language)
            await seat.send(dump("error", code=exc.code, message=text))
        log.debug("room frame", room=room.id, ms=round((time.monotonic() - started) * 1000, 1))
        if seat.closed:
            break

"""The web widget channel: a chat page, an embeddable script, an expert console, one WebSocket.

Visitors are identified by a token the server signs (`<visitor id>.<mac>`), kept in the
browser; a forged or altered token is replaced by a fresh identity, never accepted. Replies go
through a per-visitor inbox in Redis (sequence-numbered, the last 100 kept) and a pub/sub
notice, so whichever app process holds the visitor's socket delivers them, and a visitor who
reconnects gets what they missed.

Frames (JSON, at most 16 KiB):
  client → {"type": "hello", "token": str|null, "since": int, "key": str|null, "locale": str, "name": str}
           {"type": "text", "text": str} · {"type": "press", "action": str}
  server → {"type": "welcome", "token": str, "visitor": str}
           {"type": "message", "seq": int, "text": str, "ref": str|null, "edit": bool,
            "buttons": [[{"label": str, "action"|"url": str}]]}
           {"type": "error", "error": str}
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import html
import json
import re
import secrets
from collections import defaultdict
from collections.abc import AsyncIterator
from functools import cache
from importlib.resources import files
from typing import Any

import redis.asyncio as aioredis
import structlog
from aiohttp import WSMsgType, web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bots.dispatcher import Dispatcher
from bots.events import Incoming, Kind, Reply
from concierge.appkeys import SESSIONS
from concierge.business_admins import BusinessAdmins, BusinessView, check_colour, check_logo_url
from concierge.errors import DomainError
from concierge.model import Channel, Community
from concierge.redis_keys import channel_name, entity_key
from knowledge.i18n import load_catalogues, negotiate

log = structlog.get_logger("bots.web")

MAX_FRAME = 16 * 1024
INBOX_KEEP = 100
INBOX_TTL_SECONDS = 7 * 24 * 3600
_KEY = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
_TOPIC = "web"
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


@cache
def _static(name: str) -> str:
    return files("bots").joinpath("static", name).read_text("utf-8")


class VisitorTokens:
    def __init__(self, key: bytes) -> None:
        self._key = hashlib.sha256(b"web-visitor:" + key).digest()

    def issue(self) -> tuple[str, str]:
        visitor = "v" + secrets.token_hex(10)
        return visitor, f"{visitor}.{self._mac(visitor)}"

    def verify(self, token: object) -> str | None:
        if not isinstance(token, str) or len(token) > 100:
            return None
        visitor, _, mac = token.partition(".")
        if not re.fullmatch(r"v[0-9a-f]{20}", visitor) or not hmac.compare_digest(mac, self._mac(visitor)):
            return None
        return visitor

    def _mac(self, visitor: str) -> str:
        return hmac.new(self._key, visitor.encode(), hashlib.sha256).hexdigest()[:32]


def _inbox(visitor: str) -> str:
    return entity_key("inbox", f"web.{visitor}", "messages")


def _seq(visitor: str) -> str:
    return entity_key("inbox", f"web.{visitor}", "seq")


def render(reply: Reply, seq: int) -> dict[str, Any]:
    return {
        "type": "message",
        "seq": seq,
        "text": reply.text,
        "buttons": [
            [
                {"label": b.label, "action": b.action} if b.action else {"label": b.label, "url": b.url}
                for b in row
            ]
            for row in reply.buttons
        ],
        "ref": reply.ref,
        "edit": reply.edit,
    }


class WebChannel:
    """The outbox for web visitors and the sockets this process holds."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._sockets: dict[str, set[web.WebSocketResponse]] = defaultdict(set)

    async def deliver(self, reply: Reply) -> None:
        visitor = reply.to.user_id
        seq = int(await self._redis.incr(_seq(visitor)))
        frame = json.dumps(render(reply, seq), ensure_ascii=False)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.rpush(_inbox(visitor), frame)
            pipe.ltrim(_inbox(visitor), -INBOX_KEEP, -1)
            pipe.expire(_inbox(visitor), INBOX_TTL_SECONDS)
            pipe.expire(_seq(visitor), INBOX_TTL_SECONDS)
            pipe.publish(channel_name(_TOPIC), json.dumps({"visitor": visitor, "frame": frame}))
            await pipe.execute()

    async def missed(self, visitor: str, since: int) -> list[str]:
        frames = await self._redis.lrange(_inbox(visitor), 0, -1)
        texts = [f.decode() if isinstance(f, bytes) else str(f) for f in frames]
        return [text for text in texts if json.loads(text)["seq"] > since]

    def attach(self, visitor: str, socket: web.WebSocketResponse) -> None:
        self._sockets[visitor].add(socket)

    def detach(self, visitor: str, socket: web.WebSocketResponse) -> None:
        sockets = self._sockets.get(visitor)
        if sockets is not None:
            sockets.discard(socket)
            if not sockets:
                del self._sockets[visitor]

    async def relay(self, stop: asyncio.Event) -> None:
        """Forward published replies to the sockets this process holds, until `stop` is set.

        Polls with a timeout rather than `listen()`: redis-py can swallow a cancellation while
        waiting on a quiet subscription, which hung shutdown.
        """
        pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(channel_name(_TOPIC))
        try:
            while not stop.is_set():
                message = await pubsub.get_message(timeout=0.5)
                if message is None or message.get("type") != "message":
                    continue
                data = json.loads(message["data"])
                for socket in list(self._sockets.get(data["visitor"], ())):
                    with contextlib.suppress(ConnectionError, RuntimeError):
                        await socket.send_str(data["frame"])
        finally:
            await pubsub.aclose()  # type: ignore[no-untyped-call]


# ---------------------------------------------------------------------- HTTP handlers


async def _page(request: web.Request, *, expert: bool) -> web.Response:
    language = negotiate(
        part.split(";")[0].strip() for part in request.headers.get("Accept-Language", "").split(",")
    )
    t = load_catalogues()
    key = request.query.get("key", "")
    key = key if _KEY.match(key) else ""
    texts = {
        name: t.text(f"web.{name}", language)
        for name in ("placeholder", "send", "connecting", "offline", "expert_intro", "bad_key")
    }
    title = t.text("web.expert_title" if expert else "web.title", language)
    brand = await _brand(request, key) if key and not expert else None
    style = logo = ""
    if brand is not None:
        title = brand.name
        if brand.greeting:
            texts["greeting"] = brand.greeting
        # Checked again here (they were when stored): nothing but #rrggbb reaches the CSS.
        with contextlib.suppress(DomainError):
            style = f"<style>:root{{--brand:{check_colour(brand.brand_colour or '')}}}</style>"
        with contextlib.suppress(DomainError):
            src = html.escape(check_logo_url(brand.logo_url or ""), quote=True)
            logo = f'<img class="logo" src="{src}" alt="" referrerpolicy="no-referrer">'
    config = {"role": "expert" if expert else "customer", "key": key or None, "texts": texts}
    values = {
        "lang": language,
        "title": html.escape(title),
        "style": style,
        "logo": logo,
        "config": json.dumps(config).replace("</", "<\\/"),
    }
    # One pass, so a business name that looks like a placeholder stays text.
    body = _PLACEHOLDER.sub(lambda m: values.get(m[1], ""), _static("chat.html"))
    return web.Response(text=body, content_type="text/html")


async def _brand(request: web.Request, key: str) -> BusinessView | None:
    sessions = request.app[SESSIONS]
    return await BusinessAdmins(sessions).brand_in(Channel.WEB, key)


async def chat_page(request: web.Request) -> web.Response:
    return await _page(request, expert=False)


async def expert_page(request: web.Request) -> web.Response:
    return await _page(request, expert=True)


async def asset(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    types = {
        "chat.js": "application/javascript",
        "chat.css": "text/css",
        "widget.js": "application/javascript",
    }
    if name not in types:
        raise web.HTTPNotFound()
    return web.Response(
        text=_static(name), content_type=types[name], headers={"Cache-Control": "max-age=300"}
    )


class WebSockets:
    """The `/chat/ws` handler: one conversation per socket, turned into `Incoming` events."""

    def __init__(
        self,
        channel: WebChannel,
        dispatcher: Dispatcher,
        tokens: VisitorTokens,
        sessions: async_sessionmaker[AsyncSession],
    ) -> None:
        self._channel = channel
        self._dispatcher = dispatcher
        self._tokens = tokens
        self._sessions = sessions

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse(max_msg_size=MAX_FRAME, heartbeat=30)
        await socket.prepare(request)
        visitor: str | None = None
        hello: dict[str, Any] = {}
        try:
            async for message in socket:
                if message.type is not WSMsgType.TEXT:
                    await _error(socket, "send JSON text frames")
                    continue
                frame = _parse(message.data)
                if frame is None:
                    await _error(socket, "malformed frame: expected a JSON object with a type")
                    continue
                if visitor is None:
                    if frame.get("type") != "hello":
                        await _error(socket, "say hello first")
                        continue
                    hello = frame
                    visitor = await self._welcome(socket, frame)
                    if visitor is None:
                        break
                    continue
                event = _event(visitor, hello, frame)
                if event is None:
                    await _error(socket, "unknown frame type: use text or press")
                    continue
                await self._dispatcher.handle(event)
        finally:
            if visitor is not None:
                self._channel.detach(visitor, socket)
        return socket

    async def _welcome(self, socket: web.WebSocketResponse, hello: dict[str, Any]) -> str | None:
        key = hello.get("key")
        if key is not None and (
            not isinstance(key, str) or not _KEY.match(key) or not await self._known_key(key)
        ):
            await _error(socket, "unknown widget key")
            await socket.close()
            return None
        visitor = self._tokens.verify(hello.get("token"))
        token = hello.get("token")
        if visitor is None:
            visitor, token = self._tokens.issue()
        await socket.send_json({"type": "welcome", "token": token, "visitor": visitor})
        self._channel.attach(visitor, socket)
        since = hello.get("since")
        since = since if isinstance(since, int) else 0
        for frame in await self._channel.missed(visitor, since):
            await socket.send_str(frame)
        return visitor

    async def _known_key(self, key: str) -> bool:
        async with self._sessions() as db:
            found = await db.scalar(
                select(Community.id).where(Community.channel == Channel.WEB, Community.external_id == key)
            )
        return found is not None


def _parse(data: str) -> dict[str, Any] | None:
    try:
        frame = json.loads(data)
    except ValueError:
        return None
    return frame if isinstance(frame, dict) and isinstance(frame.get("type"), str) else None


def _event(visitor: str, hello: dict[str, Any], frame: dict[str, Any]) -> Incoming | None:
    name = hello.get("name") if isinstance(hello.get("name"), str) else ""
    locale = hello.get("locale") if isinstance(hello.get("locale"), str) else None
    key = hello.get("key") if isinstance(hello.get("key"), str) else None
    kind = frame.get("type")
    value = frame.get("text") if kind == "text" else frame.get("action")
    if not isinstance(value, str) or kind not in {"text", "press"}:
        return None
    if kind == "text":
        event_kind = Kind.COMMAND if value.lstrip().startswith("/") else Kind.TEXT
    else:
        event_kind, value = Kind.PRESS, value[:64]
    return Incoming(
        channel=Channel.WEB,
        user_id=visitor,
        name=(name or "")[:100],
        kind=event_kind,
        text=value,
        locale=(locale or "")[:35] or None,
        community=key,
    )


async def _error(socket: web.WebSocketResponse, error: str) -> None:
    await socket.send_json({"type": "error", "error": error})


async def relay_ctx(channel: WebChannel) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(channel.relay(stop), name="web-relay")
    yield
    stop.set()
    try:
        await asyncio.wait_for(task, timeout=5)
    except TimeoutError:
        log.warning("web relay did not stop in time")

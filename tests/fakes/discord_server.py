"""A local stand-in for Discord's REST API (v10) and gateway, driven by the real discord.py client.

:class:`FakeDiscord` is an aiohttp server on 127.0.0.1 that the *unmodified* discord.py 2.x library talks
to once :meth:`FakeDiscord.point_client` has pointed ``discord.http.Route.BASE`` and
``discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY`` at it.  Tests then play the users: they run slash
commands, press buttons, pick from selects, write DMs and guild messages, and inspect what the bot sent.

What it emulates
    * Login (``GET /users/@me``, ``GET /oauth2/applications/@me``) with ``Authorization: Bot <token>``
      checked on every bot route (401 otherwise, which discord.py turns into ``LoginFailure``);
      ``GET /gateway`` and ``GET /gateway/bot`` (so ``AutoShardedClient`` works, with any shard count).
    * The gateway: HELLO, IDENTIFY (token, shard and intents checked and recorded), READY with
      unavailable guild stubs, one GUILD_CREATE per guild of the shard, heartbeat ACKs, RECONNECT on
      request (:meth:`FakeDiscord.request_reconnect`), RESUME replaying every event after the client's
      ``seq``, INVALID_SESSION for an unknown session, REQUEST_GUILD_MEMBERS answered with one chunk.
      Close codes 4004 (bad token), 4005, 4010, 4012, 4013 as Discord uses them.
      Frames are always plain JSON text (discord.py reads text frames as JSON even when it asked for
      zlib/zstd stream compression).
    * Intents as Discord applies them: MESSAGE_CREATE only with GUILD_MESSAGES / DIRECT_MESSAGES, guild
      message content blanked without MESSAGE_CONTENT unless the bot is mentioned, GUILD_CREATE carrying
      the whole member list only with GUILD_MEMBERS.  The bot's own messages come back as MESSAGE_CREATE
      and its edits as MESSAGE_UPDATE (ephemeral ones never do).
    * Application commands: global and guild bulk overwrite (ids kept per name and type), listing.
      :meth:`FakeDiscord.slash` only invokes a command the bot registered, with options checked against
      the registered definition (types, required, choices, lengths, ranges, subcommands) and the
      command's ``default_member_permissions`` and ``contexts``/``dm_permission`` enforced the way the
      Discord client does (a guild admin may grant a command to anyone: ``ignore_default_permissions``).
    * Interactions: callback types 4, 5, 6, 7 (and 8, 9 recorded), ``with_response`` bodies, answered once
      (40060 afterwards), the initial-response deadline (3 s by default, 10062 afterwards), ephemeral
      flag, followups (the first followup after a deferred "thinking" response replaces it, as on
      Discord), ``@original`` get/edit/delete, followup edit/delete; JSON and multipart (``payload_json``)
      bodies alike.
    * Messages: create/edit/delete/fetch in guild text channels and DMs, DM channel creation (one channel
      per user), users, guilds, members, channels, typing.  Validation errors with Discord's codes and
      nested ``errors`` bodies: content over 2000 characters (50035), empty message (50006), more than
      10 embeds or over-long embed title/description, components (5 rows of 5, custom_id present, at most
      100 characters and unique, label at most 80), Components V2 mixed with content, attachments over
      10 MiB (40005), DMs to a user who does not accept them (50007).
    * Permissions: ``@everyone`` plus roles, owner and ADMINISTRATOR get everything; the ``permissions``
      string of interaction members and ``app_permissions`` are computed from them.

What it does not emulate
    Rate limits (no 429s, no ``X-RateLimit-*`` headers), ETF encoding and compressed frames, voice,
    threads, forums, reactions, pins, webhooks other than interaction webhooks, audit logs, channel
    permission overwrites, presences, modal submission and autocomplete (callbacks are recorded, but no
    user-side simulation), the attachment CDN (uploaded bytes are kept in :attr:`FakeDiscord.files`),
    interaction token expiry after 15 minutes, user-installed apps.  Unknown routes answer
    ``404: Not Found`` and are recorded in :attr:`FakeDiscord.unknown_routes`; a crash inside the fake
    answers 503 (so discord.py does not retry for 25 s) and is recorded in
    :attr:`FakeDiscord.server_errors`.

Ids are snowflakes (increasing, with the current time in them) serialised as strings, as on Discord:
compare with ``str(some_id)``.  discord.py waits ``guild_ready_timeout`` (2 s by default) after the last
GUILD_CREATE before it fires ``on_ready``; tests pass a small value to the client to stay fast.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import copy
import datetime as dt
import json
import logging
import re
import secrets
import socket
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import discord
import yarl
from aiohttp import WSMsgType, web
from discord.gateway import DiscordWebSocket
from discord.http import Route

__all__ = ["DiscordAPIError", "FakeDiscord", "FakeDiscordError"]

_log = logging.getLogger(__name__)
_T = TypeVar("_T")

API_PREFIX = "/api/v10"
DISCORD_EPOCH_MS = 1_420_070_400_000
MAX_ATTACHMENT_BYTES = 10 * 1024 * 1024

# Permission bits (https://discord.com/developers/docs/topics/permissions).
CREATE_INSTANT_INVITE = 1 << 0
ADMINISTRATOR = 1 << 3
MANAGE_GUILD = 1 << 5
ADD_REACTIONS = 1 << 6
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
MANAGE_MESSAGES = 1 << 13
EMBED_LINKS = 1 << 14
ATTACH_FILES = 1 << 15
READ_MESSAGE_HISTORY = 1 << 16
USE_EXTERNAL_EMOJIS = 1 << 18
CONNECT = 1 << 20
SPEAK = 1 << 21
CHANGE_NICKNAME = 1 << 26
USE_APPLICATION_COMMANDS = 1 << 31
CREATE_PUBLIC_THREADS = 1 << 35
SEND_MESSAGES_IN_THREADS = 1 << 38
ALL_PERMISSIONS = discord.Permissions.all().value
EVERYONE_PERMISSIONS = (
    CREATE_INSTANT_INVITE
    | ADD_REACTIONS
    | VIEW_CHANNEL
    | SEND_MESSAGES
    | EMBED_LINKS
    | ATTACH_FILES
    | READ_MESSAGE_HISTORY
    | USE_EXTERNAL_EMOJIS
    | CONNECT
    | SPEAK
    | CHANGE_NICKNAME
    | USE_APPLICATION_COMMANDS
    | CREATE_PUBLIC_THREADS
    | SEND_MESSAGES_IN_THREADS
)
BOT_ROLE_PERMISSIONS = EVERYONE_PERMISSIONS | MANAGE_MESSAGES
DM_APP_PERMISSIONS = (
    VIEW_CHANNEL
    | SEND_MESSAGES
    | EMBED_LINKS
    | ATTACH_FILES
    | READ_MESSAGE_HISTORY
    | ADD_REACTIONS
    | USE_EXTERNAL_EMOJIS
)

# Gateway intents.
INTENT_GUILDS = 1 << 0
INTENT_GUILD_MEMBERS = 1 << 1
INTENT_GUILD_MESSAGES = 1 << 9
INTENT_DIRECT_MESSAGES = 1 << 12
INTENT_MESSAGE_CONTENT = 1 << 15

# Message flags.
FLAG_SUPPRESS_EMBEDS = 1 << 2
FLAG_EPHEMERAL = 1 << 6
FLAG_LOADING = 1 << 7
FLAG_SUPPRESS_NOTIFICATIONS = 1 << 12
FLAG_COMPONENTS_V2 = 1 << 15
_SETTABLE_FLAGS = FLAG_SUPPRESS_EMBEDS | FLAG_SUPPRESS_NOTIFICATIONS | FLAG_COMPONENTS_V2
_EDITABLE_FLAGS = FLAG_SUPPRESS_EMBEDS | FLAG_COMPONENTS_V2

# Interaction and callback types.
INTERACTION_COMMAND = 2
INTERACTION_COMPONENT = 3
CALLBACK_MESSAGE = 4
CALLBACK_DEFERRED_MESSAGE = 5
CALLBACK_DEFERRED_UPDATE = 6
CALLBACK_UPDATE = 7
CALLBACK_AUTOCOMPLETE = 8
CALLBACK_MODAL = 9
_ALLOWED_CALLBACKS = {
    INTERACTION_COMMAND: {CALLBACK_MESSAGE, CALLBACK_DEFERRED_MESSAGE, CALLBACK_MODAL},
    INTERACTION_COMPONENT: {
        CALLBACK_MESSAGE,
        CALLBACK_DEFERRED_MESSAGE,
        CALLBACK_DEFERRED_UPDATE,
        CALLBACK_UPDATE,
        CALLBACK_MODAL,
    },
}

# Message types.
MESSAGE_DEFAULT = 0
MESSAGE_CHAT_INPUT_COMMAND = 20

# Internal keys of a message record, never sent to the client.
_RECORD_KEYS = frozenset({"interaction_id", "edits", "deleted"})
_MENTION = re.compile(r"<@!?(\d+)>")
_ROLE_MENTION = re.compile(r"<@&(\d+)>")
_COMMAND_NAME = re.compile(r"^[-_\w]{1,32}$")


class FakeDiscordError(Exception):
    """A test asked for something a real Discord user could not do (unknown command, not a member…)."""


class DiscordAPIError(Exception):
    """An error answer of the REST API: HTTP status, Discord error code, message and ``errors`` tree."""

    def __init__(self, status: int, code: int, message: str, errors: dict[str, Any] | None = None) -> None:
        super().__init__(f"{status} {code} {message}")
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"message": self.message, "code": self.code}
        if self.errors:
            body["errors"] = self.errors
        return body


def _invalid_form(errors: dict[str, Any]) -> DiscordAPIError:
    return DiscordAPIError(400, 50035, "Invalid Form Body", errors)


class _FormErrors:
    """Collects field errors into Discord's nested ``{"a": {"0": {"b": {"_errors": [...]}}}}`` tree."""

    def __init__(self) -> None:
        self.tree: dict[str, Any] = {}

    def add(self, path: Sequence[str | int], code: str, message: str) -> None:
        node = self.tree
        for part in path:
            node = node.setdefault(str(part), {})
        node.setdefault("_errors", []).append({"code": code, "message": message})

    def raise_if_any(self) -> None:
        if self.tree:
            raise _invalid_form(self.tree)


def _json_response(body: Any, status: int = 200) -> web.Response:
    # discord.py only decodes a body whose Content-Type is exactly "application/json";
    # web.json_response would add "; charset=utf-8" and the client would get a str.
    return web.Response(
        status=status, body=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )


def _now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


def _iter_components(components: Any) -> Iterator[dict[str, Any]]:
    for component in components or []:
        if not isinstance(component, dict):
            continue
        yield component
        yield from _iter_components(component.get("components"))
        accessory = component.get("accessory")
        if isinstance(accessory, dict):
            yield accessory


def _uid(user: Mapping[str, Any] | int | str) -> int:
    if isinstance(user, Mapping):
        return int(user["id"])
    return int(user)


def _maybe_id(value: Any) -> int | None:
    """A snowflake from an int, a digit string or a payload with an "id"; None otherwise."""
    if isinstance(value, Mapping):
        value = value.get("id")
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


@dataclass
class _Close:
    code: int
    reason: str


@dataclass(eq=False)
class _Connection:
    ws: web.WebSocketResponse
    query: dict[str, str]
    queue: asyncio.Queue[str | _Close] = field(default_factory=asyncio.Queue)
    writer: asyncio.Task[None] | None = None
    session: _Session | None = None

    def send(self, payload: dict[str, Any]) -> None:
        self.queue.put_nowait(json.dumps(payload))

    def close(self, code: int, reason: str) -> None:
        self.queue.put_nowait(_Close(code, reason))


@dataclass(eq=False)
class _Session:
    session_id: str
    shard_id: int
    shard_count: int
    intents: int
    connection: _Connection | None
    seq: int = 0
    history: collections.deque[tuple[int, str]] = field(
        default_factory=lambda: collections.deque(maxlen=2000)
    )

    def wants(self, intent: int | None) -> bool:
        return intent is None or bool(self.intents & intent)

    def handles(self, guild_id: int | None) -> bool:
        if guild_id is None:
            return self.shard_id == 0
        return (guild_id >> 22) % self.shard_count == self.shard_id

    def dispatch(self, event: str, data: dict[str, Any]) -> None:
        self.seq += 1
        frame = json.dumps({"op": 0, "t": event, "s": self.seq, "d": data})
        self.history.append((self.seq, frame))
        if self.connection is not None:
            self.connection.queue.put_nowait(frame)


@dataclass(eq=False)
class _Interaction:
    payload: dict[str, Any]
    user_id: int
    guild_id: int | None
    channel_id: int
    created: float
    source_message_id: str | None = None
    response: dict[str, Any] | None = None
    original_id: str | None = None
    followup_ids: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        return str(self.payload["id"])

    @property
    def token(self) -> str:
        return str(self.payload["token"])

    @property
    def type(self) -> int:
        return int(self.payload["type"])


_Handler = Callable[..., Any]


class FakeDiscord:
    """Discord's REST API and gateway for one bot application, plus a user-simulation API for tests.

    Use as ``async with FakeDiscord() as fake:`` (or :meth:`start`/:meth:`stop`) and point discord.py at
    it with ``with fake.point_client():``.  Everything the bot created is in :attr:`messages` (kept current
    with edits); what users did through the simulation API is in :attr:`user_messages` and
    :attr:`interactions`.
    """

    def __init__(
        self,
        *,
        token: str = "TEST.DISCORD.TOKEN",  # noqa: S107 - a fake token for a fake server
        application_id: int = 900000000000000001,
        bot_user_id: int = 900000000000000002,
        bot_name: str = "concierge",
        shards: int = 1,
        interaction_deadline: float | None = 3.0,
        heartbeat_interval_ms: int = 41_250,
    ) -> None:
        self.token = token
        self.application_id = application_id
        self.bot_user_id = bot_user_id
        self.bot_name = bot_name
        self.shards = shards
        self.interaction_deadline = interaction_deadline
        self.heartbeat_interval_ms = heartbeat_interval_ms

        self.rest_base = ""
        self.gateway_url = ""
        self.messages: list[dict[str, Any]] = []
        self.user_messages: list[dict[str, Any]] = []
        self.interactions: list[dict[str, Any]] = []
        self.identify: dict[str, Any] | None = None
        self.identifies: list[dict[str, Any]] = []
        self.resumes: list[dict[str, Any]] = []
        self.gateway_queries: list[dict[str, str]] = []
        self.calls: list[tuple[str, str]] = []
        self.unknown_routes: list[tuple[str, str]] = []
        self.server_errors: list[str] = []
        self.files: dict[str, bytes] = {}
        self.guild_commands: dict[int, list[dict[str, Any]]] = {}

        self._global_commands: list[dict[str, Any]] = []
        self._users: dict[int, dict[str, Any]] = {}
        self._locales: dict[int, str] = {}
        self._closed_dms: set[int] = set()
        self._guilds: dict[int, dict[str, Any]] = {}
        self._members: dict[int, dict[int, dict[str, Any]]] = {}
        self._channels: dict[int, dict[str, Any]] = {}
        self._dm_channels: dict[int, int] = {}
        self._dm_recipients: dict[int, int] = {}
        self._messages_by_id: dict[str, dict[str, Any]] = {}
        self._user_messages_by_id: dict[str, dict[str, Any]] = {}
        self._interactions: dict[str, _Interaction] = {}
        self._interactions_by_token: dict[str, _Interaction] = {}
        self._sessions: list[_Session] = []
        self._connections: set[_Connection] = set()
        self._last_id = 0
        self._changed = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._routes = self._build_routes()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError("FakeDiscord is already running")
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/gateway", self._gateway)
        app.router.add_route("*", API_PREFIX + "/{tail:.*}", self._rest)
        app.router.add_route("*", "/{tail:.*}", self._not_api)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        site = web.SockSite(runner, sock)
        await site.start()
        self._runner = runner
        self.rest_base = f"http://127.0.0.1:{port}{API_PREFIX}"
        self.gateway_url = f"ws://127.0.0.1:{port}/gateway"

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is None:
            return
        for connection in list(self._connections):
            if connection.writer is not None:
                connection.writer.cancel()
            with contextlib.suppress(Exception):
                await connection.ws.close(code=1001, message=b"fake discord stopping")
        await runner.cleanup()

    async def __aenter__(self) -> FakeDiscord:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @contextlib.contextmanager
    def point_client(self) -> Iterator[None]:
        """Point discord.py (REST base and default gateway) at this server; restore on exit."""
        if not self.rest_base:
            raise RuntimeError("start() the FakeDiscord before pointing the client at it")
        old_base, old_gateway = Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
        Route.BASE = self.rest_base
        DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(self.gateway_url)
        try:
            yield
        finally:
            Route.BASE = old_base
            DiscordWebSocket.DEFAULT_GATEWAY = old_gateway

    # ------------------------------------------------------------------ world building

    def user(
        self, user_id: int, name: str, *, locale: str = "en-US", accepts_dms: bool = True
    ) -> dict[str, Any]:
        """A Discord user (payload with a string id).  ``accepts_dms=False``: the bot's DMs get 50007."""
        payload = {
            "id": str(user_id),
            "username": name,
            "global_name": name,
            "discriminator": "0",
            "avatar": None,
            "bot": False,
            "public_flags": 0,
        }
        self._users[user_id] = payload
        self._locales[user_id] = locale
        if accepts_dms:
            self._closed_dms.discard(user_id)
        else:
            self._closed_dms.add(user_id)
        return copy.deepcopy(payload)

    def guild(
        self, guild_id: int, name: str, *, owner_id: int, channel_id: int, locale: str = "en-US"
    ) -> dict[str, Any]:
        """A guild with one text channel "general", the owner and the bot as members.

        Announced in READY/GUILD_CREATE, or by GUILD_CREATE at once when the bot is already connected.
        """
        everyone = self._role(guild_id, "@everyone", EVERYONE_PERMISSIONS, position=0)
        managers = self._role(self._snowflake(), "Managers", MANAGE_GUILD, position=1)
        bot_role = self._role(self._snowflake(), self.bot_name, BOT_ROLE_PERMISSIONS, position=2)
        bot_role["managed"] = True
        bot_role["tags"] = {"bot_id": str(self.bot_user_id)}
        self._guilds[guild_id] = {
            "id": str(guild_id),
            "name": name,
            "owner_id": str(owner_id),
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "banner": None,
            "description": None,
            "features": [],
            "preferred_locale": locale,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "premium_tier": 0,
            "afk_timeout": 300,
            "afk_channel_id": None,
            "system_channel_id": str(channel_id),
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "public_updates_channel_id": None,
            "safety_alerts_channel_id": None,
            "vanity_url_code": None,
            "premium_subscription_count": 0,
            "premium_progress_bar_enabled": False,
            "max_members": 500000,
            "max_video_channel_users": 25,
            "roles": [everyone, managers, bot_role],
            "emojis": [],
            "stickers": [],
            "_managers_role_id": managers["id"],
            "_bot_role_id": bot_role["id"],
        }
        self._members[guild_id] = {}
        self.add_channel(guild_id, channel_id, "general", announce=False)
        self._add_member(guild_id, self._bot_user(), [bot_role["id"]], announce=False)
        owner = self._users.get(owner_id) or self.user(owner_id, f"owner-{owner_id}")
        self._add_member(guild_id, owner, [], announce=False)
        for session in self._sessions_for(guild_id):
            session.dispatch("GUILD_CREATE", self._guild_create(guild_id, session, joined=True))
        self._notify()
        return self._guild_create(guild_id, None)

    def add_channel(
        self, guild_id: int, channel_id: int, name: str, *, announce: bool = True
    ) -> dict[str, Any]:
        """Another text channel in a guild (CHANNEL_CREATE when the bot is connected)."""
        guild = self._guild_or_fail(guild_id)
        position = sum(1 for c in self._channels.values() if c.get("guild_id") == guild["id"])
        channel = {
            "id": str(channel_id),
            "type": 0,
            "guild_id": str(guild_id),
            "name": name,
            "position": position,
            "permission_overwrites": [],
            "nsfw": False,
            "topic": None,
            "last_message_id": None,
            "rate_limit_per_user": 0,
            "parent_id": None,
            "flags": 0,
        }
        self._channels[channel_id] = channel
        if announce:
            self._dispatch("CHANNEL_CREATE", channel, guild_id=guild_id, intent=INTENT_GUILDS)
        return copy.deepcopy(channel)

    def add_member(self, guild_id: int, user: Mapping[str, Any], *, manage_guild: bool = False) -> None:
        """Make a user a member; ``manage_guild`` gives the "Managers" role (MANAGE_GUILD).

        When the bot is connected with the GUILD_MEMBERS intent it gets GUILD_MEMBER_ADD/UPDATE.
        """
        guild = self._guild_or_fail(guild_id)
        user_id = _uid(user)
        payload = self._users.get(user_id)
        if payload is None:
            raise FakeDiscordError(f"user {user_id} was not created with fake.user()")
        roles = [guild["_managers_role_id"]] if manage_guild else []
        self._add_member(guild_id, payload, roles, announce=True)

    def _add_member(self, guild_id: int, user: dict[str, Any], roles: list[str], *, announce: bool) -> None:
        user_id = int(user["id"])
        members = self._members[guild_id]
        existing = members.get(user_id)
        member = {
            "user": user,
            "roles": roles,
            "nick": None,
            "avatar": None,
            "banner": None,
            "joined_at": existing["joined_at"] if existing else _now_iso(),
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "flags": 0,
            "pending": False,
            "communication_disabled_until": None,
        }
        members[user_id] = member
        if announce:
            event = "GUILD_MEMBER_UPDATE" if existing else "GUILD_MEMBER_ADD"
            self._dispatch(
                event,
                {**copy.deepcopy(member), "guild_id": str(guild_id)},
                guild_id=guild_id,
                intent=INTENT_GUILD_MEMBERS,
            )

    def _role(self, role_id: int, name: str, permissions: int, *, position: int) -> dict[str, Any]:
        return {
            "id": str(role_id),
            "name": name,
            "permissions": str(permissions),
            "position": position,
            "color": 0,
            "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
            "hoist": False,
            "icon": None,
            "unicode_emoji": None,
            "managed": False,
            "mentionable": False,
            "flags": 0,
        }

    # ------------------------------------------------------------------ observing the bot

    @property
    def commands(self) -> list[dict[str, Any]]:
        """The global application commands the bot registered (as Discord returns them)."""
        return self._global_commands

    def dm_channel_id(self, user_id: int) -> int:
        """The id of the DM channel between the bot and a user (created on first use)."""
        channel_id = self._dm_channels.get(user_id)
        if channel_id is None:
            channel_id = self._snowflake()
            self._dm_channels[user_id] = channel_id
            self._dm_recipients[channel_id] = user_id
        return channel_id

    def dms_to(self, user_id: int) -> list[dict[str, Any]]:
        """The bot's messages (current state, deleted ones left out) in its DM channel with a user."""
        channel_id = self._dm_channels.get(user_id)
        if channel_id is None:
            return []
        return [m for m in self.messages if m["channel_id"] == str(channel_id) and not m["deleted"]]

    async def wait_for(
        self,
        predicate: Callable[[dict[str, Any]], bool],
        *,
        timeout: float = 10.0,
    ) -> dict[str, Any]:
        """The oldest bot message (current state) satisfying ``predicate``, waiting for it if need be."""

        def check() -> dict[str, Any] | None:
            return next((m for m in self.messages if predicate(m)), None)

        return await self._wait_until(check, timeout, "a bot message matching the predicate")

    async def response_to(
        self,
        interaction: Mapping[str, Any],
        *,
        timeout: float = 10.0,
    ) -> dict[str, Any]:
        """The callback the bot sent for an interaction: ``{"type": int, "data": dict | None}``."""
        record = self._interactions.get(str(interaction["id"]))
        if record is None:
            raise FakeDiscordError(f"unknown interaction {interaction['id']}")

        def check() -> dict[str, Any] | None:
            return copy.deepcopy(record.response) if record.response is not None else None

        return await self._wait_until(check, timeout, f"the response to interaction {record.id}")

    def request_reconnect(self) -> None:
        """Send op 7 RECONNECT on every gateway connection: discord.py reconnects and RESUMEs."""
        for connection in list(self._connections):
            if connection.session is not None:
                connection.send({"op": 7, "d": None})

    async def wait_until_connected(
        self,
        *,
        guild_id: int | None = None,
        timeout: float = 10.0,
    ) -> None:
        """Wait until the shard that would receive events for ``guild_id`` (or DMs) has identified."""
        await self._session_for(guild_id, timeout)

    # ------------------------------------------------------------------ simulating users

    async def slash(
        self,
        user: Mapping[str, Any],
        name: str,
        options: Mapping[str, Any] | None = None,
        *,
        guild_id: int | None = None,
        channel_id: int | None = None,
        ignore_default_permissions: bool = False,
    ) -> dict[str, Any]:
        """Run a registered slash command (``name`` may be "group sub") as ``user``: INTERACTION_CREATE 2.

        In a guild the user must be a member and pass the command's ``default_member_permissions`` unless
        ``ignore_default_permissions`` (a guild admin can grant a command to anyone).  Returns the
        interaction payload.
        """
        user_id = self._known_user(user)
        parts = name.split()
        if not parts:
            raise FakeDiscordError("empty command name")
        command = None
        is_guild_command = False
        if guild_id is not None:
            self._guild_or_fail(guild_id)
            command = self._find_command(self.guild_commands.get(guild_id, []), parts[0])
            is_guild_command = command is not None
        if command is None:
            command = self._find_command(self._global_commands, parts[0])
        if command is None:
            registered = sorted(c["name"] for c in self._global_commands)
            raise FakeDiscordError(f"the bot did not register /{parts[0]} (registered: {registered})")

        contexts = command.get("contexts")
        if guild_id is not None:
            if contexts is not None and 0 not in contexts:
                raise FakeDiscordError(f"/{parts[0]} is not available in guilds (contexts {contexts})")
            required = command.get("default_member_permissions")
            if required is not None and not ignore_default_permissions:
                needed = int(required)
                have = self._member_permissions(guild_id, user_id)
                if not have & ADMINISTRATOR and have & needed != needed:
                    raise FakeDiscordError(
                        f"/{parts[0]} needs permissions {needed} (default_member_permissions); "
                        f"user {user_id} has {have} in guild {guild_id}"
                    )
        elif (contexts is not None and 1 not in contexts) or (
            contexts is None and command.get("dm_permission") is False
        ):
            raise FakeDiscordError(f"/{parts[0]} is not available in DMs")

        resolved: dict[str, dict[str, Any]] = {}
        data: dict[str, Any] = {"id": command["id"], "name": parts[0], "type": command.get("type", 1)}
        if is_guild_command:
            data["guild_id"] = str(guild_id)
        target: list[dict[str, Any]] = []
        data["options"] = target
        definitions: list[dict[str, Any]] = command.get("options") or []
        where = "/" + parts[0]
        for part in parts[1:]:
            sub = next((o for o in definitions if o["name"] == part and o["type"] in (1, 2)), None)
            if sub is None:
                raise FakeDiscordError(f"{where} has no subcommand {part!r}")
            entry: dict[str, Any] = {"name": part, "type": sub["type"], "options": []}
            target.append(entry)
            target = entry["options"]
            definitions = sub.get("options") or []
            where += " " + part
        if any(o["type"] in (1, 2) for o in definitions):
            raise FakeDiscordError(f"{where} needs a subcommand")
        target.extend(self._build_options(definitions, options or {}, where, guild_id, resolved))
        if resolved:
            data["resolved"] = resolved
        return await self._interact(
            user_id, INTERACTION_COMMAND, data, guild_id=guild_id, channel_id=channel_id
        )

    async def press(
        self, user: Mapping[str, Any], message: Mapping[str, Any], custom_id: str
    ) -> dict[str, Any]:
        """Press the button ``custom_id`` on a bot message; INTERACTION_CREATE type 3 (component_type 2)."""
        record, _ = self._component(user, message, custom_id, (2,))
        data = {"custom_id": custom_id, "component_type": 2}
        return await self._component_interaction(user, record, data)

    async def select(
        self, user: Mapping[str, Any], message: Mapping[str, Any], custom_id: str, values: Sequence[str]
    ) -> dict[str, Any]:
        """Pick ``values`` in the select menu ``custom_id`` of a bot message; INTERACTION_CREATE type 3."""
        record, component = self._component(user, message, custom_id, (3, 5, 6, 7, 8))
        values = [str(v) for v in values]
        low, high = component.get("min_values", 1), component.get("max_values", 1)
        if not low <= len(values) <= high:
            raise FakeDiscordError(f"select {custom_id!r} takes {low}..{high} values, got {len(values)}")
        if component["type"] == 3:
            allowed = {o["value"] for o in component.get("options", [])}
            if not set(values) <= allowed:
                raise FakeDiscordError(f"select {custom_id!r} offers {sorted(allowed)}, not {values}")
        data = {"custom_id": custom_id, "component_type": component["type"], "values": values}
        return await self._component_interaction(user, record, data)

    async def dm(self, user: Mapping[str, Any], text: str) -> dict[str, Any]:
        """The user writes ``text`` to the bot in DM: MESSAGE_CREATE (needs the DIRECT_MESSAGES intent)."""
        user_id = self._known_user(user)
        channel_id = self.dm_channel_id(user_id)
        await self._session_for(None, 10.0)
        message = self._user_message(user_id, channel_id, None, text)
        self._dispatch("MESSAGE_CREATE", message, guild_id=None, intent=INTENT_DIRECT_MESSAGES)
        return copy.deepcopy(message)

    async def say(self, user: Mapping[str, Any], guild_id: int, channel_id: int, text: str) -> dict[str, Any]:
        """The member writes ``text`` in a guild channel: MESSAGE_CREATE (mentions parsed from ``<@id>``).

        Delivered with the GUILD_MESSAGES intent; the content is blank unless the bot has MESSAGE_CONTENT
        or is mentioned.
        """
        user_id = self._known_user(user)
        self._member_or_fail(guild_id, user_id)
        self._guild_channel_or_fail(guild_id, channel_id)
        await self._session_for(guild_id, 10.0)
        message = self._user_message(user_id, channel_id, guild_id, text)
        mentioned = any(m["id"] == str(self.bot_user_id) for m in message["mentions"])
        for session in self._sessions_for(guild_id):
            if not session.wants(INTENT_GUILD_MESSAGES):
                continue
            event = copy.deepcopy(message)
            if not (session.intents & INTENT_MESSAGE_CONTENT or mentioned):
                event.update(content="", embeds=[], attachments=[], components=[])
            session.dispatch("MESSAGE_CREATE", event)
        return copy.deepcopy(message)

    # ------------------------------------------------------------------ simulation internals

    def _known_user(self, user: Mapping[str, Any] | int) -> int:
        user_id = _uid(user)
        if user_id not in self._users:
            raise FakeDiscordError(f"user {user_id} was not created with fake.user()")
        return user_id

    def _guild_or_fail(self, guild_id: int) -> dict[str, Any]:
        guild = self._guilds.get(guild_id)
        if guild is None:
            raise FakeDiscordError(f"guild {guild_id} was not created with fake.guild()")
        return guild

    def _member_or_fail(self, guild_id: int, user_id: int) -> dict[str, Any]:
        self._guild_or_fail(guild_id)
        member = self._members[guild_id].get(user_id)
        if member is None:
            raise FakeDiscordError(f"user {user_id} is not a member of guild {guild_id} (fake.add_member)")
        return member

    def _guild_channel_or_fail(self, guild_id: int, channel_id: int) -> dict[str, Any]:
        channel = self._channels.get(channel_id)
        if channel is None or channel["guild_id"] != str(guild_id):
            raise FakeDiscordError(f"channel {channel_id} is not a channel of guild {guild_id}")
        return channel

    @staticmethod
    def _find_command(commands: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
        return next((c for c in commands if c["name"] == name and c.get("type", 1) == 1), None)

    def _build_options(
        self,
        definitions: list[dict[str, Any]],
        given: Mapping[str, Any],
        where: str,
        guild_id: int | None,
        resolved: dict[str, dict[str, Any]],
    ) -> list[dict[str, Any]]:
        by_name = {o["name"]: o for o in definitions}
        unknown = sorted(set(given) - set(by_name))
        if unknown:
            raise FakeDiscordError(f"{where} has no option(s) {unknown}; it has {sorted(by_name)}")
        out = []
        for definition in definitions:
            name = definition["name"]
            if name not in given:
                if definition.get("required"):
                    raise FakeDiscordError(f"{where}: option {name!r} is required")
                continue
            value = self._option_value(definition, given[name], f"{where} {name}", guild_id, resolved)
            out.append({"name": name, "type": definition["type"], "value": value})
        return out

    def _option_value(
        self,
        definition: dict[str, Any],
        value: Any,
        where: str,
        guild_id: int | None,
        resolved: dict[str, dict[str, Any]],
    ) -> Any:
        kind = definition["type"]
        if kind == 3:
            if not isinstance(value, str):
                raise FakeDiscordError(f"{where}: a string option, got {value!r}")
            low, high = definition.get("min_length", 0), definition.get("max_length", 6000)
            if not low <= len(value) <= high:
                raise FakeDiscordError(f"{where}: length must be {low}..{high}, got {len(value)}")
        elif kind in (4, 10):
            ok = isinstance(value, int) if kind == 4 else isinstance(value, int | float)
            if isinstance(value, bool) or not ok:
                raise FakeDiscordError(
                    f"{where}: a {'integer' if kind == 4 else 'number'} option, got {value!r}"
                )
            low, high = definition.get("min_value"), definition.get("max_value")
            if (low is not None and value < low) or (high is not None and value > high):
                raise FakeDiscordError(f"{where}: must be within {low}..{high}, got {value}")
        elif kind == 5:
            if not isinstance(value, bool):
                raise FakeDiscordError(f"{where}: a boolean option, got {value!r}")
        elif kind in (6, 7, 8, 9):
            target = _maybe_id(value)
            if kind in (6, 9) and target in self._users:
                resolved.setdefault("users", {})[str(target)] = copy.deepcopy(self._users[target])
                member = self._members.get(guild_id, {}).get(target) if guild_id is not None else None
                if member is not None and guild_id is not None:
                    partial = {k: copy.deepcopy(v) for k, v in member.items() if k != "user"}
                    partial["permissions"] = str(self._member_permissions(guild_id, target))
                    resolved.setdefault("members", {})[str(target)] = partial
            elif (
                kind in (8, 9)
                and guild_id is not None
                and target is not None
                and self._guild_role(guild_id, target)
            ):
                resolved.setdefault("roles", {})[str(target)] = copy.deepcopy(
                    self._guild_role(guild_id, target)
                )
            elif kind == 7 and target in self._channels:
                channel = self._channels[target]
                resolved.setdefault("channels", {})[channel["id"]] = {
                    "id": channel["id"],
                    "name": channel["name"],
                    "type": channel["type"],
                    "permissions": str(ALL_PERMISSIONS),
                }
            else:
                what = {6: "user", 7: "channel", 8: "role", 9: "user or role"}[kind]
                raise FakeDiscordError(f"{where}: {value!r} is not a known {what}")
            value = str(target)
        else:
            raise FakeDiscordError(f"{where}: option type {kind} is not supported by the fake")
        choices = definition.get("choices")
        if choices and value not in [c["value"] for c in choices]:
            raise FakeDiscordError(
                f"{where}: {value!r} is not one of the choices {[c['value'] for c in choices]}"
            )
        return value

    def _guild_role(self, guild_id: int, role_id: int) -> dict[str, Any] | None:
        guild = self._guilds.get(guild_id)
        if guild is None:
            return None
        return next((r for r in guild["roles"] if r["id"] == str(role_id)), None)

    def _member_permissions(self, guild_id: int, user_id: int) -> int:
        guild = self._guilds[guild_id]
        if guild["owner_id"] == str(user_id):
            return ALL_PERMISSIONS
        member = self._members[guild_id].get(user_id)
        if member is None:
            return 0
        roles = {r["id"]: int(r["permissions"]) for r in guild["roles"]}
        permissions = roles[guild["id"]]
        for role_id in member["roles"]:
            permissions |= roles.get(role_id, 0)
        if permissions & ADMINISTRATOR:
            return ALL_PERMISSIONS
        return permissions

    def _component(
        self, user: Mapping[str, Any], message: Mapping[str, Any], custom_id: str, kinds: tuple[int, ...]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        user_id = self._known_user(user)
        record = self._messages_by_id.get(str(message["id"]))
        if record is None:
            raise FakeDiscordError(f"message {message['id']} is not a message the bot sent")
        if record["deleted"]:
            raise FakeDiscordError(f"message {record['id']} was deleted")
        if record["flags"] & FLAG_EPHEMERAL:
            interaction = self._interactions.get(record["interaction_id"] or "")
            if interaction is not None and interaction.user_id != user_id:
                raise FakeDiscordError(
                    f"message {record['id']} is ephemeral: only {interaction.user_id} sees it"
                )
        recipient = self._dm_recipients.get(int(record["channel_id"]))
        if recipient is not None and recipient != user_id:
            raise FakeDiscordError(f"message {record['id']} is in the DM of user {recipient}")
        if "guild_id" in record:
            self._member_or_fail(int(record["guild_id"]), user_id)
        found = [c for c in _iter_components(record["components"]) if c.get("custom_id") == custom_id]
        if not found or found[0].get("type") not in kinds:
            available = [
                c.get("custom_id") for c in _iter_components(record["components"]) if c.get("custom_id")
            ]
            raise FakeDiscordError(
                f"message {record['id']} has no component {custom_id!r} of type {kinds} (it has {available})"
            )
        if found[0].get("disabled"):
            raise FakeDiscordError(f"component {custom_id!r} of message {record['id']} is disabled")
        return record, found[0]

    async def _component_interaction(
        self, user: Mapping[str, Any], record: dict[str, Any], data: dict[str, Any]
    ) -> dict[str, Any]:
        guild_id = int(record["guild_id"]) if "guild_id" in record else None
        return await self._interact(
            _uid(user),
            INTERACTION_COMPONENT,
            data,
            guild_id=guild_id,
            channel_id=int(record["channel_id"]),
            message=record,
        )

    async def _interact(
        self,
        user_id: int,
        kind: int,
        data: dict[str, Any],
        *,
        guild_id: int | None,
        channel_id: int | None,
        message: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        user = copy.deepcopy(self._users[user_id])
        token = "aW50ZXJhY3Rpb24" + secrets.token_urlsafe(48)
        payload: dict[str, Any] = {
            "id": str(self._snowflake()),
            "application_id": str(self.application_id),
            "type": kind,
            "data": data,
            "token": token,
            "version": 1,
            "locale": self._locales.get(user_id, "en-US"),
            "entitlements": [],
            "attachment_size_limit": MAX_ATTACHMENT_BYTES,
        }
        if guild_id is not None:
            member = self._member_or_fail(guild_id, user_id)
            guild = self._guilds[guild_id]
            if channel_id is None:
                channel_id = next(
                    int(c["id"]) for c in self._channels.values() if c.get("guild_id") == guild["id"]
                )
            channel = copy.deepcopy(self._guild_channel_or_fail(guild_id, channel_id))
            permissions = self._member_permissions(guild_id, user_id)
            channel["permissions"] = str(permissions)
            payload.update(
                guild_id=str(guild_id),
                guild_locale=guild["preferred_locale"],
                guild={"id": str(guild_id), "locale": guild["preferred_locale"], "features": []},
                member={**copy.deepcopy(member), "permissions": str(permissions)},
                app_permissions=str(self._member_permissions(guild_id, self.bot_user_id)),
                authorizing_integration_owners={"0": str(guild_id)},
                context=0,
            )
        else:
            dm_channel = self.dm_channel_id(user_id)
            if channel_id is not None and channel_id != dm_channel:
                raise FakeDiscordError(f"channel {channel_id} is not the DM channel of user {user_id}")
            channel_id = dm_channel
            channel = self._dm_channel_payload(user_id)
            payload.update(
                user=user,
                app_permissions=str(DM_APP_PERMISSIONS),
                authorizing_integration_owners={"0": "0"},
                context=1,
            )
        payload["channel_id"] = str(channel_id)
        payload["channel"] = channel
        if message is not None:
            payload["message"] = self._wire(message)
        await self._session_for(guild_id, 10.0)
        record = _Interaction(
            payload=payload,
            user_id=user_id,
            guild_id=guild_id,
            channel_id=channel_id,
            created=time.monotonic(),
            source_message_id=message["id"] if message is not None else None,
        )
        self._interactions[record.id] = record
        self._interactions_by_token[token] = record
        self.interactions.append(payload)
        # INTERACTION_CREATE needs no intent.
        self._dispatch("INTERACTION_CREATE", payload, guild_id=guild_id, intent=None)
        return copy.deepcopy(payload)

    def _user_message(self, user_id: int, channel_id: int, guild_id: int | None, text: str) -> dict[str, Any]:
        message: dict[str, Any] = {
            "id": str(self._snowflake()),
            "channel_id": str(channel_id),
            "author": copy.deepcopy(self._users[user_id]),
            "content": text,
            "timestamp": _now_iso(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": "@everyone" in text,
            "mentions": self._mentions(text, guild_id),
            "mention_roles": self._role_mentions(text, guild_id),
            "attachments": [],
            "embeds": [],
            "components": [],
            "pinned": False,
            "type": MESSAGE_DEFAULT,
            "flags": 0,
        }
        if guild_id is not None:
            message["guild_id"] = str(guild_id)
            member = self._members[guild_id][user_id]
            message["member"] = {k: copy.deepcopy(v) for k, v in member.items() if k != "user"}
        self.user_messages.append(message)
        self._user_messages_by_id[message["id"]] = message
        return message

    def _mentions(self, text: str, guild_id: int | None) -> list[dict[str, Any]]:
        mentions: list[dict[str, Any]] = []
        seen: set[int] = set()
        for match in _MENTION.finditer(text):
            user_id = int(match.group(1))
            user = self._users.get(user_id) or (self._bot_user() if user_id == self.bot_user_id else None)
            if user is None or user_id in seen:
                continue
            seen.add(user_id)
            mention = copy.deepcopy(user)
            member = self._members.get(guild_id, {}).get(user_id) if guild_id is not None else None
            if member is not None:
                mention["member"] = {k: copy.deepcopy(v) for k, v in member.items() if k != "user"}
            mentions.append(mention)
        return mentions

    def _role_mentions(self, text: str, guild_id: int | None) -> list[str]:
        if guild_id is None:
            return []
        return [
            m.group(1) for m in _ROLE_MENTION.finditer(text) if self._guild_role(guild_id, int(m.group(1)))
        ]

    # ------------------------------------------------------------------ payloads

    def _snowflake(self) -> int:
        candidate = (int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22
        self._last_id = max(self._last_id + 1, candidate)
        return self._last_id

    def _bot_user(self) -> dict[str, Any]:
        return {
            "id": str(self.bot_user_id),
            "username": self.bot_name,
            "global_name": None,
            "discriminator": "0001",
            "avatar": None,
            "bot": True,
            "public_flags": 0,
        }

    def _dm_channel_payload(self, user_id: int) -> dict[str, Any]:
        return {
            "id": str(self.dm_channel_id(user_id)),
            "type": 1,
            "last_message_id": None,
            "flags": 0,
            "recipients": [copy.deepcopy(self._users[user_id])],
        }

    def _guild_create(
        self, guild_id: int, session: _Session | None, *, joined: bool = False
    ) -> dict[str, Any]:
        """GUILD_CREATE: ``unavailable: false`` for a guild stubbed in READY, no such key for a new join."""
        guild = {k: copy.deepcopy(v) for k, v in self._guilds[guild_id].items() if not k.startswith("_")}
        members = self._members[guild_id]
        everyone = session is None or session.wants(INTENT_GUILD_MEMBERS)
        guild.update(
            joined_at=members[self.bot_user_id]["joined_at"],
            large=False,
            unavailable=False,
            member_count=len(members),
            members=[copy.deepcopy(m) for uid, m in members.items() if everyone or uid == self.bot_user_id],
            channels=[
                {k: copy.deepcopy(v) for k, v in c.items() if k != "guild_id"}
                for c in self._channels.values()
                if c.get("guild_id") == str(guild_id)
            ],
            threads=[],
            presences=[],
            voice_states=[],
            stage_instances=[],
            guild_scheduled_events=[],
            soundboard_sounds=[],
        )
        if joined:
            del guild["unavailable"]  # discord.py dispatches on_guild_join only without the key
        return guild

    def _wire(self, message: dict[str, Any]) -> dict[str, Any]:
        return {k: copy.deepcopy(v) for k, v in message.items() if k not in _RECORD_KEYS}

    def _event_message(self, message: dict[str, Any]) -> dict[str, Any]:
        event = self._wire(message)
        if "guild_id" in message:
            bot_member = self._members[int(message["guild_id"])][self.bot_user_id]
            event["member"] = {k: copy.deepcopy(v) for k, v in bot_member.items() if k != "user"}
        return event

    # ------------------------------------------------------------------ waiting

    def _notify(self) -> None:
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    async def _wait_until(self, check: Callable[[], _T | None], timeout: float, what: str) -> _T:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            result = check()
            if result is not None:
                return result
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"timed out after {timeout}s waiting for {what}\n{self.describe()}")
            changed = self._changed
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await changed.wait()

    def describe(self, last: int = 12) -> str:
        """A readable dump of recent bot messages, interactions and anomalies, for failure messages."""
        lines = [f"last {min(last, len(self.messages))} of {len(self.messages)} bot messages:"]
        for m in self.messages[-last:]:
            custom_ids = [c["custom_id"] for c in _iter_components(m["components"]) if c.get("custom_id")]
            lines.append(
                f"  id={m['id']} channel={m['channel_id']} flags={m['flags']} edits={m['edits']}"
                f"{' deleted' if m['deleted'] else ''} interaction={m['interaction_id']} "
                f"content={m['content'][:200]!r} components={custom_ids}"
            )
        for record in list(self._interactions.values())[-last:]:
            response = record.response["type"] if record.response else None
            lines.append(f"  interaction {record.id} type={record.type} response={response}")
        if self.unknown_routes:
            lines.append(f"unknown routes: {self.unknown_routes[-last:]}")
        if self.server_errors:
            lines.append(f"fake server errors: {self.server_errors[-3:]}")
        return "\n".join(lines)

    # ------------------------------------------------------------------ gateway

    def _sessions_for(self, guild_id: int | None) -> list[_Session]:
        return [s for s in self._sessions if s.handles(guild_id)]

    async def _session_for(self, guild_id: int | None, timeout: float) -> _Session:
        def check() -> _Session | None:
            return next(iter(self._sessions_for(guild_id)), None)

        try:
            session = await self._wait_until(check, timeout, "the bot to connect")
        except TimeoutError:
            where = f"guild {guild_id}" if guild_id is not None else "DMs"
            raise FakeDiscordError(f"the bot has no gateway session for {where} (is it running?)") from None
        return session

    def _dispatch(
        self, event: str, data: dict[str, Any], *, guild_id: int | None, intent: int | None
    ) -> None:
        for session in self._sessions_for(guild_id):
            if session.wants(intent):
                session.dispatch(event, data)

    async def _gateway(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        connection = _Connection(ws=ws, query=dict(request.query))
        self.gateway_queries.append(connection.query)
        self._connections.add(connection)
        connection.writer = asyncio.create_task(self._write(connection))
        connection.send({"op": 10, "d": {"heartbeat_interval": self.heartbeat_interval_ms}})
        try:
            if request.query.get("v") != "10":
                connection.close(4012, "Invalid API version.")
            elif request.query.get("encoding", "json") != "json":
                connection.close(4002, "Error while decoding payload.")
            async for frame in ws:
                if frame.type is not WSMsgType.TEXT:
                    if frame.type is WSMsgType.BINARY:
                        connection.close(4002, "Error while decoding payload.")
                    continue
                try:
                    payload = json.loads(frame.data)
                except ValueError:
                    connection.close(4002, "Error while decoding payload.")
                    continue
                self._on_frame(connection, payload)
        finally:
            self._connections.discard(connection)
            if connection.writer is not None:
                connection.writer.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await connection.writer
            session = connection.session
            if session is not None and session.connection is connection:
                session.connection = None
                if ws.close_code in (1000, 1001) and session in self._sessions:
                    self._sessions.remove(session)  # a clean close ends the session; others may RESUME
            self._notify()
        return ws

    async def _write(self, connection: _Connection) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            while True:
                item = await connection.queue.get()
                if isinstance(item, _Close):
                    await connection.ws.close(code=item.code, message=item.reason.encode())
                    return
                await connection.ws.send_str(item)

    def _on_frame(self, connection: _Connection, payload: dict[str, Any]) -> None:
        op, data = payload.get("op"), payload.get("d")
        if op == 1:
            connection.send({"op": 11})
        elif op == 2:
            self._on_identify(connection, data or {})
        elif op == 6:
            self._on_resume(connection, data or {})
        elif op == 8:
            self._on_request_members(connection, data or {})
        elif op in (3, 4):
            pass  # presence and voice state updates are accepted and ignored
        else:
            connection.close(4001, "Unknown opcode.")

    def _on_identify(self, connection: _Connection, data: dict[str, Any]) -> None:
        if connection.session is not None:
            connection.close(4005, "Already authenticated.")
            return
        if data.get("token") != self.token:
            connection.close(4004, "Authentication failed.")
            return
        shard_id, shard_count = data.get("shard") or [0, 1]
        if not 0 <= shard_id < shard_count:
            connection.close(4010, "Invalid shard.")
            return
        intents = data.get("intents")
        if not isinstance(intents, int) or intents < 0:
            connection.close(4013, "Invalid intent(s).")
            return
        self.identify = data
        self.identifies.append(data)
        self._sessions = [s for s in self._sessions if s.shard_id != shard_id]
        session = _Session(
            session_id=secrets.token_hex(16),
            shard_id=shard_id,
            shard_count=shard_count,
            intents=intents,
            connection=connection,
        )
        connection.session = session
        guild_ids = [g for g in self._guilds if session.handles(g)]
        session.dispatch(
            "READY",
            {
                "v": 10,
                "user": {
                    **self._bot_user(),
                    "verified": True,
                    "mfa_enabled": False,
                    "flags": 0,
                    "email": None,
                },
                "guilds": [{"id": str(g), "unavailable": True} for g in guild_ids],
                "session_id": session.session_id,
                "session_type": "normal",
                "resume_gateway_url": self.gateway_url,
                "shard": [shard_id, shard_count],
                "application": {"id": str(self.application_id), "flags": 0},
                "private_channels": [],
                "relationships": [],
                "presences": [],
                "guild_join_requests": [],
                "geo_ordered_rtc_regions": [],
                "user_settings": {},
                "auth": {},
                "_trace": ["fake-discord"],
            },
        )
        for guild_id in guild_ids:
            session.dispatch("GUILD_CREATE", self._guild_create(guild_id, session))
        self._sessions.append(session)
        self._notify()

    def _on_resume(self, connection: _Connection, data: dict[str, Any]) -> None:
        session = next((s for s in self._sessions if s.session_id == data.get("session_id")), None)
        self.resumes.append(data)
        if session is None or data.get("token") != self.token:
            connection.send({"op": 9, "d": False})
            return
        # Take the session over (from a zombie connection too) and replay what the client has not seen.
        if session.connection is not None:
            session.connection.session = None
        session.connection = connection
        connection.session = session
        last_seen = data.get("seq") or 0
        for seq, frame in session.history:
            if seq > last_seen:
                connection.queue.put_nowait(frame)
        session.dispatch("RESUMED", {"_trace": ["fake-discord"]})
        self._notify()

    def _on_request_members(self, connection: _Connection, data: dict[str, Any]) -> None:
        session = connection.session
        if session is None:
            connection.close(4003, "Not authenticated.")
            return
        guild_ids = data.get("guild_id")
        for raw in guild_ids if isinstance(guild_ids, list) else [guild_ids]:
            guild_id = _maybe_id(raw)
            if guild_id is None:
                continue
            members = list(self._members.get(guild_id, {}).values())
            query = (data.get("query") or "").lower()
            if data.get("user_ids"):
                wanted = {str(u) for u in data["user_ids"]}
                members = [m for m in members if m["user"]["id"] in wanted]
            elif query:
                members = [m for m in members if m["user"]["username"].lower().startswith(query)]
            if data.get("limit"):
                members = members[: data["limit"]]
            chunk: dict[str, Any] = {
                "guild_id": str(guild_id),
                "members": copy.deepcopy(members),
                "chunk_index": 0,
                "chunk_count": 1,
                "not_found": [],
            }
            if data.get("nonce") is not None:
                chunk["nonce"] = data["nonce"]
            session.dispatch("GUILD_MEMBERS_CHUNK", chunk)

    # ------------------------------------------------------------------ REST plumbing

    def _build_routes(self) -> list[tuple[str, re.Pattern[str], _Handler, bool]]:
        s = r"([^/]+)"
        table: list[tuple[str, str, _Handler, bool]] = [
            ("GET", "/users/@me", self._get_me, True),
            ("GET", "/oauth2/applications/@me", self._get_application, True),
            ("GET", "/gateway", self._get_gateway, False),
            ("GET", "/gateway/bot", self._get_gateway_bot, True),
            ("GET", f"/applications/{s}/commands", self._get_commands, True),
            ("PUT", f"/applications/{s}/commands", self._put_commands, True),
            ("GET", f"/applications/{s}/guilds/{s}/commands", self._get_guild_commands, True),
            ("PUT", f"/applications/{s}/guilds/{s}/commands", self._put_guild_commands, True),
            ("POST", f"/interactions/{s}/{s}/callback", self._interaction_callback, False),
            ("GET", f"/webhooks/{s}/{s}/messages/@original", self._get_original, False),
            ("PATCH", f"/webhooks/{s}/{s}/messages/@original", self._edit_original, False),
            ("DELETE", f"/webhooks/{s}/{s}/messages/@original", self._delete_original, False),
            ("POST", f"/webhooks/{s}/{s}", self._followup, False),
            ("GET", f"/webhooks/{s}/{s}/messages/{s}", self._get_followup, False),
            ("PATCH", f"/webhooks/{s}/{s}/messages/{s}", self._edit_followup, False),
            ("DELETE", f"/webhooks/{s}/{s}/messages/{s}", self._delete_followup, False),
            ("POST", "/users/@me/channels", self._create_dm, True),
            ("POST", f"/channels/{s}/messages", self._create_message, True),
            ("GET", f"/channels/{s}/messages/{s}", self._get_message, True),
            ("PATCH", f"/channels/{s}/messages/{s}", self._edit_message, True),
            ("DELETE", f"/channels/{s}/messages/{s}", self._delete_message, True),
            ("POST", f"/channels/{s}/typing", self._typing, True),
            ("GET", f"/channels/{s}", self._get_channel, True),
            ("GET", f"/users/{s}", self._get_user, True),
            ("GET", f"/guilds/{s}", self._get_guild, True),
            ("GET", f"/guilds/{s}/members/{s}", self._get_member, True),
        ]
        return [(method, re.compile(path), handler, auth) for method, path, handler, auth in table]

    async def _not_api(self, request: web.Request) -> web.Response:
        self.calls.append((request.method, request.path))
        self.unknown_routes.append((request.method, request.path))
        return _json_response({"message": "404: Not Found", "code": 0}, 404)

    async def _rest(self, request: web.Request) -> web.StreamResponse:
        method, path = request.method, "/" + request.match_info["tail"]
        self.calls.append((method, path))
        matched = [(m, rx.fullmatch(path), h, auth) for m, rx, h, auth in self._routes]
        candidates = [(m, match, h, auth) for m, match, h, auth in matched if match is not None]
        route = next((c for c in candidates if c[0] == method), None)
        if route is None:
            self.unknown_routes.append((method, path))
            if candidates:
                return _json_response({"message": "405: Method Not Allowed", "code": 0}, 405)
            return _json_response({"message": "404: Not Found", "code": 0}, 404)
        _, match, handler, auth = route
        assert match is not None
        if auth and request.headers.get("Authorization") != f"Bot {self.token}":
            return _json_response({"message": "401: Unauthorized", "code": 0}, 401)
        try:
            result = await handler(request, *match.groups())
        except DiscordAPIError as error:
            return _json_response(error.body(), error.status)
        except Exception:
            self.server_errors.append(traceback.format_exc())
            _log.exception("fake discord failed on %s %s", method, path)
            # 503: discord.py raises DiscordServerError at once (500/502/504 would be retried for 25 s).
            return _json_response(
                {"message": "fake discord crashed, see FakeDiscord.server_errors", "code": 0}, 503
            )
        if result is None:
            return web.Response(status=204)
        return _json_response(result)

    async def _read_body(self, request: web.Request) -> tuple[Any, list[tuple[int, str, bytes, str]]]:
        """JSON or multipart (``payload_json``, ``files[n]``) body: (payload, [(index, name, data, type)])."""
        files: list[tuple[int, str, bytes, str]] = []
        if request.content_type == "multipart/form-data":
            form = await request.post()
            payload: Any = {}
            for name, value in form.items():
                if name == "payload_json":
                    text = value if isinstance(value, str) else value.file.read().decode()  # type: ignore[union-attr]
                    payload = self._parse_json(text)
                elif isinstance(value, web.FileField):
                    match = re.fullmatch(r"files\[(\d+)\]", name)
                    index = int(match.group(1)) if match else len(files)
                    files.append((index, value.filename, value.file.read(), value.content_type))
            if sum(len(f[2]) for f in files) > MAX_ATTACHMENT_BYTES:
                raise DiscordAPIError(413, 40005, "Request entity too large")
            return payload, files
        if not request.can_read_body:
            return {}, files
        return self._parse_json(await request.text()), files

    @staticmethod
    def _parse_json(text: str) -> Any:
        if not text.strip():
            return {}
        try:
            return json.loads(text)
        except ValueError:
            raise DiscordAPIError(400, 50109, "The request body contains invalid JSON.") from None

    async def _json_object(
        self, request: web.Request
    ) -> tuple[dict[str, Any], list[tuple[int, str, bytes, str]]]:
        body, files = await self._read_body(request)
        if not isinstance(body, dict):
            raise _invalid_form(
                {"_errors": [{"code": "DICT_TYPE_CONVERT", "message": "Only dictionaries may be used"}]}
            )
        return body, files

    # ------------------------------------------------------------------ REST: identity, gateway, commands

    async def _get_me(self, request: web.Request) -> dict[str, Any]:
        return {
            **self._bot_user(),
            "verified": True,
            "mfa_enabled": False,
            "locale": "en-US",
            "flags": 0,
            "email": None,
            "banner": None,
            "accent_color": None,
        }

    async def _get_application(self, request: web.Request) -> dict[str, Any]:
        owner = {**self._bot_user(), "id": str(self.application_id + 1000), "username": "owner", "bot": False}
        return {
            "id": str(self.application_id),
            "name": self.bot_name,
            "icon": None,
            "description": "",
            "summary": "",
            "type": None,
            "bot": self._bot_user(),
            "bot_public": True,
            "bot_require_code_grant": False,
            "verify_key": "0" * 64,
            "owner": owner,
            "team": None,
            "flags": 0,
            "interactions_endpoint_url": None,
            "redirect_uris": [],
            "tags": [],
        }

    async def _get_gateway(self, request: web.Request) -> dict[str, Any]:
        return {"url": self.gateway_url}

    async def _get_gateway_bot(self, request: web.Request) -> dict[str, Any]:
        return {
            "url": self.gateway_url,
            "shards": self.shards,
            "session_start_limit": {"total": 1000, "remaining": 1000, "reset_after": 0, "max_concurrency": 1},
        }

    def _check_application(self, application_id: str) -> None:
        if application_id != str(self.application_id):
            raise DiscordAPIError(403, 50001, "Missing Access")

    def _bot_guild(self, guild_id: str) -> int:
        if not guild_id.isdigit() or int(guild_id) not in self._guilds:
            raise DiscordAPIError(403, 50001, "Missing Access")
        return int(guild_id)

    async def _get_commands(self, request: web.Request, application_id: str) -> list[dict[str, Any]]:
        self._check_application(application_id)
        return self._global_commands

    async def _put_commands(self, request: web.Request, application_id: str) -> list[dict[str, Any]]:
        self._check_application(application_id)
        body, _ = await self._read_body(request)
        self._global_commands = self._overwrite_commands(self._global_commands, body, None)
        self._notify()
        return self._global_commands

    async def _get_guild_commands(self, request: web.Request, application_id: str, guild_id: str) -> Any:
        self._check_application(application_id)
        return self.guild_commands.get(self._bot_guild(guild_id), [])

    async def _put_guild_commands(self, request: web.Request, application_id: str, guild_id: str) -> Any:
        self._check_application(application_id)
        gid = self._bot_guild(guild_id)
        body, _ = await self._read_body(request)
        self.guild_commands[gid] = self._overwrite_commands(self.guild_commands.get(gid, []), body, gid)
        self._notify()
        return self.guild_commands[gid]

    def _overwrite_commands(
        self, existing: list[dict[str, Any]], body: Any, guild_id: int | None
    ) -> list[dict[str, Any]]:
        errors = _FormErrors()
        if not isinstance(body, list):
            raise _invalid_form(
                {"_errors": [{"code": "LIST_TYPE_CONVERT", "message": "Only iterables may be used"}]}
            )
        if len(body) > 100:
            errors.add([], "BASE_TYPE_MAX_LENGTH", "Must be 100 or fewer in length.")
        seen: set[tuple[str, int]] = set()
        for index, command in enumerate(body):
            name, kind = command.get("name", ""), command.get("type", 1)
            if kind == 1 and (not _COMMAND_NAME.match(name) or name != name.lower()):
                errors.add([index, "name"], "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid")
            if kind == 1 and not 1 <= len(command.get("description") or "") <= 100:
                errors.add(
                    [index, "description"], "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length."
                )
            if (name, kind) in seen:
                errors.add(
                    [index, "name"],
                    "APPLICATION_COMMANDS_DUPLICATE_NAME",
                    "Application command names must be unique",
                )
            seen.add((name, kind))
        errors.raise_if_any()
        ids = {(c["name"], c.get("type", 1)): c["id"] for c in existing}
        stored = []
        for command in body:
            key = (command["name"], command.get("type", 1))
            permissions = command.get("default_member_permissions")
            entry = {
                "id": ids.get(key) or str(self._snowflake()),
                "application_id": str(self.application_id),
                "version": str(self._snowflake()),
                "type": key[1],
                "name": command["name"],
                "name_localizations": command.get("name_localizations"),
                "description": command.get("description", ""),
                "description_localizations": command.get("description_localizations"),
                "options": copy.deepcopy(command.get("options") or []),
                "default_member_permissions": None if permissions is None else str(int(permissions)),
                "dm_permission": command.get("dm_permission", True),
                "contexts": command.get("contexts"),
                "integration_types": command.get("integration_types") or [0],
                "nsfw": bool(command.get("nsfw", False)),
            }
            if guild_id is not None:
                entry["guild_id"] = str(guild_id)
                del entry["dm_permission"]
            stored.append(entry)
        return stored

    # ------------------------------------------------------------------ REST: messages

    def _validate_message(self, message: dict[str, Any], prefix: Sequence[str]) -> None:
        errors = _FormErrors()
        content = message.get("content") or ""
        if not isinstance(content, str):
            errors.add([*prefix, "content"], "STRING_TYPE_CONVERT", "Could not interpret value as string.")
            content = str(content)
        if len(content) > 2000:
            errors.add([*prefix, "content"], "BASE_TYPE_MAX_LENGTH", "Must be 2000 or fewer in length.")
        embeds = message.get("embeds") or []
        if len(embeds) > 10:
            errors.add([*prefix, "embeds"], "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length.")
        for index, embed in enumerate(embeds):
            if len(embed.get("title") or "") > 256:
                errors.add(
                    [*prefix, "embeds", index, "title"],
                    "BASE_TYPE_MAX_LENGTH",
                    "Must be 256 or fewer in length.",
                )
            if len(embed.get("description") or "") > 4096:
                errors.add(
                    [*prefix, "embeds", index, "description"],
                    "BASE_TYPE_MAX_LENGTH",
                    "Must be 4096 or fewer in length.",
                )
        v2 = bool(message.get("flags", 0) & FLAG_COMPONENTS_V2)
        if v2 and (content or embeds):
            errors.add(
                [*prefix, "content" if content else "embeds"],
                "MESSAGE_CANNOT_USE_LEGACY_FIELDS_WITH_COMPONENTS_V2",
                "The 'content' and 'embeds' fields cannot be used when using MessageFlags.IS_COMPONENTS_V2",
            )
        self._validate_components(message.get("components") or [], v2, [*prefix, "components"], errors)
        errors.raise_if_any()
        loading = message.get("flags", 0) & FLAG_LOADING
        if not loading and not (
            content.strip()
            or embeds
            or message.get("components")
            or message.get("attachments")
            or message.get("sticker_ids")
            or message.get("poll")
        ):
            raise DiscordAPIError(400, 50006, "Cannot send an empty message")

    @staticmethod
    def _validate_components(components: list[Any], v2: bool, prefix: list[Any], errors: _FormErrors) -> None:
        if not v2:
            if len(components) > 5:
                errors.add(prefix, "BASE_TYPE_MAX_LENGTH", "Must be 5 or fewer in length.")
            for index, row in enumerate(components):
                if not isinstance(row, dict) or row.get("type") != 1:
                    errors.add(
                        [*prefix, index], "UNION_TYPE_CHOICES", 'Value of field "type" must be one of (1,).'
                    )
                    continue
                children = row.get("components") or []
                if not 1 <= len(children) <= 5:
                    errors.add(
                        [*prefix, index, "components"],
                        "BASE_TYPE_BAD_LENGTH",
                        "Must be between 1 and 5 in length.",
                    )
                if len(children) > 1 and any(c.get("type") in (3, 5, 6, 7, 8) for c in children):
                    errors.add(
                        [*prefix, index, "components"],
                        "COMPONENT_LAYOUT_WIDTH_EXCEEDED",
                        "The specified component exceeds the maximum width",
                    )
        elif sum(1 for _ in _iter_components(components)) > 40:
            errors.add(prefix, "BASE_TYPE_MAX_LENGTH", "Must be 40 or fewer in length.")
        seen: set[str] = set()

        def walk(items: list[Any], path: list[Any]) -> None:
            for index, component in enumerate(items):
                if not isinstance(component, dict):
                    continue
                here = [*path, index]
                custom_id = component.get("custom_id")
                kind = component.get("type")
                if kind == 2:
                    style = component.get("style")
                    if style == 5 and not component.get("url"):
                        errors.add([*here, "url"], "BASE_TYPE_REQUIRED", "This field is required")
                    elif style not in (5, 6) and not custom_id:
                        errors.add([*here, "custom_id"], "BASE_TYPE_REQUIRED", "This field is required")
                    if len(component.get("label") or "") > 80:
                        errors.add([*here, "label"], "BASE_TYPE_MAX_LENGTH", "Must be 80 or fewer in length.")
                if custom_id is not None:
                    if len(custom_id) > 100:
                        errors.add(
                            [*here, "custom_id"], "BASE_TYPE_MAX_LENGTH", "Must be 100 or fewer in length."
                        )
                    elif custom_id in seen:
                        errors.add(
                            [*here, "custom_id"],
                            "COMPONENT_CUSTOM_ID_DUPLICATED",
                            "Component custom id cannot be duplicated",
                        )
                    seen.add(custom_id)
                if isinstance(component.get("components"), list):
                    walk(component["components"], [*here, "components"])
                if isinstance(component.get("accessory"), dict):
                    walk([component["accessory"]], [*here, "accessory"])

        walk(components, prefix)

    def _attachments(
        self,
        body: dict[str, Any],
        files: list[tuple[int, str, bytes, str]],
        existing: list[dict[str, Any]] | None = None,
    ) -> list[dict[str, Any]]:
        declared = {str(a.get("id")): a for a in body.get("attachments") or [] if isinstance(a, dict)}
        kept = [a for a in existing or [] if "attachments" not in body or a["id"] in declared]
        new = []
        for index, filename, data, content_type in files:
            meta = declared.get(str(index), {})
            attachment_id = str(self._snowflake())
            self.files[attachment_id] = data
            url = f"{self.rest_base}/attachments/{attachment_id}/{meta.get('filename') or filename}"
            new.append(
                {
                    "id": attachment_id,
                    "filename": meta.get("filename") or filename,
                    "description": meta.get("description"),
                    "size": len(data),
                    "url": url,
                    "proxy_url": url,
                    "content_type": content_type,
                }
            )
        return kept + new

    def _channel_or_404(self, channel_id: str) -> tuple[int, int | None]:
        """(channel id, guild id or None) of a channel the bot can see."""
        if channel_id.isdigit():
            cid = int(channel_id)
            if cid in self._channels:
                return cid, int(self._channels[cid]["guild_id"])
            if cid in self._dm_recipients:
                return cid, None
        raise DiscordAPIError(404, 10003, "Unknown Channel")

    def _new_message(
        self,
        channel_id: int,
        body: dict[str, Any],
        files: list[tuple[int, str, bytes, str]],
        *,
        prefix: Sequence[str] = (),
        interaction: _Interaction | None = None,
        allowed_flags: int = _SETTABLE_FLAGS,
        extra_flags: int = 0,
        followup: bool = False,
    ) -> dict[str, Any]:
        guild_id = self._channels[channel_id]["guild_id"] if channel_id in self._channels else None
        content = body.get("content")
        message: dict[str, Any] = {
            "id": str(self._snowflake()),
            "channel_id": str(channel_id),
            "author": self._bot_user(),
            "content": "" if content is None else content,
            "timestamp": _now_iso(),
            "edited_timestamp": None,
            "tts": bool(body.get("tts", False)),
            "mention_everyone": False,
            "mentions": self._mentions(
                content if isinstance(content, str) else "", int(guild_id) if guild_id else None
            ),
            "mention_roles": [],
            "attachments": self._attachments(body, files),
            "embeds": copy.deepcopy(body.get("embeds") or []),
            "components": copy.deepcopy(body.get("components") or []),
            "pinned": False,
            "type": MESSAGE_DEFAULT,
            "flags": ((body.get("flags") or 0) & allowed_flags) | extra_flags,
        }
        if body.get("poll"):
            message["poll"] = copy.deepcopy(body["poll"])
        if body.get("sticker_ids"):
            message["sticker_ids"] = list(body["sticker_ids"])
        if guild_id is not None:
            message["guild_id"] = guild_id
        reference = body.get("message_reference")
        if isinstance(reference, dict) and reference.get("message_id"):
            message["message_reference"] = {
                "type": reference.get("type", 0),
                "message_id": str(reference["message_id"]),
                "channel_id": str(reference.get("channel_id") or channel_id),
                **({"guild_id": guild_id} if guild_id else {}),
            }
            message["type"] = 19
        if interaction is not None:
            user = copy.deepcopy(self._users[interaction.user_id])
            is_command = interaction.type == INTERACTION_COMMAND
            message["application_id"] = str(self.application_id)
            message["webhook_id"] = str(self.application_id)
            message["type"] = MESSAGE_CHAT_INPUT_COMMAND if is_command else MESSAGE_DEFAULT
            metadata: dict[str, Any] = {
                "id": interaction.id,
                "type": interaction.type,
                "user": user,
                "authorizing_integration_owners": interaction.payload["authorizing_integration_owners"],
            }
            if is_command:
                metadata["name"] = interaction.payload["data"]["name"]
                metadata["command_type"] = interaction.payload["data"].get("type", 1)
                message["interaction"] = {
                    "id": interaction.id,
                    "type": interaction.type,
                    "name": interaction.payload["data"]["name"],
                    "user": user,
                }
            elif interaction.source_message_id is not None:
                metadata["interacted_message_id"] = interaction.source_message_id
            if followup and interaction.original_id is not None:
                metadata["original_response_message_id"] = interaction.original_id
            message["interaction_metadata"] = metadata
        self._validate_message(message, prefix)
        message["interaction_id"] = interaction.id if interaction is not None else None
        message["edits"] = 0
        message["deleted"] = False
        self.messages.append(message)
        self._messages_by_id[message["id"]] = message
        if not message["flags"] & FLAG_EPHEMERAL:
            intent = INTENT_GUILD_MESSAGES if guild_id is not None else INTENT_DIRECT_MESSAGES
            self._dispatch(
                "MESSAGE_CREATE",
                self._event_message(message),
                guild_id=int(guild_id) if guild_id else None,
                intent=intent,
            )
        self._notify()
        return message

    def _apply_edit(
        self,
        message: dict[str, Any],
        body: dict[str, Any],
        files: list[tuple[int, str, bytes, str]],
        *,
        prefix: Sequence[str] = (),
    ) -> dict[str, Any]:
        if message["deleted"]:
            raise DiscordAPIError(404, 10008, "Unknown Message")
        candidate = dict(message)
        if "content" in body:
            candidate["content"] = body["content"] if body["content"] is not None else ""
        if "embeds" in body:
            candidate["embeds"] = copy.deepcopy(body["embeds"] or [])
        if "components" in body:
            candidate["components"] = copy.deepcopy(body["components"] or [])
        if "attachments" in body or files:
            candidate["attachments"] = self._attachments(body, files, message["attachments"])
        if body.get("flags") is not None:
            candidate["flags"] = (message["flags"] & ~_EDITABLE_FLAGS) | (body["flags"] & _EDITABLE_FLAGS)
        was_loading = bool(message["flags"] & FLAG_LOADING)
        candidate["flags"] &= ~FLAG_LOADING
        if "content" in candidate and isinstance(candidate["content"], str):
            guild_id = int(message["guild_id"]) if "guild_id" in message else None
            candidate["mentions"] = self._mentions(candidate["content"], guild_id)
        self._validate_message(candidate, prefix)
        message.update(candidate)
        if not was_loading:
            # Completing a deferred ("thinking") response is the response itself, not an edit.
            message["edits"] += 1
            message["edited_timestamp"] = _now_iso()
        if not message["flags"] & FLAG_EPHEMERAL:
            guild_id = int(message["guild_id"]) if "guild_id" in message else None
            intent = INTENT_GUILD_MESSAGES if guild_id is not None else INTENT_DIRECT_MESSAGES
            self._dispatch("MESSAGE_UPDATE", self._event_message(message), guild_id=guild_id, intent=intent)
        self._notify()
        return message

    def _delete(self, message: dict[str, Any]) -> None:
        if message["deleted"]:
            raise DiscordAPIError(404, 10008, "Unknown Message")
        message["deleted"] = True
        if not message["flags"] & FLAG_EPHEMERAL:
            guild_id = int(message["guild_id"]) if "guild_id" in message else None
            event: dict[str, Any] = {"id": message["id"], "channel_id": message["channel_id"]}
            if guild_id is not None:
                event["guild_id"] = str(guild_id)
            intent = INTENT_GUILD_MESSAGES if guild_id is not None else INTENT_DIRECT_MESSAGES
            self._dispatch("MESSAGE_DELETE", event, guild_id=guild_id, intent=intent)
        self._notify()

    async def _create_dm(self, request: web.Request) -> dict[str, Any]:
        body, _ = await self._json_object(request)
        recipient = str(body.get("recipient_id", ""))
        if not recipient.isdigit() or int(recipient) not in self._users:
            raise DiscordAPIError(400, 50033, "Invalid Recipient(s)")
        return self._dm_channel_payload(int(recipient))

    async def _create_message(self, request: web.Request, channel_id: str) -> dict[str, Any]:
        cid, _ = self._channel_or_404(channel_id)
        body, files = await self._json_object(request)
        recipient = self._dm_recipients.get(cid)
        if recipient is not None and recipient in self._closed_dms:
            raise DiscordAPIError(403, 50007, "Cannot send messages to this user")
        return self._wire(self._new_message(cid, body, files))

    def _bot_message_in(self, channel_id: str, message_id: str) -> dict[str, Any]:
        self._channel_or_404(channel_id)
        message = self._messages_by_id.get(message_id)
        if message is None or message["channel_id"] != channel_id or message["deleted"]:
            if message_id in self._user_messages_by_id:
                raise DiscordAPIError(403, 50005, "Cannot edit a message authored by another user")
            raise DiscordAPIError(404, 10008, "Unknown Message")
        return message

    async def _get_message(self, request: web.Request, channel_id: str, message_id: str) -> dict[str, Any]:
        self._channel_or_404(channel_id)
        message = self._messages_by_id.get(message_id) or self._user_messages_by_id.get(message_id)
        if (
            message is None
            or message["channel_id"] != channel_id
            or message.get("deleted")
            or message["flags"] & FLAG_EPHEMERAL
        ):
            raise DiscordAPIError(404, 10008, "Unknown Message")
        return self._wire(message)

    async def _edit_message(self, request: web.Request, channel_id: str, message_id: str) -> dict[str, Any]:
        message = self._bot_message_in(channel_id, message_id)
        body, files = await self._json_object(request)
        return self._wire(self._apply_edit(message, body, files))

    async def _delete_message(self, request: web.Request, channel_id: str, message_id: str) -> None:
        self._channel_or_404(channel_id)
        user_message = self._user_messages_by_id.get(message_id)
        if (
            user_message is not None
            and user_message["channel_id"] == channel_id
            and not user_message.get("deleted")
        ):
            user_message["deleted"] = True
            self._notify()
            return
        self._delete(self._bot_message_in(channel_id, message_id))

    async def _typing(self, request: web.Request, channel_id: str) -> None:
        self._channel_or_404(channel_id)

    async def _get_channel(self, request: web.Request, channel_id: str) -> dict[str, Any]:
        cid, guild_id = self._channel_or_404(channel_id)
        if guild_id is None:
            return self._dm_channel_payload(self._dm_recipients[cid])
        return copy.deepcopy(self._channels[cid])

    async def _get_user(self, request: web.Request, user_id: str) -> dict[str, Any]:
        if user_id == str(self.bot_user_id):
            return self._bot_user()
        if not user_id.isdigit() or int(user_id) not in self._users:
            raise DiscordAPIError(404, 10013, "Unknown User")
        return copy.deepcopy(self._users[int(user_id)])

    async def _get_guild(self, request: web.Request, guild_id: str) -> dict[str, Any]:
        if not guild_id.isdigit() or int(guild_id) not in self._guilds:
            raise DiscordAPIError(404, 10004, "Unknown Guild")
        guild = {k: copy.deepcopy(v) for k, v in self._guilds[int(guild_id)].items() if not k.startswith("_")}
        guild["approximate_member_count"] = len(self._members[int(guild_id)])
        return guild

    async def _get_member(self, request: web.Request, guild_id: str, user_id: str) -> dict[str, Any]:
        if not guild_id.isdigit() or int(guild_id) not in self._guilds:
            raise DiscordAPIError(404, 10004, "Unknown Guild")
        member = self._members[int(guild_id)].get(int(user_id)) if user_id.isdigit() else None
        if member is None:
            raise DiscordAPIError(404, 10007, "Unknown Member")
        return copy.deepcopy(member)

    # ------------------------------------------------------------------ REST: interactions

    async def _interaction_callback(self, request: web.Request, interaction_id: str, token: str) -> Any:
        record = self._interactions.get(interaction_id)
        if record is None or record.token != token:
            raise DiscordAPIError(404, 10062, "Unknown interaction")
        body, files = await self._json_object(request)
        if record.response is not None:
            raise DiscordAPIError(400, 40060, "Interaction has already been acknowledged.")
        if (
            self.interaction_deadline is not None
            and time.monotonic() - record.created > self.interaction_deadline
        ):
            raise DiscordAPIError(404, 10062, "Unknown interaction")
        kind = body.get("type")
        data = body.get("data") or {}
        if kind not in _ALLOWED_CALLBACKS.get(record.type, set()):
            raise _invalid_form(
                {
                    "type": {
                        "_errors": [
                            {
                                "code": "INTERACTION_RESPONSE_TYPE_INVALID",
                                "message": "Invalid interaction response type",
                            }
                        ]
                    }
                }
            )
        message: dict[str, Any] | None = None
        if kind == CALLBACK_MESSAGE:
            message = self._new_message(
                record.channel_id,
                data,
                files,
                prefix=["data"],
                interaction=record,
                allowed_flags=_SETTABLE_FLAGS | FLAG_EPHEMERAL,
            )
            record.original_id = message["id"]
        elif kind == CALLBACK_DEFERRED_MESSAGE:
            ephemeral = (data.get("flags") or 0) & FLAG_EPHEMERAL
            message = self._new_message(
                record.channel_id,
                {"content": ""},
                [],
                prefix=["data"],
                interaction=record,
                extra_flags=FLAG_LOADING | ephemeral,
            )
            record.original_id = message["id"]
        elif kind in (CALLBACK_DEFERRED_UPDATE, CALLBACK_UPDATE):
            source = self._messages_by_id.get(record.source_message_id or "")
            if source is None:
                raise DiscordAPIError(
                    400, 50035, "Invalid Form Body: the interaction has no message to update"
                )
            if kind == CALLBACK_UPDATE:
                self._apply_edit(source, data, files, prefix=["data"])
                message = source
            record.original_id = source["id"]
        record.response = {"type": kind, "data": copy.deepcopy(body.get("data"))}
        self._notify()
        if request.query.get("with_response", "").lower() not in ("1", "true"):
            return None
        summary: dict[str, Any] = {"id": record.id, "type": record.type}
        if record.original_id is not None:
            original = self._messages_by_id[record.original_id]
            summary["response_message_id"] = record.original_id
            summary["response_message_loading"] = bool(original["flags"] & FLAG_LOADING)
            summary["response_message_ephemeral"] = bool(original["flags"] & FLAG_EPHEMERAL)
        answer: dict[str, Any] = {"interaction": summary}
        if message is not None:
            answer["resource"] = {"type": kind, "message": self._wire(message)}
        elif kind != CALLBACK_DEFERRED_UPDATE:
            answer["resource"] = {"type": kind}
        return answer

    def _webhook_interaction(self, application_id: str, token: str) -> _Interaction:
        record = self._interactions_by_token.get(token)
        if application_id != str(self.application_id) or record is None or record.response is None:
            raise DiscordAPIError(404, 10015, "Unknown Webhook")
        return record

    def _original(self, record: _Interaction) -> dict[str, Any]:
        message = self._messages_by_id.get(record.original_id or "")
        if message is None or message["deleted"]:
            raise DiscordAPIError(404, 10008, "Unknown Message")
        return message

    def _followup_message(self, record: _Interaction, message_id: str) -> dict[str, Any]:
        if message_id not in record.followup_ids and message_id != record.original_id:
            raise DiscordAPIError(404, 10008, "Unknown Message")
        message = self._messages_by_id[message_id]
        if message["deleted"]:
            raise DiscordAPIError(404, 10008, "Unknown Message")
        return message

    async def _get_original(self, request: web.Request, application_id: str, token: str) -> dict[str, Any]:
        return self._wire(self._original(self._webhook_interaction(application_id, token)))

    async def _edit_original(self, request: web.Request, application_id: str, token: str) -> dict[str, Any]:
        record = self._webhook_interaction(application_id, token)
        message = self._original(record)
        body, files = await self._json_object(request)
        return self._wire(self._apply_edit(message, body, files))

    async def _delete_original(self, request: web.Request, application_id: str, token: str) -> None:
        self._delete(self._original(self._webhook_interaction(application_id, token)))

    async def _followup(self, request: web.Request, application_id: str, token: str) -> dict[str, Any] | None:
        record = self._webhook_interaction(application_id, token)
        body, files = await self._json_object(request)
        original = self._messages_by_id.get(record.original_id or "")
        if original is not None and original["flags"] & FLAG_LOADING and not original["deleted"]:
            # The first followup after a deferred "thinking" response replaces it, keeping its ephemerality.
            message = self._apply_edit(original, body, files)
        else:
            message = self._new_message(
                record.channel_id,
                body,
                files,
                interaction=record,
                allowed_flags=_SETTABLE_FLAGS | FLAG_EPHEMERAL,
                followup=True,
            )
            record.followup_ids.append(message["id"])
        if request.query.get("wait", "").lower() in ("1", "true"):
            return self._wire(message)
        return None

    async def _get_followup(
        self, request: web.Request, application_id: str, token: str, message_id: str
    ) -> Any:
        record = self._webhook_interaction(application_id, token)
        return self._wire(self._followup_message(record, message_id))

    async def _edit_followup(
        self, request: web.Request, application_id: str, token: str, message_id: str
    ) -> Any:
        record = self._webhook_interaction(application_id, token)
        message = self._followup_message(record, message_id)
        body, files = await self._json_object(request)
        return self._wire(self._apply_edit(message, body, files))

    async def _delete_followup(
        self, request: web.Request, application_id: str, token: str, message_id: str
    ) -> None:
        record = self._webhook_interaction(application_id, token)
        self._delete(self._followup_message(record, message_id))

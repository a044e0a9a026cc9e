"""The Telegram channel: python-telegram-bot v22 in, `Incoming` events out, replies back.

Long polling for development, or a webhook served by the concierge app at
`/webhooks/telegram` (the secret token header is checked before anything is parsed). Private
chats are conversations; in groups the bot answers `/ask`, `/setup` and mentions, and moves the
conversation to a private chat with a deep link, remembering which group it came from so the
group's business scope still applies.
"""

from __future__ import annotations

import hmac
import json
from typing import Any

import redis.asyncio as aioredis
import structlog
from aiohttp import web
from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Message, Update, User
from telegram.constants import ChatMemberStatus, ChatType, MessageEntityType
from telegram.error import BadRequest, Forbidden, TelegramError
from telegram.ext import Application, ApplicationBuilder, ContextTypes, TypeHandler

from bots.dispatcher import Dispatcher
from bots.events import Incoming, Kind, Reply
from concierge.config import Settings, TelegramMode
from concierge.model import Channel
from concierge.redis_keys import entity_key
from concierge.round_trips import round_trips

log = structlog.get_logger("bots.telegram")

MAX_TEXT = 4096
REF_TTL_SECONDS = 7 * 24 * 3600
STASH_TTL_SECONDS = 3600
COMMUNITY_TTL_SECONDS = 24 * 3600
MAX_UPDATE_BYTES = 256 * 1024
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 - a header name
_GROUP_COMMANDS = {"ask", "setup", "help", "start"}


def _chat_key(chat_id: int | str, field: str) -> str:
    return entity_key("chat", f"telegram.{chat_id}", field)


def markup(reply: Reply) -> InlineKeyboardMarkup | None:
    if not reply.buttons:
        return None
    return InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(b.label, url=b.url)
                if b.url
                else InlineKeyboardButton(b.label, callback_data=b.action)
                for b in row
            ]
            for row in reply.buttons
        ]
    )


class TelegramChannel:
    def __init__(self, settings: Settings, dispatcher: Dispatcher, redis: aioredis.Redis) -> None:
        assert settings.telegram_token is not None
        self._settings = settings
        self._dispatcher = dispatcher
        self._redis = redis
        builder = (
            ApplicationBuilder()
            .token(settings.telegram_token.get_secret_value())
            .base_url(settings.telegram_api_url)
            .concurrent_updates(True)
        )
        if settings.telegram_mode is TelegramMode.WEBHOOK:
            builder = builder.updater(None)
        self.application: Application[Any, Any, Any, Any, Any, Any] = builder.build()
        self.application.add_handler(TypeHandler(Update, self._on_update))
        self._secret = (
            settings.telegram_webhook_secret.get_secret_value()
            if settings.telegram_webhook_secret is not None
            else hmac.new(settings.signing_key, b"telegram-webhook", "sha256").hexdigest()
        )

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        app = self.application
        await app.initialize()
        await app.start()
        if self._settings.telegram_mode is TelegramMode.POLLING:
            assert app.updater is not None
            await app.updater.start_polling(poll_interval=0.0, drop_pending_updates=False)
        else:
            await app.bot.set_webhook(
                f"{self._settings.base_url}/webhooks/telegram",
                secret_token=self._secret,
                allowed_updates=["message", "callback_query", "my_chat_member"],
            )
        log.info("telegram channel started", bot=app.bot.username, mode=self._settings.telegram_mode.value)

    async def stop(self) -> None:
        app = self.application
        if app.updater is not None and app.updater.running:
            await app.updater.stop()
        if app.running:
            await app.stop()
        await app.shutdown()

    # ------------------------------------------------------------------ webhook

    async def webhook(self, request: web.Request) -> web.Response:
        """POST /webhooks/telegram: only Telegram knows the secret; the update is queued at once."""
        given = request.headers.get(SECRET_HEADER, "")
        if not hmac.compare_digest(given.encode(), self._secret.encode()):
            return web.json_response({"error": "wrong secret token"}, status=403)
        if request.content_length is not None and request.content_length > MAX_UPDATE_BYTES:
            return web.json_response({"error": "update too large"}, status=413)
        try:
            data = json.loads(await request.read())
            update = Update.de_json(data, self.application.bot)
        except (ValueError, TypeError, KeyError) as exc:
            return web.json_response({"error": f"malformed update: {type(exc).__name__}"}, status=400)
        if update is None:
            return web.json_response({"error": "malformed update"}, status=400)
        await self.application.update_queue.put(update)
        return web.json_response({"ok": True})

    # ------------------------------------------------------------------ incoming

    async def _on_update(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        try:
            if update.callback_query is not None:
                await self._on_press(update)
            elif update.my_chat_member is not None:
                await self._on_membership(update)
            elif update.message is not None:
                await self._on_message(update.message)
        except Exception as exc:  # one bad update must not stop the others
            log.warning("telegram update failed", update_id=update.update_id, error=repr(exc))

    async def _on_membership(self, update: Update) -> None:
        """The bot was added to a group: say what it does and how admins link the group."""
        change = update.my_chat_member
        assert change is not None
        joined = change.new_chat_member.status in {ChatMemberStatus.MEMBER, ChatMemberStatus.ADMINISTRATOR}
        was_out = change.old_chat_member.status in {ChatMemberStatus.LEFT, ChatMemberStatus.BANNED}
        if not (joined and was_out) or change.chat.type not in {ChatType.GROUP, ChatType.SUPERGROUP}:
            return
        language = (change.from_user.language_code or "en").split("-")[0]
        text = self._dispatcher.dialogue.t("bot.group.hello", language, bot=self.application.bot.username)
        await self.application.bot.send_message(change.chat.id, text)

    async def _on_press(self, update: Update) -> None:
        query = update.callback_query
        assert query is not None
        await query.answer()
        if not query.data or query.from_user is None:
            return
        user = query.from_user
        event = Incoming(
            Channel.TELEGRAM, str(user.id), user.full_name, Kind.PRESS, query.data, locale=user.language_code
        )
        await self._dispatcher.handle(event, community_key=_chat_key(user.id, "community"))

    async def _on_message(self, message: Message) -> None:
        user = message.from_user
        if user is None or user.is_bot:
            return
        if message.chat.type == ChatType.PRIVATE:
            await self._private(message)
        elif message.chat.type in {ChatType.GROUP, ChatType.SUPERGROUP}:
            await self._group(message)

    async def _private(self, message: Message) -> None:
        user = message.from_user
        assert user is not None
        text = message.text
        # The group they came from, if any: the dispatcher reads it with the conversation.
        remembered = _chat_key(user.id, "community")
        base: dict[str, str | None] = {"locale": user.language_code, "community": None}
        if text is None:
            what = "sticker" if message.sticker else "file"
            event = _event(user, Kind.UNSUPPORTED, what, base)
            await self._dispatcher.handle(event, community_key=remembered)
            return
        if _is_command(message):
            name = _command_name(text)
            if name == "start" and " " in text.strip():
                await self._deep_link(message, text.strip().split(" ", 1)[1])
                return
            kind = Kind.COMMAND
        else:
            kind = Kind.TEXT
        await self._dispatcher.handle(_event(user, kind, text, base), community_key=remembered)

    async def _deep_link(self, message: Message, payload: str) -> None:
        """/start ask<group id>: the customer came from a group; go on with what they asked there."""
        user = message.from_user
        assert user is not None
        community = None
        if payload.startswith("ask") and payload[3:].lstrip("-").isdigit():
            community = payload[3:]
            await self._redis.set(_chat_key(user.id, "community"), community, ex=COMMUNITY_TTL_SECONDS)
        base = {"locale": user.language_code, "community": community}
        await self._dispatcher.handle(_event(user, Kind.COMMAND, "/start", base))
        stashed = await self._redis.getdel(_chat_key(user.id, "stash"))
        if stashed is not None:
            text = stashed.decode() if isinstance(stashed, bytes) else str(stashed)
            await self._dispatcher.handle(_event(user, Kind.TEXT, text, base))

    async def _group(self, message: Message) -> None:
        user = message.from_user
        assert user is not None
        text = message.text or ""
        bot = self.application.bot
        mention = f"@{bot.username}".lower() if bot.username else None
        if _is_command(message):
            name, target = _command_target(text)
            if target is not None and mention is not None and target.lower() != mention[1:]:
                return  # a command for another bot in the group
            if name not in _GROUP_COMMANDS:
                return
            args = text.strip().split(" ", 1)[1].strip() if " " in text.strip() else ""
        elif mention is not None and mention in text.lower():
            name, args = "ask", " ".join(word for word in text.split() if word.lower() != mention)
        else:
            return  # group chatter not addressed to the bot
        group = _ChatOutbox(self, message.chat_id)
        if name == "setup":
            member = await bot.get_chat_member(message.chat_id, user.id)
            is_admin = member.status in {ChatMemberStatus.ADMINISTRATOR, ChatMemberStatus.OWNER}
            event = Incoming(
                Channel.TELEGRAM,
                str(user.id),
                user.full_name,
                Kind.COMMAND,
                text,
                locale=user.language_code,
                community=str(message.chat_id),
                is_admin=is_admin,
                in_group=True,
            )
            await self._dispatcher.handle(event, direct=group)
            return
        if args:
            await self._redis.set(_chat_key(user.id, "stash"), args[:4000], ex=STASH_TTL_SECONDS)
        link = f"https://t.me/{bot.username}?start=ask{message.chat_id}"
        texts = self._dispatcher.dialogue.t
        language = (user.language_code or "en").split("-")[0]
        await group.send(
            texts("bot.group.moved", language, link=link),
            InlineKeyboardMarkup([[InlineKeyboardButton(texts("bot.group.button", language), url=link)]]),
        )

    # ------------------------------------------------------------------ outgoing

    async def deliver(self, reply: Reply) -> None:
        await self.deliver_to(int(reply.to.user_id), reply)

    async def deliver_to(self, chat_id: int, reply: Reply) -> None:
        bot = self.application.bot
        text = reply.text[:MAX_TEXT]
        if reply.edit and reply.ref:
            message_id = await self._redis.hget(_chat_key(chat_id, "refs"), reply.ref)
            if message_id is not None:
                try:
                    await bot.edit_message_text(
                        text, chat_id=chat_id, message_id=int(message_id), reply_markup=markup(reply)
                    )
                    return
                except BadRequest as exc:
                    if "not modified" in exc.message.lower():
                        return
                    # The message is gone (deleted, too old to edit): send it anew below.
        try:
            sent = await bot.send_message(chat_id, text, reply_markup=markup(reply))
        except Forbidden:
            log.info("telegram user blocked the bot or never started it", chat=chat_id)
            return
        except TelegramError as exc:
            log.warning("telegram send failed", chat=chat_id, error=str(exc))
            return
        if reply.ref:
            key = _chat_key(chat_id, "refs")
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.hset(key, reply.ref, sent.message_id)
                pipe.expire(key, REF_TTL_SECONDS)
                await round_trips(self._redis).execute(pipe)


class _ChatOutbox:
    """Replies to the sender delivered into the group they wrote in."""

    def __init__(self, channel: TelegramChannel, chat_id: int) -> None:
        self._channel = channel
        self._chat_id = chat_id

    async def deliver(self, reply: Reply) -> None:
        await self._channel.deliver_to(self._chat_id, reply)

    async def send(self, text: str, keyboard: InlineKeyboardMarkup) -> None:
        await self._channel.application.bot.send_message(
            self._chat_id, text[:MAX_TEXT], reply_markup=keyboard
        )


def _event(user: User, kind: Kind, text: str, base: dict[str, str | None]) -> Incoming:
    return Incoming(
        Channel.TELEGRAM,
        str(user.id),
        user.full_name,
        kind,
        text,
        locale=base["locale"],
        community=base["community"],
    )


def _is_command(message: Message) -> bool:
    return any(e.type == MessageEntityType.BOT_COMMAND and e.offset == 0 for e in message.entities or ())


def _command_name(text: str) -> str:
    return _command_target(text)[0]


def _command_target(text: str) -> tuple[str, str | None]:
    head = text.strip().split(" ", 1)[0].lstrip("/")
    name, _, target = head.partition("@")
    return name.lower(), target or None

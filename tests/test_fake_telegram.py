"""The fake Telegram Bot API server, driven by the real python-telegram-bot library (no mocks)."""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from telegram import (
    Bot,
    BotCommand,
    BotCommandScopeChat,
    ChatMemberAdministrator,
    ChatMemberMember,
    ChatMemberOwner,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    LinkPreviewOptions,
    MessageEntity,
    ReplyKeyboardMarkup,
    ReplyParameters,
    Update,
)
from telegram.constants import ParseMode
from telegram.error import BadRequest, Conflict, EndPointNotFound, Forbidden, InvalidToken, RetryAfter
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    ChatMemberHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from tests.fakes.telegram_server import SECRET_HEADER, FakeTelegram

Context = ContextTypes.DEFAULT_TYPE


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as server:
        yield server


@pytest.fixture
async def bot(tg: FakeTelegram) -> AsyncIterator[Bot]:
    async with Bot(tg.token, base_url=tg.base_url) as client:
        yield client


def build_app(tg: FakeTelegram, token: str | None = None) -> Application:
    return ApplicationBuilder().token(token or tg.token).base_url(tg.base_url).build()


@pytest.fixture
async def polling() -> AsyncIterator[Callable[[Application], Awaitable[None]]]:
    """Start an Application polling the fake; stops it cleanly after the test."""
    started: list[Application] = []

    async def start(app: Application) -> None:
        await app.initialize()
        await app.start()
        assert app.updater is not None
        await app.updater.start_polling(poll_interval=0)
        started.append(app)

    yield start
    for app in started:
        assert app.updater is not None
        await app.updater.stop()
        await app.stop()
        await app.shutdown()


def ci(text: str) -> str:
    """A ``pytest.raises`` pattern for an API error: PTB drops "Bad Request: " and then applies
    ``str.capitalize()`` (so "BUTTON_DATA_INVALID" arrives as "Button_data_invalid")."""
    return "(?i)" + re.escape(text)


def keyboard(*pairs: tuple[str, str]) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup([[InlineKeyboardButton(text, callback_data=data) for text, data in pairs]])


# --------------------------------------------------------------------------------------------------
# Polling, end to end
# --------------------------------------------------------------------------------------------------


async def test_polling_end_to_end(tg: FakeTelegram) -> None:
    seen: Counter[int] = Counter()

    async def start(update: Update, context: Context) -> None:
        assert update.message is not None
        assert update.effective_user is not None
        seen[update.update_id] += 1
        await update.message.reply_text(
            f"Hello {update.effective_user.first_name}! What do you need?",
            reply_markup=keyboard(("Plumbing", "topic:plumbing"), ("Taxes", "topic:taxes")),
        )

    async def echo(update: Update, context: Context) -> None:
        assert update.message is not None
        assert update.message.text is not None
        seen[update.update_id] += 1
        await update.message.reply_text(f"echo: {update.message.text}")

    async def chosen(update: Update, context: Context) -> None:
        query = update.callback_query
        assert query is not None
        assert query.data is not None
        seen[update.update_id] += 1
        await query.edit_message_text(f"You chose {query.data.split(':')[1]}")
        await query.answer("Noted", show_alert=True)

    app = build_app(tg)
    app.add_handler(CommandHandler("start", start))
    app.add_handler(MessageHandler(filters.TEXT & ~filters.COMMAND, echo))
    app.add_handler(CallbackQueryHandler(chosen, pattern=r"^topic:"))
    await app.initialize()
    await app.start()
    assert app.updater is not None
    await app.updater.start_polling(poll_interval=0)
    try:
        assert app.bot.username == "concierge_test_bot"
        ann = tg.user(1001, "Ann", username="ann_smith")
        bob = tg.user(1002, "Bob", language_code="fr")

        await tg.send_text(ann, "/start")
        await tg.send_text(bob, "bonjour")
        greeting = await tg.wait_for(lambda m: m["text"].startswith("Hello Ann"))
        assert greeting["chat"]["id"] == 1001
        assert greeting["from"]["is_bot"] is True
        assert greeting["reply_markup"]["inline_keyboard"][0][1] == {
            "text": "Taxes",
            "callback_data": "topic:taxes",
        }
        echoed = await tg.wait_for(lambda m: m["text"] == "echo: bonjour")
        assert echoed["chat"]["id"] == 1002

        query_id = await tg.press(ann, greeting, "topic:taxes")
        answer = await tg.wait_for_answer(query_id)
        assert answer["text"] == "Noted"
        assert answer["show_alert"] is True
        # the record is live: the edit is applied, and editing the text dropped the keyboard
        assert greeting["text"] == "You chose taxes"
        assert greeting["edits"] == 1
        assert "reply_markup" not in greeting
        assert "edit_date" in greeting
        with pytest.raises(ValueError, match=ci("no button")):
            await tg.press(ann, greeting, "topic:taxes")

        await tg.send_text(ann, "thanks")
        await tg.wait_for(lambda m: m["text"] == "echo: thanks")
        assert [m["text"] for m in tg.messages_to(1001)] == ["You chose taxes", "echo: thanks"]
        await tg.wait_until_confirmed()
    finally:
        await app.updater.stop()
        await app.stop()
        await app.shutdown()

    assert set(seen.values()) == {1}, "every update is handled exactly once"
    assert len(seen) == 4
    methods = [name for name, _ in tg.calls]
    assert methods[:3] == ["getMe", "deleteWebhook", "getUpdates"]
    assert methods.count("sendMessage") == 3
    assert methods.count("editMessageText") == 1
    assert tg.pending_updates == 0
    assert tg.errors == []
    # PTB sends form fields: the message ids and markup were decoded back to ints and objects
    edit = tg.calls_to("editMessageText")[0]
    assert edit["chat_id"] == 1001
    assert edit["message_id"] == greeting["message_id"]


async def test_message_ids_increase_per_chat_and_replies(tg: FakeTelegram, bot: Bot) -> None:
    ann = tg.user(1, "Ann")
    tg.user(2, "Bob")
    first = await bot.send_message(1, "one")
    second = await bot.send_message(1, "two", reply_parameters=ReplyParameters(first.message_id))
    other = await bot.send_message(2, "other")
    assert (first.message_id, second.message_id, other.message_id) == (1, 2, 1)
    assert second.reply_to_message is not None
    assert second.reply_to_message.text == "one"
    with pytest.raises(BadRequest, match=ci("message to be replied not found")):
        await bot.send_message(1, "x", reply_parameters=ReplyParameters(99))
    lonely = await bot.send_message(
        1, "y", reply_parameters=ReplyParameters(99, allow_sending_without_reply=True)
    )
    assert lonely.reply_to_message is None

    user_message = await tg.send_text(ann, "hello")
    assert user_message["message_id"] == 4  # users' and the bot's messages share the chat's sequence
    preview = await bot.send_message(
        1, "see https://example.com/page.", link_preview_options=LinkPreviewOptions(is_disabled=True)
    )
    assert preview.link_preview_options is not None
    assert preview.link_preview_options.is_disabled
    assert preview.entities == (MessageEntity("url", 4, 24),)
    assert await bot.delete_message(1, first.message_id) is True
    assert tg.sent[0]["deleted"] is True
    assert next(m["text"] for m in tg.messages_to(1)) == "two"
    with pytest.raises(BadRequest, match=ci("message to delete not found")):
        await bot.delete_message(1, first.message_id)
    keyboard_message = await bot.send_message(1, "choose", reply_markup=ReplyKeyboardMarkup([["Yes", "No"]]))
    assert keyboard_message.reply_markup is None  # Telegram does not echo reply keyboards
    assert tg.calls_to("sendMessage")[-1]["reply_markup"]["keyboard"] == [[{"text": "Yes"}, {"text": "No"}]]
    assert await bot.send_chat_action(1, "typing") is True
    with pytest.raises(BadRequest, match=ci("wrong parameter action")):
        await bot.send_chat_action(1, "dancing")
    with pytest.raises(BadRequest, match=ci("chat not found")):
        await bot.send_message(777, "nobody")


async def test_group_commands_mentions_and_entities(
    tg: FakeTelegram, polling: Callable[[Application], Awaitable[None]]
) -> None:
    handled: list[tuple[str, list[str]]] = []

    async def help_command(update: Update, context: Context) -> None:
        assert update.message is not None
        assert update.message.text is not None
        handled.append((update.message.text, list(context.args or [])))
        await update.message.reply_text("help is here")

    async def mentioned(update: Update, context: Context) -> None:
        assert update.message is not None
        mentions = update.message.parse_entities([MessageEntity.MENTION])
        await update.message.reply_text("mentions: " + ",".join(mentions.values()))

    app = build_app(tg)
    app.add_handler(CommandHandler("help", help_command))
    app.add_handler(MessageHandler(filters.TEXT & filters.Entity(MessageEntity.MENTION), mentioned))
    await polling(app)

    group = tg.group(-100, "Neighbours")
    ann = tg.user(5, "Ann")
    message = await tg.send_text(ann, "/help@concierge_test_bot now", chat=group)
    assert message["entities"] == [{"type": "bot_command", "offset": 0, "length": 24}]
    await tg.wait_for(lambda m: m["text"] == "help is here" and m["chat"]["id"] == -100)
    mark = len(tg.sent)
    await tg.send_text(ann, "/help@some_other_bot", chat=group)
    await tg.send_text(ann, "🙂 ask @plumber_pro or @tax_expert", chat=group)
    reply = await tg.wait_for(lambda m: m["text"].startswith("mentions:"), since=mark)
    assert reply["text"] == "mentions: @plumber_pro,@tax_expert"
    assert handled == [("/help@concierge_test_bot now", ["now"])]
    # offsets are in UTF-16 code units: the emoji counts twice
    last = tg._messages[(-100, 4)]
    assert last["entities"][0] == {"type": "mention", "offset": 7, "length": 12}


async def test_non_text_messages_and_members(
    tg: FakeTelegram, polling: Callable[[Application], Awaitable[None]]
) -> None:
    async def sticker(update: Update, context: Context) -> None:
        assert update.message is not None
        assert update.message.sticker is not None
        await update.message.reply_text(f"nice sticker {update.message.sticker.emoji}")

    async def document(update: Update, context: Context) -> None:
        assert update.message is not None
        assert update.message.document is not None
        await update.message.reply_text(f"got {update.message.document.file_name}")

    kicked = asyncio.Event()

    async def my_member(update: Update, context: Context) -> None:
        change = update.my_chat_member
        assert change is not None
        if change.new_chat_member.status == "member":
            await context.bot.send_message(change.chat.id, "thanks for adding me")
            return
        with pytest.raises(Forbidden, match=ci("bot was kicked from the supergroup chat")):
            await context.bot.send_message(change.chat.id, "bye")
        kicked.set()

    async def joined(update: Update, context: Context) -> None:
        assert update.message is not None
        names = ", ".join(user.first_name for user in update.message.new_chat_members)
        await update.message.reply_text(f"welcome {names}")

    app = build_app(tg)
    app.add_handler(MessageHandler(filters.Sticker.ALL, sticker))
    app.add_handler(MessageHandler(filters.Document.ALL, document))
    app.add_handler(ChatMemberHandler(my_member, ChatMemberHandler.MY_CHAT_MEMBER))
    app.add_handler(MessageHandler(filters.StatusUpdate.NEW_CHAT_MEMBERS, joined))
    await polling(app)

    ann = tg.user(7, "Ann")
    await tg.send_sticker(ann)
    await tg.send_document(ann, file_name="invoice.pdf")
    await tg.wait_for(lambda m: m["text"] == "nice sticker 👍")
    await tg.wait_for(lambda m: m["text"] == "got invoice.pdf")

    group = tg.group(-1001234567890, "Concierge helpers")
    assert group["type"] == "supergroup"
    await tg.add_member(group, tg.bot_user, by=ann)
    await tg.wait_for(lambda m: m["text"] == "thanks for adding me")
    await tg.wait_for(lambda m: m["text"] == "welcome Concierge")
    bob = tg.user(8, "Bob")
    await tg.add_member(group, bob)
    await tg.wait_for(lambda m: m["text"] == "welcome Bob")
    await tg.remove_member(group, tg.bot_user, by=ann)
    await asyncio.wait_for(kicked.wait(), 10)
    await tg.wait_until_confirmed()
    await tg.send_text(bob, "anyone here?", chat=group)
    assert tg.pending_updates == 0, "the bot is no longer in the group: it gets nothing"


async def test_chat_members_admins_and_chat_info(tg: FakeTelegram, bot: Bot) -> None:
    group = tg.group(-42, "Board")
    ann, bob = tg.user(1, "Ann"), tg.user(2, "Bob")
    tg.set_admin(-42, ann["id"], status="creator")
    tg.set_admin(-42, tg.bot_id)

    member = await bot.get_chat_member(-42, bob["id"])
    assert isinstance(member, ChatMemberMember)
    assert member.user.first_name == "Bob"
    assert isinstance(await bot.get_chat_member(-42, ann["id"]), ChatMemberOwner)
    tg.set_admin(-42, bob["id"])
    assert isinstance(await bot.get_chat_member(-42, bob["id"]), ChatMemberAdministrator)
    admins = await bot.get_chat_administrators(-42)
    assert [(a.user.id, a.status) for a in admins] == [
        (1, "creator"),
        (tg.bot_id, "administrator"),
        (2, "administrator"),
    ]
    assert await bot.get_chat_member_count(-42) == 3
    with pytest.raises(BadRequest, match=ci("user not found")):
        await bot.get_chat_member(-42, 999)
    with pytest.raises(BadRequest, match=ci("no administrators in the private chat")):
        await bot.get_chat_administrators(1)

    chat = await bot.get_chat(group["id"])
    assert (chat.id, chat.type, chat.title) == (-42, "group", "Board")
    private = await bot.get_chat(1)
    assert (private.type, private.first_name) == ("private", "Ann")


async def test_commands_and_descriptions(tg: FakeTelegram, bot: Bot) -> None:
    tg.user(1, "Ann")
    commands = [BotCommand("start", "Start"), BotCommand("help", "Help")]
    assert await bot.set_my_commands(commands) is True
    assert await bot.set_my_commands([BotCommand("start", "Commencer")], language_code="fr") is True
    assert await bot.set_my_commands([BotCommand("admin", "Admin")], scope=BotCommandScopeChat(1)) is True
    assert await bot.get_my_commands() == tuple(commands)
    assert await bot.get_my_commands(language_code="fr") == (BotCommand("start", "Commencer"),)
    assert await bot.get_my_commands(scope=BotCommandScopeChat(1)) == (BotCommand("admin", "Admin"),)
    assert await bot.delete_my_commands() is True
    assert await bot.get_my_commands() == ()
    with pytest.raises(BadRequest, match=ci("BOT_COMMAND_INVALID")):
        await bot.set_my_commands([BotCommand("Start-Now", "bad")])
    assert await bot.set_my_description("Find help", language_code="en") is True
    assert (await bot.get_my_description(language_code="en")).description == "Find help"
    assert (await bot.get_my_name()).name == "Concierge"


async def test_privacy_mode() -> None:
    async with FakeTelegram(privacy_mode=True) as tg, Bot(tg.token, base_url=tg.base_url) as private_bot:
        assert (await private_bot.get_me()).can_read_all_group_messages is False
        group = tg.group(-5, "Quiet")
        ann = tg.user(1, "Ann")
        await tg.send_text(ann, "chatter", chat=group)
        await tg.send_text(ann, "/help", chat=group)
        await tg.send_text(ann, "/help@another_bot", chat=group)
        notice = await private_bot.send_message(-5, "I am here")
        await tg.send_text(ann, "a reply to the bot", chat=group, reply_to=tg.messages_to(-5)[0])
        await tg.send_text(ann, "a private message")
        updates = await private_bot.get_updates(timeout=0)
        assert [u.message.text for u in updates if u.message] == [
            "/help",
            "a reply to the bot",
            "a private message",
        ]
        assert updates[1].message is not None
        assert updates[1].message.reply_to_message == notice
        tg.set_admin(-5, tg.bot_id)
        await tg.send_text(ann, "chatter seen by an admin bot", chat=group)
        updates = await private_bot.get_updates(offset=updates[-1].update_id + 1, timeout=0)
        assert [u.message.text for u in updates if u.message] == ["chatter seen by an admin bot"]


# --------------------------------------------------------------------------------------------------
# Webhook
# --------------------------------------------------------------------------------------------------


async def test_webhook_delivery(tg: FakeTelegram) -> None:
    secret = "s3cr3t_Token-1"
    app = build_app(tg)
    processed: list[int] = []

    async def echo(update: Update, context: Context) -> None:
        assert update.message is not None
        processed.append(update.update_id)
        await update.message.reply_text(f"webhook echo: {update.message.text}")

    app.add_handler(MessageHandler(filters.TEXT, echo))
    await app.initialize()
    await app.start()
    headers_seen: list[str | None] = []

    async def receive(request: web.Request) -> web.Response:
        headers_seen.append(request.headers.get(SECRET_HEADER))
        if request.headers.get(SECRET_HEADER) != secret:
            return web.Response(status=403)
        data = await request.json()
        if data["message"]["text"] == "fail me":
            return web.Response(status=500)
        await app.process_update(Update.de_json(data, app.bot))
        return web.Response()

    hook_app = web.Application()
    hook_app.router.add_post("/hook", receive)
    runner = web.AppRunner(hook_app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        ann = tg.user(1, "Ann")
        await tg.send_text(ann, "queued before the webhook")
        assert await app.bot.set_webhook(f"http://127.0.0.1:{port}/hook", secret_token=secret) is True
        await tg.wait_for(lambda m: m["text"] == "webhook echo: queued before the webhook")

        with pytest.raises(Conflict, match=ci("webhook is active")):
            await app.bot.get_updates(timeout=0)

        for text in ("one", "two", "fail me", "three"):
            await tg.send_text(ann, text)
        await tg.wait_for(lambda m: m["text"] == "webhook echo: three")
        # the 2xx answer reaches the fake just after the reply was sent
        await tg.wait_until(lambda: len(tg.webhook_deliveries) == 5)
        assert tg.webhook_deliveries == [200, 200, 200, 500, 200]
        assert headers_seen == [secret] * 5
        # updates of one chat are delivered in order, one at a time
        assert [m["text"] for m in tg.messages_to(1)] == [
            "webhook echo: queued before the webhook",
            "webhook echo: one",
            "webhook echo: two",
            "webhook echo: three",
        ]
        info = await app.bot.get_webhook_info()
        assert info.url == f"http://127.0.0.1:{port}/hook"
        assert info.pending_update_count == 1  # the failed one is not retried but stays pending
        assert info.last_error_message == "Wrong response from the webhook: 500 Internal Server Error"

        # back to polling: the failed update is handed out by getUpdates
        assert await app.bot.delete_webhook() is True
        updates = await app.bot.get_updates(timeout=0)
        assert [u.message.text for u in updates if u.message] == ["fail me"]
        assert (await app.bot.get_webhook_info()).url == ""

        with pytest.raises(BadRequest, match=ci("secret token contains unallowed characters")):
            await app.bot.set_webhook(f"http://127.0.0.1:{port}/hook", secret_token="no spaces allowed")
        # a webhook nobody listens on: the delivery is recorded as 0 (connection failed)
        await app.bot.set_webhook("http://127.0.0.1:9/closed", drop_pending_updates=True)
        await tg.send_text(ann, "lost")
        await tg.wait_until(lambda: len(tg.webhook_deliveries) == 6)
        assert tg.webhook_deliveries[-1] == 0
        assert (await app.bot.get_webhook_info()).last_error_message.startswith("Connection failed")
        await app.bot.delete_webhook(drop_pending_updates=True)
        assert tg.pending_updates == 0
    finally:
        await app.stop()
        await app.shutdown()
        await runner.cleanup()
    assert len(processed) == 4


# --------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------


async def test_wrong_token_is_rejected(tg: FakeTelegram) -> None:
    app = build_app(tg, token="123456:WRONG-TOKEN")
    with pytest.raises(InvalidToken):
        await app.initialize()
    await app.bot.shutdown()  # a failed initialize leaves PTB's HTTP clients open
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{tg.base_url}123456:WRONG/getMe") as response:
            assert response.status == 401
            assert await response.json() == {"ok": False, "error_code": 401, "description": "Unauthorized"}
        async with http.post(f"{tg.base_url}not-a-token/getMe") as response:
            assert response.status == 404


@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")  # RetryAfter.retry_after
async def test_bad_requests(tg: FakeTelegram, bot: Bot) -> None:
    tg.user(1, "Ann")
    with pytest.raises(BadRequest, match=ci("message is too long")):
        await bot.send_message(1, "x" * 4097)
    assert (await bot.send_message(1, "x" * 4096)).text == "x" * 4096
    with pytest.raises(BadRequest, match=ci("message text is empty")):
        await bot.send_message(1, "   ")
    with pytest.raises(BadRequest, match=ci("BUTTON_DATA_INVALID")):
        await bot.send_message(1, "pick", reply_markup=keyboard(("too long", "d" * 65)))
    menu = await bot.send_message(1, "pick", reply_markup=keyboard(("A", "a"), ("B", "b")))
    with pytest.raises(BadRequest, match=ci("message is not modified")):
        await bot.edit_message_text(
            "pick", chat_id=1, message_id=menu.message_id, reply_markup=keyboard(("A", "a"), ("B", "b"))
        )
    with pytest.raises(BadRequest, match=ci("message is not modified")):
        await bot.edit_message_reply_markup(
            chat_id=1, message_id=menu.message_id, reply_markup=keyboard(("A", "a"), ("B", "b"))
        )
    edited = await bot.edit_message_reply_markup(
        chat_id=1, message_id=menu.message_id, reply_markup=keyboard(("A", "a"))
    )
    assert edited.reply_markup == keyboard(("A", "a"))
    assert tg.sent[-1]["edits"] == 1
    with pytest.raises(BadRequest, match=ci("message to edit not found")):
        await bot.edit_message_text("new", chat_id=1, message_id=999)
    with pytest.raises(BadRequest, match=ci("query is too old")):
        await bot.answer_callback_query("12345")
    with pytest.raises(EndPointNotFound):
        await bot.do_api_request("noSuchMethod")
    with pytest.raises(BadRequest, match=ci("not emulated")):
        await bot.send_dice(1)
    assert [code for _, _, code, _ in tg.errors] == [400] * 8

    tg.set_blocked(1)
    with pytest.raises(Forbidden, match=ci("bot was blocked by the user")):
        await bot.send_message(1, "hello?")
    tg.set_blocked(1, blocked=False)
    tg.inject_error("sendMessage", 429, "Too Many Requests: retry after 3", retry_after=3)
    with pytest.raises(RetryAfter):
        await bot.send_message(1, "flood")
    assert (await bot.send_message(1, "fine again")).text == "fine again"


async def test_parse_modes(tg: FakeTelegram, bot: Bot) -> None:
    tg.user(1, "Ann")
    html = await bot.send_message(
        1,
        '<b>Bold</b> &amp; <a href="https://example.com">link</a> <code>x&lt;y</code>',
        parse_mode=ParseMode.HTML,
    )
    assert html.text == "Bold & link x<y"
    assert html.entities == (
        MessageEntity("bold", 0, 4),
        MessageEntity("text_link", 7, 4, url="https://example.com"),
        MessageEntity("code", 12, 3),
    )
    with pytest.raises(
        BadRequest, match=ci('can\'t parse entities: Unsupported start tag "3" at byte offset 2')
    ):
        await bot.send_message(1, "1 <3 you", parse_mode=ParseMode.HTML)
    with pytest.raises(BadRequest, match=ci('Can\'t find end tag corresponding to start tag "b"')):
        await bot.send_message(1, "<b>open", parse_mode=ParseMode.HTML)

    md = await bot.send_message(
        1, r"*Price:* 10\.5 €, _see_ [site](https://example.com)", parse_mode="MarkdownV2"
    )
    assert md.text == "Price: 10.5 €, see site"
    assert [(e.type, e.offset, e.length) for e in md.entities] == [
        ("bold", 0, 6),
        ("italic", 15, 3),
        ("text_link", 19, 4),
    ]
    with pytest.raises(BadRequest, match=ci("Character '.' is reserved")):
        await bot.send_message(1, "Total: 10.5", parse_mode="MarkdownV2")
    legacy = await bot.send_message(1, "*bold* and `code`", parse_mode="Markdown")
    assert legacy.text == "bold and code"
    # not-modified compares the parsed result
    with pytest.raises(BadRequest, match=ci("not modified")):
        await bot.edit_message_text(
            "<b>Bold</b> &amp; <a href='https://example.com'>link</a> <code>x&lt;y</code>",
            1,
            html.message_id,
            parse_mode="HTML",
        )


# --------------------------------------------------------------------------------------------------
# getUpdates semantics over raw HTTP
# --------------------------------------------------------------------------------------------------


async def test_get_updates_semantics(tg: FakeTelegram) -> None:
    ann = tg.user(1, "Ann")
    url = f"{tg.base_url}{tg.token}/getUpdates"
    async with aiohttp.ClientSession() as http:

        async def get_updates(**params: Any) -> list[dict[str, Any]]:
            async with http.post(url, json=params) as response:  # JSON bodies are accepted too
                body = await response.json()
                assert response.status == 200, body
                return body["result"]

        for text in ("a", "b", "c"):
            await tg.send_text(ann, text)
        first = await get_updates(limit=2)
        assert [u["message"]["text"] for u in first] == ["a", "b"]
        ids = [u["update_id"] for u in first]
        assert ids[1] == ids[0] + 1
        assert [u["update_id"] for u in await get_updates()] == [*ids, ids[1] + 1], "unconfirmed: redelivered"
        assert [u["message"]["text"] for u in await get_updates(offset=ids[1])] == ["b", "c"]
        assert await get_updates(offset=ids[1] + 2, timeout=0) == []
        assert tg.pending_updates == 0

        # long polling wakes as soon as an update arrives
        started = time.perf_counter()
        calls = len(tg.calls)
        poll = asyncio.create_task(get_updates(offset=ids[1] + 2, timeout=5))
        await tg.wait_until(lambda: len(tg.calls) > calls)  # the poll is waiting
        await tg.send_text(ann, "wake up")
        woken = await poll
        assert [u["message"]["text"] for u in woken] == ["wake up"]
        assert time.perf_counter() - started < 2
        # an empty long poll lasts its timeout
        started = time.perf_counter()
        assert await get_updates(offset=woken[0]["update_id"] + 1, timeout=0.3) == []
        assert time.perf_counter() - started >= 0.25

        # a second poll terminates the first one with 409
        calls = len(tg.calls)
        older = asyncio.create_task(http.post(url, data={"timeout": "5"}))
        await tg.wait_until(lambda: len(tg.calls) > calls)
        assert await get_updates(timeout=0) == []
        async with await older as response:
            assert response.status == 409
            assert "terminated by other getUpdates request" in (await response.json())["description"]

        # allowed_updates is a persistent filter applied when updates are created
        assert await get_updates(allowed_updates=["callback_query"], timeout=0) == []
        await tg.send_text(ann, "filtered out")
        assert tg.pending_updates == 0
        assert await get_updates(allowed_updates=[], timeout=0) == []
        await tg.send_text(ann, "back")
        assert [u["message"]["text"] for u in await get_updates()] == ["back"]

        # query-string parameters and unknown methods
        async with http.get(f"{tg.base_url}{tg.token}/getme") as response:
            assert (await response.json())["result"]["username"] == "concierge_test_bot"
        async with http.post(f"{tg.base_url}{tg.token}/fooBar") as response:
            assert response.status == 404
            assert await response.json() == {"ok": False, "error_code": 404, "description": "Not Found"}


# --------------------------------------------------------------------------------------------------
# Simulation helpers and speed
# --------------------------------------------------------------------------------------------------


async def test_wait_for_timeout_explains(tg: FakeTelegram, bot: Bot) -> None:
    tg.user(1, "Ann")
    await bot.send_message(1, "something else", reply_markup=keyboard(("Yes", "yes")))
    with pytest.raises(BadRequest):
        await bot.send_message(1, "y" * 5000)
    with pytest.raises(TimeoutError) as raised:
        await tg.wait_for(lambda m: m["text"] == "never", timeout=0.1)
    report = str(raised.value)
    assert "'something else'" in report
    assert "buttons=['Yes=yes']" in report
    assert "sendMessage: 400 Bad Request: message is too long" in report
    with pytest.raises(TimeoutError, match=ci("was not answered")):
        await tg.wait_for_answer("42", timeout=0.05)


async def test_throughput(tg: FakeTelegram, polling: Callable[[Application], Awaitable[None]]) -> None:
    async def echo(update: Update, context: Context) -> None:
        assert update.message is not None
        await update.message.reply_text(f"re: {update.message.text}")

    app = build_app(tg)
    app.add_handler(MessageHandler(filters.TEXT, echo))
    await polling(app)
    users = [tg.user(10 + i, f"User {i}") for i in range(10)]
    started = time.perf_counter()
    total = 300
    for i in range(total):
        await tg.send_text(users[i % 10], f"message {i}")
    await tg.wait_for(lambda m: m["text"] == f"re: message {total - 1}")
    elapsed = time.perf_counter() - started
    texts = Counter(m["text"] for m in tg.sent)
    assert len(texts) == total
    assert set(texts.values()) == {1}
    assert elapsed < 15, f"{total} updates took {elapsed:.1f}s"

"""A local fake of the Telegram Bot API, good enough to run an unmodified python-telegram-bot bot.

``FakeTelegram`` is an aiohttp server bound to 127.0.0.1 on a free port.  Point the real library at
it with ``ApplicationBuilder().token(tg.token).base_url(tg.base_url)`` and every Bot API call
(``POST {base_url}{token}/{method}``) is answered the way Telegram answers it: ``{"ok": true,
"result": ...}`` or ``{"ok": false, "error_code": N, "description": "..."}`` with Telegram's HTTP
status (400 Bad Request, 401 Unauthorized for a wrong token, 403 Forbidden, 404 Not Found for an
unknown method, 409 Conflict).  Tests play the users through the simulation API (``user``,
``group``, ``send_text``, ``press``, ``add_member``…) and assert on what the bot did (``sent``,
``wait_for``, ``wait_for_answer``, ``calls``).

Usage::

    async with FakeTelegram() as tg:
        app = ApplicationBuilder().token(tg.token).base_url(tg.base_url).build()
        ...  # add handlers, initialize, start, app.updater.start_polling(poll_interval=0)
        ann = tg.user(1001, "Ann")
        await tg.send_text(ann, "/start")
        menu = await tg.wait_for(lambda m: m["chat"]["id"] == 1001 and "choose" in m["text"])
        query_id = await tg.press(ann, menu, "topic:taxes")
        answer = await tg.wait_for_answer(query_id)

``sent`` holds every message the bot sent as a live Message dict (edits applied) with two extra
keys, ``edits`` (a count) and ``deleted``; ``calls`` holds every Bot API call with its parameters
decoded (ints, bools and JSON objects as such); ``errors`` every error answer; ``describe()`` is
the dump ``wait_for``'s TimeoutError carries.  ``wait_until(condition)`` waits on any state of the
fake.  Everything runs on the caller's event loop; nothing sleeps (long polls and waits use
asyncio events), so it can drive hundreds of updates per second.

What it emulates
    * Parameters as query string, form fields (what python-telegram-bot sends: scalars as text,
      objects JSON-encoded), multipart form data or a JSON body; method names case-insensitively.
    * getUpdates with Telegram's semantics: ``offset`` confirms (drops) updates with a smaller id,
      unconfirmed updates are delivered again, a negative offset keeps only the last ones,
      ``limit``, long polling with ``timeout`` that wakes as soon as an update arrives,
      ``allowed_updates`` (a persistent setting applied when updates are created; by default
      chat_member and reaction updates are not created), 409 "terminated by other getUpdates
      request" for an older concurrent poll and 409 while a webhook is set.
    * Webhooks: setWebhook (http:// is allowed here), deleteWebhook, getWebhookInfo,
      ``drop_pending_updates``, ``secret_token`` sent as ``X-Telegram-Bot-Api-Secret-Token``,
      ``max_connections``; like the real server, updates of one chat are POSTed one after another
      and different chats in parallel.  A delivery is attempted once (no retry); a non-2xx answer
      leaves the update pending (``getWebhookInfo.pending_update_count``, ``last_error_message``)
      so it is handed out again after deleteWebhook.  ``webhook_deliveries`` records the HTTP
      status of every POST (0 when the connection failed).
    * Messages: sendMessage, editMessageText, editMessageReplyMarkup, deleteMessage with full
      Message objects (message ids increasing per chat), reply parameters, link preview options,
      inline keyboards (``callback_data`` of 1-64 bytes, button URLs), reply keyboards accepted but,
      as in Telegram, not echoed in the Message.  ``parse_mode`` HTML (close to Telegram's parser,
      with its error messages: unsupported or unclosed tags, byte offsets), MarkdownV2 (reserved
      characters must be escaped, nested entities, links, code/pre, block quotes) and legacy
      Markdown; the resulting Message holds the plain text plus entities (UTF-16 offsets) and the
      text is trimmed like Telegram does.  Text longer than 4096 characters, empty text and
      "message is not modified" edits fail like on Telegram.  Editing the text without
      ``reply_markup`` removes the inline keyboard, as Telegram does.
    * answerCallbackQuery (each query can be answered once), set/get/deleteMyCommands (per scope and
      language), get/setMyDescription, get/setMyShortDescription, get/setMyName, sendChatAction,
      getChat (a ChatFullInfo), getChatMember, getChatAdministrators, getChatMemberCount, getMe.
    * Users' messages carry the entities Telegram detects (bot_command, including
      ``/cmd@botname``, mention, url, hashtag).  A user who blocked the bot
      (``set_blocked``) makes the bot's sends fail with 403; a bot removed from a group too.
    * ``inject_error`` makes the next call(s) of a method fail with any code, including 429 with
      ``retry_after``.

What it does not emulate
    * Files (sendPhoto, sendDocument, getFile …), inline mode, payments, games, business
      connections, forum topics, reactions, channels and channel posts, chat migration, edits
      made by users, rate limits (other than injected), message history limits.  Methods that exist
      in the Bot API but are not emulated answer 400 "Bad Request: method X is not emulated by
      FakeTelegram", so a bot depending on them fails loudly; names that are not Bot API methods
      answer 404 "Not Found" like Telegram.
    * The "bot can't initiate conversation with a user" rule: the bot may message any user created
      with ``user()``.  Group privacy mode is off unless ``privacy_mode=True`` is passed (then the
      bot only sees commands, replies to its messages and service messages unless it is an admin).
    * Webhook HTTPS, port and certificate rules, and retrying failed webhook deliveries.
    * Text length is counted in code points (Telegram's exact counting may differ for some
      characters); automatically detected entities are a simplification of Telegram's detection.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import json
import mimetypes
import re
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import aiohttp
from aiohttp import web

__all__ = ["BotAPIError", "FakeTelegram"]

JSONDict = dict[str, Any]

MAX_TEXT_LENGTH = 4096
MAX_CALLBACK_DATA_BYTES = 64
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are exactly "
    "the same as a current content and reply markup of the message"
)
WEBHOOK_ACTIVE = (
    "Conflict: can't use getUpdates method while webhook is active; "
    "use deleteWebhook to delete the webhook first"
)
TERMINATED_BY_OTHER_POLL = (
    "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"
)
QUERY_INVALID = "Bad Request: query is too old and response timeout expired or query ID is invalid"

_TOKEN_RE = re.compile(r"\d+:[A-Za-z0-9_-]+")
_INT_TEXT_RE = re.compile(r"\s*-?\d+\s*")
_SECRET_RE = re.compile(r"[A-Za-z0-9_-]{1,256}")
_COMMAND_RE = re.compile(r"[a-z0-9_]{1,32}")

# Update types Telegram creates when allowed_updates is empty or was never set.
DEFAULT_UPDATE_TYPES = frozenset(
    {
        "message",
        "edited_message",
        "channel_post",
        "edited_channel_post",
        "business_connection",
        "business_message",
        "edited_business_message",
        "deleted_business_messages",
        "inline_query",
        "chosen_inline_result",
        "callback_query",
        "shipping_query",
        "pre_checkout_query",
        "purchased_paid_media",
        "poll",
        "poll_answer",
        "my_chat_member",
        "chat_join_request",
        "chat_boost",
        "removed_chat_boost",
    }
)
CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)
_MEMBER_STATUSES = frozenset({"creator", "administrator", "member", "restricted", "left", "kicked"})
_PRESENT_STATUSES = frozenset({"creator", "administrator", "member", "restricted"})
_ADMIN_STATUSES = ("creator", "administrator")

# How form values (always text) are turned back into JSON values, by parameter name.
_JSON_PARAMS = frozenset(
    {
        "reply_markup",
        "link_preview_options",
        "reply_parameters",
        "allowed_updates",
        "commands",
        "scope",
        "entities",
        "caption_entities",
        "media",
        "results",
        "menu_button",
    }
)
_INT_PARAMS = frozenset(
    {
        "offset",
        "limit",
        "message_id",
        "user_id",
        "max_connections",
        "cache_time",
        "message_thread_id",
        "reply_to_message_id",
        "until_date",
    }
)
_FLOAT_PARAMS = frozenset({"timeout"})
_BOOL_PARAMS = frozenset(
    {
        "drop_pending_updates",
        "show_alert",
        "disable_notification",
        "protect_content",
        "allow_sending_without_reply",
        "disable_web_page_preview",
        "allow_paid_broadcast",
        "only_if_banned",
        "revoke_messages",
        "for_channels",
    }
)
_TEXT_PARAMS = frozenset({"text", "callback_query_id", "url", "secret_token", "language_code", "parse_mode"})
_PRIVATE_KEYS = frozenset({"edits", "deleted"})


def _known_bot_api_methods() -> frozenset[str]:
    """Lower-cased names of every Bot API method python-telegram-bot knows (if it is installed)."""
    try:
        import telegram
    except ImportError:  # pragma: no cover - the fake also works without the library
        return frozenset()
    names = {name.lower() for name in dir(telegram.Bot) if re.fullmatch(r"[a-z]+[A-Z]\w*", name)}
    return frozenset(names | {"close"})


_KNOWN_METHODS = _known_bot_api_methods()


class BotAPIError(Exception):
    """A Bot API error answer: HTTP status ``error_code`` and Telegram's ``description``."""

    def __init__(self, error_code: int, description: str, parameters: JSONDict | None = None) -> None:
        super().__init__(f"{error_code} {description}")
        self.error_code = error_code
        self.description = description
        self.parameters = parameters


def _bad_request(description: str) -> BotAPIError:
    return BotAPIError(400, f"Bad Request: {description}")


def _now() -> int:
    return int(time.time())


def _utf16_len(text: str) -> int:
    if text.isascii():
        return len(text)
    return len(text.encode("utf-16-le")) // 2


async def _wait(event: asyncio.Event, timeout: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout)


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


# ---------------------------------------------------------------------------------------------
# Entities: automatic detection and the three parse modes
# ---------------------------------------------------------------------------------------------

_AUTO_ENTITY_RE = re.compile(
    r"(?P<bot_command>(?<![\w/])/[A-Za-z0-9_]{1,64}(?:@[A-Za-z0-9_]{3,32})?(?![\w/@]))"
    r"|(?P<mention>(?<![\w@])@[A-Za-z0-9_]{5,32}(?![\w@]))"
    r"|(?P<url>(?<![\w/])https?://[^\s<>\"']*[^\s<>\"'.,;:!?)\]])"
    r"|(?P<hashtag>(?<![\w#])#[^\W\d]\w{0,255}(?!\w))"
)


def detect_entities(text: str, *, skip: list[JSONDict] | None = None) -> list[JSONDict]:
    """The entities Telegram finds by itself (commands, mentions, links, hashtags), UTF-16 offsets.

    Ranges overlapping an entity in ``skip`` whose type hides them (code, pre, text_link) are left out.
    """
    if not any(ch in text for ch in "/@#"):
        return []
    ascii_text = text.isascii()
    hidden = [
        (e["offset"], e["offset"] + e["length"])
        for e in skip or ()
        if e["type"] in {"code", "pre", "text_link", "text_mention", "custom_emoji"}
    ]
    found = []
    for match in _AUTO_ENTITY_RE.finditer(text):
        start, end = match.span()
        if not ascii_text:
            start, end = _utf16_len(text[:start]), _utf16_len(text[:end])
        if any(start < h_end and h_start < end for h_start, h_end in hidden):
            continue
        found.append({"type": match.lastgroup, "offset": start, "length": end - start})
    return found


class _Text:
    """Builds the plain text of a formatted message while tracking its UTF-16 length."""

    __slots__ = ("parts", "pos")

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.pos = 0

    def add(self, piece: str) -> None:
        if piece:
            self.parts.append(piece)
            self.pos += _utf16_len(piece)

    def text(self) -> str:
        return "".join(self.parts)


def _parse_error(message: str) -> BotAPIError:
    return _bad_request(f"can't parse entities: {message}")


def _byte_offset(text: str, index: int) -> int:
    return len(text[:index].encode())


_HTML_TAGS = {
    "a": "text_link",
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
    "code": "code",
    "pre": "pre",
    "blockquote": "blockquote",
    "tg-emoji": "custom_emoji",
}
_HTML_SPECIAL_RE = re.compile(r"[<&]")
_HTML_CHARREF_RE = re.compile(r"&(?:#(\d{1,8})|#[xX]([0-9a-fA-F]{1,8})|(lt|gt|amp|quot));")
_HTML_NAMED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}


def _html_unescape(text: str) -> str:
    def one(match: re.Match[str]) -> str:
        if match.group(3):
            return _HTML_NAMED[match.group(3)]
        code = int(match.group(1)) if match.group(1) else int(match.group(2), 16)
        if code == 0 or code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
            return match.group(0)
        return chr(code)

    return _HTML_CHARREF_RE.sub(one, text)


def _html_attributes(text: str, j: int, tag: str, offset: int) -> tuple[dict[str, str], int]:
    """Parse ``attr="value" …>`` from index ``j``; returns the attributes and the index after ``>``."""
    attributes: dict[str, str] = {}
    n = len(text)
    while True:
        while j < n and text[j].isspace():
            j += 1
        if j >= n:
            raise _parse_error(f"Unclosed start tag at byte offset {offset}")
        if text[j] == ">":
            return attributes, j + 1
        k = j
        while k < n and (text[k].isalnum() or text[k] in "-_"):
            k += 1
        if k == j:
            raise _parse_error(f'Empty attribute name in the tag "{tag}" at byte offset {offset}')
        name = text[j:k].lower()
        j = k
        while j < n and text[j].isspace():
            j += 1
        value = ""
        if j < n and text[j] == "=":
            j += 1
            while j < n and text[j].isspace():
                j += 1
            if j >= n:
                raise _parse_error(f"Unclosed start tag at byte offset {offset}")
            if text[j] in "\"'":
                end = text.find(text[j], j + 1)
                if end < 0:
                    raise _parse_error(f"Unclosed start tag at byte offset {offset}")
                value = _html_unescape(text[j + 1 : end])
                j = end + 1
            else:
                k = j
                while k < n and not text[k].isspace() and text[k] != ">":
                    k += 1
                value = _html_unescape(text[j:k])
                j = k
        attributes[name] = value


def parse_html(text: str) -> tuple[str, list[JSONDict]]:
    """Telegram's HTML parse mode: the plain text and its entities, or a 400 BotAPIError."""
    out = _Text()
    entities: list[JSONDict] = []
    # Open tags: (tag, start position in UTF-16 units, attributes, byte offset of the tag).
    stack: list[tuple[str, int, dict[str, str], int]] = []
    i, n = 0, len(text)
    while i < n:
        special = _HTML_SPECIAL_RE.search(text, i)
        if special is None:
            out.add(text[i:])
            break
        out.add(text[i : special.start()])
        i = special.start()
        if text[i] == "&":
            charref = _HTML_CHARREF_RE.match(text, i)
            if charref is None:
                out.add("&")
                i += 1
            else:
                out.add(_html_unescape(charref.group(0)))
                i = charref.end()
            continue
        offset = _byte_offset(text, i)
        if text.startswith("</", i):
            end = text.find(">", i)
            if end < 0:
                raise _parse_error(f"Unclosed end tag at byte offset {offset}")
            name = text[i + 2 : end].strip().lower()
            if not stack:
                raise _parse_error(f"Unexpected end tag at byte offset {offset}")
            tag, start, attributes, _ = stack.pop()
            if name != tag:
                raise _parse_error(
                    f'Unmatched end tag at byte offset {offset}, expected "</{tag}>", found "</{name}>"'
                )
            i = end + 1
            language = attributes.get("class", "")
            if tag == "code" and stack and stack[-1][0] == "pre" and language.startswith("language-"):
                stack[-1][2]["\0language"] = language.removeprefix("language-")
                continue
            if out.pos == start:
                continue
            entity: JSONDict = {"type": _HTML_TAGS[tag], "offset": start, "length": out.pos - start}
            if tag == "a":
                href = attributes.get("href", "")
                if not href:
                    continue
                entity["url"] = href
            elif tag == "pre" and attributes.get("\0language"):
                entity["language"] = attributes["\0language"]
            elif tag == "blockquote" and "expandable" in attributes:
                entity["type"] = "expandable_blockquote"
            elif tag == "tg-emoji":
                emoji_id = attributes.get("emoji-id", "")
                if not emoji_id.isdigit():
                    raise _parse_error("Custom emoji entity must contain a valid custom emoji identifier")
                entity["custom_emoji_id"] = emoji_id
            entities.append(entity)
            continue
        j = i + 1
        while j < n and not text[j].isspace() and text[j] != ">":
            j += 1
        if j >= n:
            raise _parse_error(f"Unclosed start tag at byte offset {offset}")
        tag = text[i + 1 : j].lower()
        if tag not in _HTML_TAGS:
            raise _parse_error(f'Unsupported start tag "{tag}" at byte offset {offset}')
        attributes, i = _html_attributes(text, j, tag, offset)
        if tag == "span" and attributes.get("class") != "tg-spoiler":
            raise _parse_error(f'Tag "span" must have class "tg-spoiler" at byte offset {offset}')
        stack.append((tag, out.pos, attributes, offset))
    if stack:
        raise _parse_error(f'Can\'t find end tag corresponding to start tag "{stack[-1][0]}"')
    return out.text(), entities


_MDV2_RESERVED = frozenset("_*[]()~`>#+-=|{}.!")
_MDV2_NAMES = {
    "bold": "Bold",
    "italic": "Italic",
    "underline": "Underline",
    "strikethrough": "Strikethrough",
    "spoiler": "Spoiler",
    "code": "Code",
    "pre": "Pre",
    "text_link": "TextUrl",
}
_PRE_LANGUAGE_RE = re.compile(r"([^\s`]*)\n")


def parse_markdown_v2(text: str) -> tuple[str, list[JSONDict]]:
    """Telegram's MarkdownV2 parse mode: the plain text and its entities, or a 400 BotAPIError."""
    out = _Text()
    entities: list[JSONDict] = []
    stack: list[tuple[str, int, int, str]] = []  # (type, start, byte offset, pre language)
    quote_start: int | None = None
    quote_end = 0
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        top = stack[-1][0] if stack else None
        if top in ("code", "pre"):
            if c == "\\" and i + 1 < n and text[i + 1] in "`\\":
                out.add(text[i + 1])
                i += 2
            elif (top == "pre" and text.startswith("```", i)) or (top == "code" and c == "`"):
                kind, start, _, language = stack.pop()
                if out.pos > start:
                    entity: JSONDict = {"type": kind, "offset": start, "length": out.pos - start}
                    if language:
                        entity["language"] = language
                    entities.append(entity)
                i += 3 if kind == "pre" else 1
            else:
                out.add(c)
                i += 1
            continue
        if i == 0 or text[i - 1] == "\n":
            if c == ">":
                if quote_start is None:
                    quote_start = out.pos
                i += 1
                continue
            if quote_start is not None:
                if quote_end > quote_start:
                    entities.append(
                        {"type": "blockquote", "offset": quote_start, "length": quote_end - quote_start}
                    )
                quote_start = None
        if c == "\n" and quote_start is not None:
            quote_end = out.pos
        if c == "\\" and i + 1 < n and 0 < ord(text[i + 1]) <= 126:
            out.add(text[i + 1])
            i += 2
            continue
        if c not in _MDV2_RESERVED:
            out.add(c)
            i += 1
            continue
        following = text[i + 1] if i + 1 < n else ""
        closes = {
            "bold": c == "*",
            "italic": c == "_" and following != "_",
            "underline": c == "_" and following == "_",
            "strikethrough": c == "~",
            "spoiler": c == "|" and following == "|",
            "text_link": c == "]",
        }.get(top or "", False)
        if closes:
            kind, start, _, _ = stack.pop()
            i += 2 if kind in ("underline", "spoiler") else 1
            if kind == "text_link":
                url = ""
                if i < n and text[i] == "(":
                    j, chars = i + 1, []
                    while j < n and text[j] != ")":
                        if text[j] == "\\" and j + 1 < n:
                            j += 1
                        chars.append(text[j])
                        j += 1
                    if j >= n:
                        raise _parse_error(f"Can't find end of a URL at byte offset {_byte_offset(text, i)}")
                    url, i = "".join(chars), j + 1
                if url and out.pos > start:
                    entities.append(
                        {"type": "text_link", "offset": start, "length": out.pos - start, "url": url}
                    )
            elif out.pos > start:
                entities.append({"type": kind, "offset": start, "length": out.pos - start})
            continue
        offset = _byte_offset(text, i)
        if c == "_":
            kind = "underline" if following == "_" else "italic"
        elif c == "*":
            kind = "bold"
        elif c == "~":
            kind = "strikethrough"
        elif c == "|" and following == "|":
            kind = "spoiler"
        elif c == "[":
            kind = "text_link"
        elif c == "`":
            if text.startswith("```", i):
                i += 3
                first_line = _PRE_LANGUAGE_RE.match(text, i)
                if first_line is not None:
                    i = first_line.end()
                stack.append(("pre", out.pos, offset, first_line.group(1) if first_line else ""))
                continue
            kind = "code"
        else:
            raise _parse_error(f"Character '{c}' is reserved and must be escaped with the preceding '\\'")
        i += 2 if kind in ("underline", "spoiler") else 1
        stack.append((kind, out.pos, offset, ""))
    if quote_start is not None and out.pos > quote_start:
        entities.append({"type": "blockquote", "offset": quote_start, "length": out.pos - quote_start})
    if stack:
        kind, _, offset, _ = stack[-1]
        raise _parse_error(f"Can't find end of {_MDV2_NAMES[kind]} entity at byte offset {offset}")
    return out.text(), entities


def parse_markdown(text: str) -> tuple[str, list[JSONDict]]:
    """Telegram's legacy Markdown parse mode (no nesting, ``\\`` escapes only ``_*`[``)."""
    out = _Text()
    entities: list[JSONDict] = []
    i, n = 0, len(text)
    kinds = {"*": "bold", "_": "italic", "`": "code"}
    while i < n:
        c = text[i]
        if c == "\\" and i + 1 < n and text[i + 1] in "_*`[":
            out.add(text[i + 1])
            i += 2
            continue
        if c not in "_*`[":
            out.add(c)
            i += 1
            continue
        unclosed = _parse_error(
            f"Can't find end of the entity starting at byte offset {_byte_offset(text, i)}"
        )
        start = out.pos
        if c == "[":
            end = text.find("]", i + 1)
            if end < 0:
                raise unclosed
            out.add(text[i + 1 : end])
            i = end + 1
            if i < n and text[i] == "(":
                close = text.find(")", i)
                if close < 0:
                    raise unclosed
                url, i = text[i + 1 : close], close + 1
                if url and out.pos > start:
                    entities.append(
                        {"type": "text_link", "offset": start, "length": out.pos - start, "url": url}
                    )
            continue
        if text.startswith("```", i):
            end = text.find("```", i + 3)
            if end < 0:
                raise unclosed
            body, language = text[i + 3 : end], ""
            first_line = _PRE_LANGUAGE_RE.match(body)
            if first_line is not None and first_line.group(1):
                language, body = first_line.group(1), body[first_line.end() :]
            out.add(body)
            if out.pos > start:
                entity: JSONDict = {"type": "pre", "offset": start, "length": out.pos - start}
                if language:
                    entity["language"] = language
                entities.append(entity)
            i = end + 3
            continue
        end = text.find(c, i + 1)
        if end < 0:
            raise unclosed
        out.add(text[i + 1 : end])
        if out.pos > start:
            entities.append({"type": kinds[c], "offset": start, "length": out.pos - start})
        i = end + 1
    return out.text(), entities


def _trim(text: str, entities: list[JSONDict]) -> tuple[str, list[JSONDict]]:
    """Strip surrounding whitespace like Telegram, moving and clipping the entities."""
    trimmed = text.strip()
    if trimmed == text:
        return text, entities
    shift = _utf16_len(text[: len(text) - len(text.lstrip())])
    size = _utf16_len(trimmed)
    kept = []
    for entity in entities:
        start = max(0, entity["offset"] - shift)
        end = min(size, entity["offset"] + entity["length"] - shift)
        if end > start:
            kept.append({**entity, "offset": start, "length": end - start})
    return trimmed, kept


def _sort_entities(entities: list[JSONDict]) -> list[JSONDict]:
    return sorted(entities, key=lambda e: (e["offset"], -e["length"]))


# ---------------------------------------------------------------------------------------------
# Reply markup
# ---------------------------------------------------------------------------------------------

_BUTTON_KINDS = (
    "callback_data",
    "url",
    "web_app",
    "login_url",
    "switch_inline_query",
    "switch_inline_query_current_chat",
    "switch_inline_query_chosen_chat",
    "copy_text",
    "callback_game",
    "pay",
)
_BUTTON_URL_RE = re.compile(r"(https?|tg)://\S+", re.IGNORECASE)


def check_reply_markup(markup: Any) -> JSONDict | None:
    """Validate a reply_markup like Telegram; returns it (``None`` when absent)."""
    if markup is None or markup == "":
        return None
    if not isinstance(markup, dict):
        raise _bad_request("can't parse reply keyboard markup JSON object")
    if "inline_keyboard" not in markup:
        if not any(key in markup for key in ("keyboard", "remove_keyboard", "force_reply")):
            raise _bad_request("can't parse reply keyboard markup JSON object")
        return markup
    rows = markup["inline_keyboard"]
    if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
        raise _bad_request('field "inline_keyboard" of the InlineKeyboardMarkup must be an Array of Arrays')
    for row in rows:
        for button in row:
            if not isinstance(button, dict) or not isinstance(button.get("text"), str):
                raise _bad_request('can\'t parse inline keyboard button: Field "text" must be of type String')
            kinds = [kind for kind in _BUTTON_KINDS if kind in button]
            if not kinds:
                raise _bad_request(
                    "can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard"
                )
            if len(kinds) > 1:
                raise _bad_request(
                    "can't parse inline keyboard button: only one of the optional fields can be used"
                )
            if "callback_data" in button:
                data = button["callback_data"]
                if not isinstance(data, str) or not 1 <= len(data.encode()) <= MAX_CALLBACK_DATA_BYTES:
                    raise _bad_request("BUTTON_DATA_INVALID")
            if "url" in button and not (
                isinstance(button["url"], str) and _BUTTON_URL_RE.fullmatch(button["url"])
            ):
                raise _bad_request(f"inline keyboard button URL '{button['url']}' is invalid: Wrong HTTP URL")
    return markup


def _inline_only(markup: JSONDict | None) -> JSONDict | None:
    """Only inline keyboards are part of a Message, as in Telegram."""
    return markup if markup is not None and "inline_keyboard" in markup else None


def _callback_data(message: JSONDict) -> list[str]:
    rows = (message.get("reply_markup") or {}).get("inline_keyboard") or []
    return [button["callback_data"] for row in rows for button in row if "callback_data" in button]


# ---------------------------------------------------------------------------------------------
# Parameters
# ---------------------------------------------------------------------------------------------


def _coerce(name: str, value: Any) -> Any:
    """Turn a form field (text) or JSON value into the type Telegram reads for ``name``."""
    if name in _JSON_PARAMS:
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                if name == "reply_markup":
                    raise _bad_request("can't parse reply keyboard markup JSON object") from None
                raise _bad_request(f"can't parse {name} JSON object") from None
        return value
    if name == "chat_id":
        if isinstance(value, str) and _INT_TEXT_RE.fullmatch(value):
            return int(value)
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return value
    if name in _INT_PARAMS:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and _INT_TEXT_RE.fullmatch(value):
            return int(value)
        raise _bad_request(f'field "{name}" must be of type Integer')
    if name in _FLOAT_PARAMS:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise _bad_request(f'field "{name}" must be of type Number') from None
    if name in _BOOL_PARAMS:
        if isinstance(value, bool):
            return value
        if isinstance(value, int | float):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in {"true", "1", "false", "0", ""}:
            return value.strip().lower() in {"true", "1"}
        raise _bad_request(f'field "{name}" must be of type Boolean')
    if name in _TEXT_PARAMS and isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


def _file_descriptor(field: web.FileField) -> JSONDict:
    return {"file_name": field.filename, "content_type": field.content_type, "size": len(field.file.read())}


@dataclass(slots=True)
class _Pending:
    """An update not yet confirmed by getUpdates nor accepted by the webhook."""

    update_id: int
    body: str  # the Update, serialized once when it is created
    queue: int | str  # its chat: webhook deliveries are sequential per chat
    done: bool = False
    in_flight: bool = False


@dataclass(slots=True)
class _Webhook:
    url: str
    secret: str | None
    max_connections: int
    allowed_updates: list[str] | None
    semaphore: asyncio.Semaphore


# ---------------------------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------------------------


class FakeTelegram:
    """A fake Telegram Bot API server plus a user simulation; see the module docstring."""

    def __init__(
        self,
        *,
        token: str = "123456:TEST-TOKEN",  # noqa: S107 - a fake's token
        bot_id: int = 123456,
        bot_username: str = "concierge_test_bot",
        bot_first_name: str = "Concierge",
        privacy_mode: bool = False,
    ) -> None:
        self.token = token
        self.bot_id = bot_id
        self.bot_username = bot_username
        self.privacy_mode = privacy_mode
        self.bot_user: JSONDict = {
            "id": bot_id,
            "is_bot": True,
            "first_name": bot_first_name,
            "username": bot_username,
        }
        self.base_url = ""
        self.port = 0

        # What tests assert on.
        self.calls: list[tuple[str, JSONDict]] = []
        self.sent: list[JSONDict] = []
        self.errors: list[tuple[str, JSONDict, int, str]] = []
        self.answers: dict[str, JSONDict] = {}
        self.webhook_deliveries: list[int] = []

        self._users: dict[int, JSONDict] = {bot_id: self.bot_user}
        self._chats: dict[int, JSONDict] = {}
        self._members: dict[int, dict[int, str]] = {}
        self._blocked: set[int] = set()
        self._messages: dict[tuple[int, int], JSONDict] = {}
        self._last_message_id: dict[int, int] = {}
        self._sent_index: dict[int, int] = {}  # id(record) -> index in self.sent
        self._log: list[JSONDict] = []  # bot messages in the order they were sent/edited/deleted
        self._changed = asyncio.Event()

        self._pending: deque[_Pending] = deque()
        self._pending_count = 0
        self._next_update_id = 1
        self._allowed_updates: frozenset[str] = DEFAULT_UPDATE_TYPES
        self._updates_arrived = asyncio.Event()
        self._poll_generation = 0
        self._closing = False

        self._webhook: _Webhook | None = None
        self._webhook_error: tuple[int, str] | None = None
        self._webhook_chains: dict[int | str, asyncio.Task[None]] = {}
        self._webhook_tasks: set[asyncio.Task[None]] = set()

        self._open_queries: dict[str, JSONDict] = {}
        self._query_ids = itertools.count(4_000_000_000_000_000_001)
        self._file_ids = itertools.count(1)
        self._commands: dict[tuple[str, str], list[JSONDict]] = {}
        self._texts: dict[tuple[str, str], str] = {}
        self._injected: dict[str, deque[BotAPIError]] = {}

        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._methods: dict[str, tuple[str, Callable[[JSONDict], Any]]] = {
            name.lower(): (name, handler)
            for name, handler in {
                "getMe": self._get_me,
                "getUpdates": self._get_updates,
                "setWebhook": self._set_webhook,
                "deleteWebhook": self._delete_webhook,
                "getWebhookInfo": self._get_webhook_info,
                "sendMessage": self._send_message,
                "editMessageText": self._edit_message_text,
                "editMessageReplyMarkup": self._edit_message_reply_markup,
                "deleteMessage": self._delete_message,
                "answerCallbackQuery": self._answer_callback_query,
                "setMyCommands": self._set_my_commands,
                "getMyCommands": self._get_my_commands,
                "deleteMyCommands": self._delete_my_commands,
                "setMyDescription": lambda p: self._set_text("description", p),
                "getMyDescription": lambda p: self._get_text("description", p),
                "setMyShortDescription": lambda p: self._set_text("short_description", p),
                "getMyShortDescription": lambda p: self._get_text("short_description", p),
                "setMyName": lambda p: self._set_text("name", p),
                "getMyName": lambda p: self._get_text("name", p),
                "sendChatAction": self._send_chat_action,
                "getChat": self._get_chat,
                "getChatMember": self._get_chat_member,
                "getChatAdministrators": self._get_chat_administrators,
                "getChatMemberCount": self._get_chat_member_count,
            }.items()
        }

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        site = web.SockSite(self._runner, sock)
        await site.start()
        self.port = sock.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}/bot"
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
        self._closing = False

    async def stop(self) -> None:
        self._closing = True
        self._wake_pollers()
        self._notify()
        tasks = list(self._webhook_tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeTelegram:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # -- user simulation: people and chats --------------------------------------------------

    def user(
        self,
        user_id: int,
        first_name: str,
        *,
        language_code: str | None = "en",
        username: str | None = None,
        last_name: str | None = None,
    ) -> JSONDict:
        """Create (or update) a Telegram user and the private chat with the bot; returns the User."""
        if user_id <= 0 or user_id == self.bot_id:
            raise ValueError(f"user ids are positive and differ from the bot's ({self.bot_id}): {user_id}")
        user: JSONDict = {"id": user_id, "is_bot": False, "first_name": first_name}
        chat: JSONDict = {"id": user_id, "type": "private", "first_name": first_name}
        for key, value in (("last_name", last_name), ("username", username)):
            if value:
                user[key] = chat[key] = value
        if language_code:
            user["language_code"] = language_code
        self._users[user_id] = user
        self._chats[user_id] = chat
        self._members.setdefault(user_id, {})
        return dict(user)

    def group(self, chat_id: int, title: str, *, username: str | None = None) -> JSONDict:
        """Create a group (a supergroup when the id is ≤ -10**12) the bot is a member of; returns the Chat."""
        if chat_id >= 0:
            raise ValueError(f"group chat ids are negative: {chat_id}")
        chat: JSONDict = {
            "id": chat_id,
            "type": "supergroup" if chat_id <= -1_000_000_000_000 else "group",
            "title": title,
        }
        if username:
            chat["username"] = username
        self._chats[chat_id] = chat
        self._members.setdefault(chat_id, {})[self.bot_id] = "member"
        return dict(chat)

    def set_admin(self, chat_id: int, user_id: int, *, status: str = "administrator") -> None:
        """Make a user (or the bot, ``tg.bot_id``) an ``administrator`` or the ``creator`` of a group."""
        if status not in _ADMIN_STATUSES:
            raise ValueError(f"status must be one of {_ADMIN_STATUSES}: {status!r}")
        self.set_member_status(chat_id, user_id, status)

    def set_member_status(self, chat_id: int, user_id: int, status: str) -> None:
        """Set a member's status (creator, administrator, member, restricted, left, kicked)."""
        if status not in _MEMBER_STATUSES:
            raise ValueError(f"unknown chat member status {status!r}")
        if chat_id not in self._chats or user_id not in self._users:
            raise KeyError(f"unknown chat {chat_id} or user {user_id}")
        self._members.setdefault(chat_id, {})[user_id] = status

    def set_blocked(self, user_id: int, blocked: bool = True) -> None:
        """The user blocks (or unblocks) the bot: the bot's sends to them fail with 403."""
        if blocked:
            self._blocked.add(user_id)
        else:
            self._blocked.discard(user_id)

    def inject_error(
        self,
        method: str,
        error_code: int,
        description: str,
        *,
        times: int = 1,
        retry_after: int | None = None,
    ) -> None:
        """Make the next ``times`` calls of ``method`` fail (e.g. 429 "Too Many Requests: retry after 3")."""
        name, _ = self._methods.get(method.lower(), (method, None))
        parameters = {"retry_after": retry_after} if retry_after is not None else None
        queue = self._injected.setdefault(name, deque())
        queue.extend(BotAPIError(error_code, description, parameters) for _ in range(times))

    # -- user simulation: what users do -----------------------------------------------------

    async def send_text(
        self, user: JSONDict, text: str, *, chat: JSONDict | None = None, reply_to: JSONDict | None = None
    ) -> JSONDict:
        """The user sends ``text`` (in the private chat unless ``chat`` is given); returns the Message."""
        content: JSONDict = {"text": text}
        entities = detect_entities(text)
        if entities:
            content["entities"] = entities
        return self._user_message(user, chat, content, reply_to=reply_to)

    async def send_sticker(
        self, user: JSONDict, *, chat: JSONDict | None = None, emoji: str = "👍"
    ) -> JSONDict:
        n = next(self._file_ids)
        sticker = {
            "file_id": f"CAACAgIAAxkBAAI{n:06d}",
            "file_unique_id": f"AgAD{n:06d}",
            "type": "regular",
            "width": 512,
            "height": 512,
            "is_animated": False,
            "is_video": False,
            "emoji": emoji,
            "file_size": 20_000,
        }
        return self._user_message(user, chat, {"sticker": sticker})

    async def send_document(
        self,
        user: JSONDict,
        *,
        file_name: str = "a.pdf",
        chat: JSONDict | None = None,
        caption: str | None = None,
    ) -> JSONDict:
        n = next(self._file_ids)
        document = {
            "file_id": f"BQACAgIAAxkBAAI{n:06d}",
            "file_unique_id": f"AgAD{n:06d}",
            "file_name": file_name,
            "mime_type": mimetypes.guess_type(file_name)[0] or "application/octet-stream",
            "file_size": 1024,
        }
        content: JSONDict = {"document": document}
        if caption:
            content["caption"] = caption
            entities = detect_entities(caption)
            if entities:
                content["caption_entities"] = entities
        return self._user_message(user, chat, content)

    async def send_content(
        self, user: JSONDict, content: JSONDict, *, chat: JSONDict | None = None
    ) -> JSONDict:
        """The user sends a message with arbitrary content fields (``{"location": {...}}``, …)."""
        return self._user_message(user, chat, dict(content))

    async def press(self, user: JSONDict, message: JSONDict, data: str, *, check: bool = True) -> str:
        """The user presses the inline button with ``callback_data == data`` under a bot message.

        ``message`` is a bot Message (e.g. from ``wait_for``); its current state is used.  With
        ``check`` (the default) the button must exist, as a real user can only press what is shown.
        Returns the callback query id (see ``wait_for_answer``).
        """
        chat_id, message_id = message["chat"]["id"], message["message_id"]
        current = self._messages.get((chat_id, message_id))
        if current is None:
            raise ValueError(f"message {message_id} in chat {chat_id} does not exist (deleted?)")
        if check and data not in _callback_data(current):
            raise ValueError(
                f"message {message_id} has no button with callback_data {data!r}: {_callback_data(current)}"
            )
        query_id = str(next(self._query_ids))
        query = {
            "id": query_id,
            "from": self._users.get(user["id"], user),
            "message": self._public(current),
            "chat_instance": str(abs(hash(("chat_instance", chat_id))) % 10**19),
            "data": data,
        }
        self._open_queries[query_id] = query
        self._enqueue("callback_query", query, chat_id)
        return query_id

    async def add_member(self, chat: JSONDict, user: JSONDict, *, by: JSONDict | None = None) -> None:
        """``user`` joins ``chat`` (added by ``by``, default themself): a new_chat_members message.

        When ``user`` is the bot (``tg.bot_user``) a my_chat_member update comes first, as on Telegram.
        """
        group = self._chats[chat["id"]]
        actor = self._users.get((by or user)["id"], by or user)
        member = self._users.get(user["id"], user)
        self._members.setdefault(group["id"], {})[member["id"]] = "member"
        if member["id"] == self.bot_id:
            self._chat_member_update(
                group, actor, {"user": member, "status": "left"}, {"user": member, "status": "member"}
            )
        content = {"new_chat_members": [member], "new_chat_member": member, "new_chat_participant": member}
        self._user_message(actor, group, content, service=True)

    async def remove_member(self, chat: JSONDict, user: JSONDict, *, by: JSONDict | None = None) -> None:
        """``user`` leaves ``chat`` (or is removed by ``by``): a left_chat_member message.

        When ``user`` is the bot it only gets a my_chat_member update (it is no longer in the chat).
        """
        group = self._chats[chat["id"]]
        actor = self._users.get((by or user)["id"], by or user)
        member = self._users.get(user["id"], user)
        kicked = actor["id"] != member["id"]
        old_status = self._members.setdefault(group["id"], {}).get(member["id"], "member")
        self._members[group["id"]][member["id"]] = "kicked" if kicked else "left"
        if member["id"] == self.bot_id:
            new = (
                {"user": member, "status": "kicked", "until_date": 0}
                if kicked
                else {"user": member, "status": "left"}
            )
            self._chat_member_update(group, actor, self._member_object(member, old_status), new)
            return
        content = {"left_chat_member": member, "left_chat_participant": member}
        self._user_message(actor, group, content, service=True)

    # -- what the bot did -------------------------------------------------------------------

    def messages_to(self, chat_id: int) -> list[JSONDict]:
        """The bot's messages in a chat, current state, deleted ones left out."""
        return [m for m in self.sent if m["chat"]["id"] == chat_id and not m["deleted"]]

    def calls_to(self, method: str) -> list[JSONDict]:
        """The parameters of every call of one Bot API method."""
        return [params for name, params in self.calls if name == method]

    @property
    def pending_updates(self) -> int:
        """Updates neither confirmed by getUpdates nor accepted by the webhook."""
        return self._pending_count

    async def wait_for(
        self,
        predicate: Callable[[JSONDict], bool],
        *,
        timeout: float = 10.0,
        since: int = 0,
    ) -> JSONDict:
        """Wait until a bot message (current state, edits applied) satisfies ``predicate``; return it.

        Only messages at index ``since`` or later in ``sent`` are considered (pass ``len(tg.sent)``
        taken before an action to ignore older messages); deleted messages are ignored.  The
        returned dict is live: it keeps following edits.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        for record in self.sent[since:]:
            if not record["deleted"] and predicate(record):
                return record
        seen = len(self._log)
        while True:
            changed = self._changed
            upto = len(self._log)
            for record in self._log[seen:upto]:
                if self._sent_index[id(record)] >= since and not record["deleted"] and predicate(record):
                    return record
            seen = upto
            remaining = deadline - loop.time()
            if remaining <= 0 or self._closing:
                raise TimeoutError(f"no bot message matched within {timeout}s\n{self.describe()}")
            await _wait(changed, remaining)

    async def wait_for_answer(self, callback_query_id: str, *, timeout: float = 10.0) -> JSONDict:
        """Wait for the bot's answerCallbackQuery for a query; returns that call's parameters."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while callback_query_id not in self.answers:
            changed = self._changed
            remaining = deadline - loop.time()
            if remaining <= 0 or self._closing:
                problem = f"callback query {callback_query_id} was not answered within {timeout}s"
                raise TimeoutError(f"{problem}\n{self.describe()}")
            await _wait(changed, remaining)
        return self.answers[callback_query_id]

    async def wait_until(
        self, condition: Callable[[], bool], *, timeout: float = 10.0, what: str = "the condition"
    ) -> None:
        """Wait until ``condition()`` holds; it is checked again after every change of the fake's state
        (a Bot API call, a bot message sent/edited/deleted, an answer, a webhook delivery, a
        confirmation), so it suits conditions on the fake (``len(tg.webhook_deliveries) == 3``)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not condition():
            changed = self._changed
            remaining = deadline - loop.time()
            if remaining <= 0 or self._closing:
                raise TimeoutError(f"{what} did not hold within {timeout}s\n{self.describe()}")
            await _wait(changed, remaining)

    async def wait_until_confirmed(self, *, timeout: float = 10.0) -> None:
        """Wait until every update was confirmed by getUpdates (or accepted by the webhook)."""
        await self.wait_until(lambda: self._pending_count == 0, timeout=timeout, what="no pending updates")

    def describe(self, last: int = 10) -> str:
        """A readable dump of the recent state, for failure messages."""
        lines = [f"bot messages ({len(self.sent)} sent, last {min(last, len(self.sent))}):"]
        for index in range(max(0, len(self.sent) - last), len(self.sent)):
            record = self.sent[index]
            flags = (f" edits={record['edits']}" if record["edits"] else "") + (
                " DELETED" if record["deleted"] else ""
            )
            buttons = [
                f"{button['text']}={button.get('callback_data', button.get('url', '?'))}"
                for row in (record.get("reply_markup") or {}).get("inline_keyboard", [])
                for button in row
            ]
            where = f"chat={record['chat']['id']} id={record['message_id']}"
            lines.append(
                f"  [{index}] {where}{flags}: {record.get('text')!r}"
                + (f" buttons={buttons}" if buttons else "")
            )
        if self.errors:
            lines.append(f"Bot API errors ({len(self.errors)}, last 5):")
            lines.extend(
                f"  {method}: {code} {description}" for method, _, code, description in self.errors[-5:]
            )
        polls = [params for name, params in self.calls[-200:] if name == "getUpdates"]
        webhook = self._webhook.url if self._webhook else "none"
        lines.append(
            f"updates pending: {self._pending_count}; webhook: {webhook}; "
            f"getUpdates calls among the last 200 calls: {len(polls)}; calls in all: {len(self.calls)}"
        )
        return "\n".join(lines)

    # -- internals: state ---------------------------------------------------------------------

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _wake_pollers(self) -> None:
        self._updates_arrived.set()
        self._updates_arrived = asyncio.Event()

    @staticmethod
    def _public(message: JSONDict) -> JSONDict:
        return {key: value for key, value in message.items() if key not in _PRIVATE_KEYS}

    def _reply_snapshot(self, message: JSONDict) -> JSONDict:
        return {k: v for k, v in message.items() if k not in _PRIVATE_KEYS and k != "reply_to_message"}

    def _new_message(self, chat: JSONDict, sender: JSONDict, content: JSONDict) -> JSONDict:
        chat_id = chat["id"]
        message_id = self._last_message_id.get(chat_id, 0) + 1
        self._last_message_id[chat_id] = message_id
        message = {"message_id": message_id, "from": sender, "chat": chat, "date": _now(), **content}
        self._messages[(chat_id, message_id)] = message
        return message

    def _chat_of(self, user: JSONDict, chat: JSONDict | None) -> JSONDict:
        chat_id = user["id"] if chat is None else chat["id"]
        if chat_id not in self._chats:
            raise KeyError(f"unknown chat {chat_id}: create it with tg.user() or tg.group() first")
        return self._chats[chat_id]

    def _user_message(
        self,
        user: JSONDict,
        chat: JSONDict | None,
        content: JSONDict,
        *,
        reply_to: JSONDict | None = None,
        service: bool = False,
    ) -> JSONDict:
        sender = self._users.get(user["id"])
        if sender is None:
            raise KeyError(f"unknown user {user['id']}: create it with tg.user() first")
        target = self._chat_of(user, chat)
        if target["type"] == "private":
            self._blocked.discard(sender["id"])  # writing to the bot means it is not blocked
        elif not service:
            self._members.setdefault(target["id"], {}).setdefault(sender["id"], "member")
        if reply_to is not None:
            replied = self._messages.get((target["id"], reply_to["message_id"]))
            if replied is None:
                raise ValueError(f"message {reply_to['message_id']} does not exist in chat {target['id']}")
            content["reply_to_message"] = self._reply_snapshot(replied)
        message = self._new_message(target, sender, content)
        if self._bot_sees(target, message, service):
            self._enqueue("message", message, target["id"])
        return dict(message)

    def _bot_sees(self, chat: JSONDict, message: JSONDict, service: bool) -> bool:
        if chat["type"] == "private":
            return True
        if self._members.get(chat["id"], {}).get(self.bot_id, "member") not in _PRESENT_STATUSES:
            return False
        if not self.privacy_mode or service:
            return True
        if self._members[chat["id"]].get(self.bot_id) in _ADMIN_STATUSES:
            return True
        replied = message.get("reply_to_message")
        if replied is not None and replied["from"]["id"] == self.bot_id:
            return True
        entities = message.get("entities") or []
        if entities and entities[0]["type"] == "bot_command" and entities[0]["offset"] == 0:
            command = message["text"][: entities[0]["length"]]
            return "@" not in command or command.split("@", 1)[1].lower() == self.bot_username.lower()
        return False

    def _chat_member_update(self, chat: JSONDict, actor: JSONDict, old: JSONDict, new: JSONDict) -> None:
        update = {"chat": chat, "from": actor, "date": _now(), "old_chat_member": old, "new_chat_member": new}
        self._enqueue("my_chat_member", update, chat["id"])

    def _enqueue(self, kind: str, payload: JSONDict, queue: int | str) -> int | None:
        """Create an update (serialized now, so later edits don't change it); None if not allowed."""
        if kind not in self._allowed_updates:
            return None
        update_id = self._next_update_id
        self._next_update_id += 1
        entry = _Pending(update_id, _dumps({"update_id": update_id, kind: payload}), queue)
        self._pending.append(entry)
        self._pending_count += 1
        self._wake_pollers()
        if self._webhook is not None:
            self._schedule_delivery(entry, self._webhook)
        return update_id

    def _drop_front(self) -> None:
        while self._pending and self._pending[0].done:
            self._pending.popleft()

    def _confirm(self, offset: int) -> None:
        if offset < 0:
            keep = -offset
            while self._pending_count > keep:
                entry = self._pending.popleft()
                if not entry.done:
                    entry.done = True
                    self._pending_count -= 1
        else:
            while self._pending and (self._pending[0].update_id < offset or self._pending[0].done):
                entry = self._pending.popleft()
                if not entry.done:
                    entry.done = True
                    self._pending_count -= 1
        self._drop_front()
        self._notify()

    def _clear_pending(self) -> None:
        for entry in self._pending:
            entry.done = True
        self._pending.clear()
        self._pending_count = 0
        self._notify()

    def _set_allowed_updates(self, allowed: Any) -> None:
        if allowed is None:
            return
        if not isinstance(allowed, list) or not all(isinstance(kind, str) for kind in allowed):
            raise _bad_request("can't parse allowed updates JSON object")
        self._allowed_updates = frozenset(allowed) if allowed else DEFAULT_UPDATE_TYPES

    # -- internals: webhook delivery --------------------------------------------------------

    def _schedule_delivery(self, entry: _Pending, hook: _Webhook) -> None:
        entry.in_flight = True
        previous = self._webhook_chains.get(entry.queue)
        task = asyncio.get_running_loop().create_task(self._deliver(entry, previous, hook))
        self._webhook_chains[entry.queue] = task
        self._webhook_tasks.add(task)

        def finished(done: asyncio.Task[None], queue: int | str = entry.queue) -> None:
            self._webhook_tasks.discard(done)
            if self._webhook_chains.get(queue) is done:
                del self._webhook_chains[queue]

        task.add_done_callback(finished)

    async def _deliver(self, entry: _Pending, previous: asyncio.Task[None] | None, hook: _Webhook) -> None:
        if previous is not None:
            await asyncio.wait([previous])
        try:
            if entry.done or self._session is None:
                return
            headers = {"Content-Type": "application/json"}
            if hook.secret:
                headers[SECRET_HEADER] = hook.secret
            async with hook.semaphore:
                try:
                    async with self._session.post(
                        hook.url, data=entry.body.encode(), headers=headers
                    ) as response:
                        status, reason = response.status, response.reason or ""
                        await response.read()
                except (aiohttp.ClientError, TimeoutError) as exc:
                    status, reason = 0, f"Connection failed: {exc or type(exc).__name__}"
            self.webhook_deliveries.append(status)
            if 200 <= status < 300:
                if not entry.done:
                    entry.done = True
                    self._pending_count -= 1
                    self._drop_front()
            else:
                message = reason if status == 0 else f"Wrong response from the webhook: {status} {reason}"
                self._webhook_error = (_now(), message)
            self._notify()
        finally:
            entry.in_flight = False

    # -- internals: HTTP --------------------------------------------------------------------

    @staticmethod
    def _error_response(code: int, description: str, parameters: JSONDict | None = None) -> web.Response:
        payload: JSONDict = {"ok": False, "error_code": code, "description": description}
        if parameters:
            payload["parameters"] = parameters
        return web.Response(body=_dumps(payload).encode(), status=code, content_type="application/json")

    async def _read_params(self, request: web.Request) -> JSONDict:
        params: JSONDict = dict(request.query)
        if request.method != "POST" or not request.body_exists:
            return params
        if request.content_type == "application/json":
            try:
                body = json.loads(await request.read() or b"{}")
            except ValueError:
                raise _bad_request("can't parse JSON object") from None
            if not isinstance(body, dict):
                raise _bad_request("JSON object expected")
            params.update(body)
            return params
        form = await request.post()
        for key, value in form.items():
            params[key] = _file_descriptor(value) if isinstance(value, web.FileField) else value
        return params

    async def _handle(self, request: web.Request) -> web.Response:
        token, name = request.match_info["token"], request.match_info["method"]
        if token != self.token:
            if _TOKEN_RE.fullmatch(token):
                return self._error_response(401, "Unauthorized")
            return self._error_response(404, "Not Found")
        method = self._methods.get(name.lower())
        try:
            raw = await self._read_params(request)
        except BotAPIError as exc:
            return self._error_response(exc.error_code, exc.description)
        params: JSONDict = {}
        problem: BotAPIError | None = None
        for key, value in raw.items():
            try:
                params[key] = _coerce(key, value)
            except BotAPIError as exc:
                params[key] = value
                problem = problem or exc
        canonical = method[0] if method else name
        if method is None and name.lower() not in _KNOWN_METHODS:
            return self._error_response(404, "Not Found")
        self.calls.append((canonical, params))
        self._notify()
        try:
            if method is None:
                raise _bad_request(f"method {name} is not emulated by FakeTelegram")
            if problem is not None:
                raise problem
            injected = self._injected.get(canonical)
            if injected:
                raise injected.popleft()
            result = method[1](params)
            if inspect.isawaitable(result):
                result = await result
        except BotAPIError as exc:
            if request.transport is not None and not request.transport.is_closing():
                # (an abandoned long poll terminated by the next one is no error of the bot's)
                self.errors.append((canonical, params, exc.error_code, exc.description))
                self._notify()
            return self._error_response(exc.error_code, exc.description, exc.parameters)
        if canonical == "getUpdates":  # already serialized updates
            body = '{"ok":true,"result":[' + ",".join(result) + "]}"
        else:
            body = _dumps({"ok": True, "result": result})
        return web.Response(body=body.encode(), content_type="application/json")

    # -- internals: Bot API methods ---------------------------------------------------------

    def _get_me(self, params: JSONDict) -> JSONDict:
        return {
            **self.bot_user,
            "can_join_groups": True,
            "can_read_all_group_messages": not self.privacy_mode,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    async def _get_updates(self, params: JSONDict) -> list[str]:
        if self._webhook is not None:
            raise BotAPIError(409, WEBHOOK_ACTIVE)
        self._poll_generation += 1
        generation = self._poll_generation
        self._wake_pollers()  # an older long poll still waiting is terminated (409)
        offset = params.get("offset")
        limit = params.get("limit") or 100
        limit = min(max(limit, 1), 100)
        timeout = max(params.get("timeout") or 0.0, 0.0)
        self._set_allowed_updates(params.get("allowed_updates"))
        if offset:
            self._confirm(offset)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            arrived = self._updates_arrived
            if generation != self._poll_generation:
                raise BotAPIError(409, TERMINATED_BY_OTHER_POLL)
            if self._webhook is not None:
                raise BotAPIError(409, "Conflict: terminated by setWebhook request")
            batch = list(itertools.islice((e.body for e in self._pending if not e.done), limit))
            remaining = deadline - loop.time()
            if batch or remaining <= 0 or self._closing:
                return batch
            await _wait(arrived, remaining)

    def _set_webhook(self, params: JSONDict) -> bool:
        url = params.get("url") or ""
        if not url:
            return self._delete_webhook(params)
        if not isinstance(url, str) or not re.fullmatch(r"https?://[^\s/]+(/\S*)?", url):
            raise _bad_request("bad webhook: invalid webhook URL specified")
        secret = params.get("secret_token") or None
        if secret is not None and not _SECRET_RE.fullmatch(secret):
            raise _bad_request("secret token contains unallowed characters")
        max_connections = params.get("max_connections") or 40
        if not 1 <= max_connections <= 100:
            raise _bad_request("bad webhook: max_connections must be between 1 and 100")
        self._set_allowed_updates(params.get("allowed_updates"))
        if params.get("drop_pending_updates"):
            self._clear_pending()
        self._webhook = _Webhook(
            url, secret, max_connections, params.get("allowed_updates"), asyncio.Semaphore(max_connections)
        )
        self._webhook_error = None
        self._wake_pollers()
        for entry in list(self._pending):
            if not entry.done and not entry.in_flight:
                self._schedule_delivery(entry, self._webhook)
        return True

    def _delete_webhook(self, params: JSONDict) -> bool:
        self._webhook = None
        self._webhook_error = None
        if params.get("drop_pending_updates"):
            self._clear_pending()
        return True

    def _get_webhook_info(self, params: JSONDict) -> JSONDict:
        info: JSONDict = {
            "url": "",
            "has_custom_certificate": False,
            "pending_update_count": self._pending_count,
        }
        hook = self._webhook
        if hook is not None:
            info.update(url=hook.url, max_connections=hook.max_connections, ip_address="127.0.0.1")
            if hook.allowed_updates:
                info["allowed_updates"] = hook.allowed_updates
            if self._webhook_error is not None:
                info["last_error_date"], info["last_error_message"] = self._webhook_error
        return info

    def _chat_for(self, params: JSONDict) -> JSONDict:
        chat_id = params.get("chat_id")
        if chat_id is None or chat_id == "":
            raise _bad_request("chat_id is empty")
        if isinstance(chat_id, str):
            username = chat_id.removeprefix("@").lower()
            for candidate in self._chats.values():
                if candidate.get("username", "").lower() == username and candidate["type"] != "private":
                    return candidate
            raise _bad_request("chat not found")
        chat = self._chats.get(chat_id)
        if chat is None:
            raise _bad_request("chat not found")
        return chat

    def _check_can_send(self, chat: JSONDict) -> None:
        if chat["type"] == "private":
            if chat["id"] in self._blocked:
                raise BotAPIError(403, "Forbidden: bot was blocked by the user")
            return
        status = self._members.get(chat["id"], {}).get(self.bot_id, "member")
        kind = "supergroup" if chat["type"] == "supergroup" else "group"
        if status == "kicked":
            raise BotAPIError(403, f"Forbidden: bot was kicked from the {kind} chat")
        if status == "left":
            raise BotAPIError(403, f"Forbidden: bot is not a member of the {kind} chat")

    def _formatted_text(self, params: JSONDict) -> tuple[str, list[JSONDict]]:
        text = params.get("text")
        if not isinstance(text, str) or not text.strip():
            raise _bad_request("message text is empty")
        entities = params.get("entities")
        parse_mode = (params.get("parse_mode") or "").lower()
        if entities:
            if not isinstance(entities, list):
                raise _bad_request("can't parse entities JSON object")
        elif parse_mode == "html":
            text, entities = parse_html(text)
        elif parse_mode == "markdownv2":
            text, entities = parse_markdown_v2(text)
        elif parse_mode == "markdown":
            text, entities = parse_markdown(text)
        elif parse_mode:
            raise _bad_request(f"unsupported parse_mode {params['parse_mode']}")
        else:
            entities = []
        text, entities = _trim(text, entities)
        if not text:
            raise _bad_request("message text is empty")
        if len(text) > MAX_TEXT_LENGTH:
            raise _bad_request("message is too long")
        return text, _sort_entities(entities + detect_entities(text, skip=entities))

    def _reply_target(self, chat: JSONDict, params: JSONDict) -> JSONDict | None:
        reply = params.get("reply_parameters")
        if reply is None and params.get("reply_to_message_id"):
            reply = {
                "message_id": params["reply_to_message_id"],
                "allow_sending_without_reply": params.get("allow_sending_without_reply", False),
            }
        if not reply:
            return None
        if not isinstance(reply, dict) or not isinstance(reply.get("message_id"), int):
            raise _bad_request("can't parse reply parameters JSON object")
        target_chat = self._chat_for({"chat_id": reply["chat_id"]}) if "chat_id" in reply else chat
        replied = self._messages.get((target_chat["id"], reply["message_id"]))
        if replied is None:
            if reply.get("allow_sending_without_reply"):
                return None
            raise _bad_request("message to be replied not found")
        return replied

    def _send_message(self, params: JSONDict) -> JSONDict:
        chat = self._chat_for(params)
        text, entities = self._formatted_text(params)
        markup = check_reply_markup(params.get("reply_markup"))
        replied = self._reply_target(chat, params)
        self._check_can_send(chat)
        content: JSONDict = {"text": text}
        if entities:
            content["entities"] = entities
        if params.get("link_preview_options"):
            content["link_preview_options"] = params["link_preview_options"]
        if replied is not None:
            content["reply_to_message"] = self._reply_snapshot(replied)
        if _inline_only(markup) is not None:
            content["reply_markup"] = markup
        record = self._new_message(chat, self.bot_user, content)
        record["edits"] = 0
        record["deleted"] = False
        self._sent_index[id(record)] = len(self.sent)
        self.sent.append(record)
        self._log.append(record)
        self._notify()
        return self._public(record)

    def _editable(self, params: JSONDict) -> JSONDict:
        if params.get("inline_message_id"):
            raise _bad_request("inline messages are not emulated by FakeTelegram")
        chat = self._chat_for(params)
        message_id = params.get("message_id")
        if message_id is None:
            raise _bad_request("message identifier is not specified")
        message = self._messages.get((chat["id"], message_id))
        if message is None:
            raise _bad_request("message to edit not found")
        if message["from"]["id"] != self.bot_id:
            raise _bad_request("message can't be edited")
        return message

    def _edited(self, message: JSONDict) -> JSONDict:
        message["edit_date"] = _now()
        message["edits"] += 1
        self._log.append(message)
        self._notify()
        return self._public(message)

    def _edit_message_text(self, params: JSONDict) -> JSONDict:
        message = self._editable(params)
        text, entities = self._formatted_text(params)
        markup = _inline_only(check_reply_markup(params.get("reply_markup")))
        if "text" not in message:
            raise _bad_request("there is no text in the message to edit")
        if (
            text == message["text"]
            and entities == message.get("entities", [])
            and markup == message.get("reply_markup")
        ):
            raise _bad_request(NOT_MODIFIED.removeprefix("Bad Request: "))
        message["text"] = text
        for key, value in (("entities", entities), ("reply_markup", markup)):
            if value:
                message[key] = value
            else:
                message.pop(key, None)
        return self._edited(message)

    def _edit_message_reply_markup(self, params: JSONDict) -> JSONDict:
        message = self._editable(params)
        markup = _inline_only(check_reply_markup(params.get("reply_markup")))
        if markup == message.get("reply_markup"):
            raise _bad_request(NOT_MODIFIED.removeprefix("Bad Request: "))
        if markup:
            message["reply_markup"] = markup
        else:
            message.pop("reply_markup", None)
        return self._edited(message)

    def _delete_message(self, params: JSONDict) -> bool:
        chat = self._chat_for(params)
        message_id = params.get("message_id")
        if message_id is None:
            raise _bad_request("message identifier is not specified")
        message = self._messages.get((chat["id"], message_id))
        if message is None:
            raise _bad_request("message to delete not found")
        bot_is_admin = self._members.get(chat["id"], {}).get(self.bot_id) in _ADMIN_STATUSES
        if message["from"]["id"] != self.bot_id and chat["type"] != "private" and not bot_is_admin:
            raise _bad_request("message can't be deleted")
        del self._messages[(chat["id"], message_id)]
        if "deleted" in message:
            message["deleted"] = True
            self._log.append(message)
            self._notify()
        return True

    def _answer_callback_query(self, params: JSONDict) -> bool:
        query_id = params.get("callback_query_id")
        if not query_id:
            raise _bad_request("QUERY_ID_INVALID")
        text = params.get("text")
        if text is not None and len(text) > 200:
            raise _bad_request("MESSAGE_TOO_LONG")
        if self._open_queries.pop(query_id, None) is None:
            raise BotAPIError(400, QUERY_INVALID)
        self.answers[query_id] = params
        self._notify()
        return True

    @staticmethod
    def _command_key(params: JSONDict) -> tuple[str, str]:
        scope = params.get("scope") or {"type": "default"}
        if not isinstance(scope, dict) or "type" not in scope:
            raise _bad_request("can't parse BotCommandScope JSON object")
        return _dumps(dict(sorted(scope.items()))), params.get("language_code") or ""

    def _set_my_commands(self, params: JSONDict) -> bool:
        commands = params.get("commands")
        if not isinstance(commands, list):
            raise _bad_request("can't parse commands JSON object")
        if len(commands) > 100:
            raise _bad_request("too many commands")
        cleaned = []
        for command in commands:
            if not isinstance(command, dict) or not isinstance(command.get("command"), str):
                raise _bad_request("can't parse BotCommand JSON object")
            if not _COMMAND_RE.fullmatch(command["command"]):
                raise _bad_request("BOT_COMMAND_INVALID")
            description = command.get("description")
            if not isinstance(description, str) or not 1 <= len(description) <= 256:
                raise _bad_request(
                    "command description is empty" if not description else "BOT_COMMAND_DESCRIPTION_INVALID"
                )
            cleaned.append({"command": command["command"], "description": description})
        self._commands[self._command_key(params)] = cleaned
        return True

    def _get_my_commands(self, params: JSONDict) -> list[JSONDict]:
        return list(self._commands.get(self._command_key(params), []))

    def _delete_my_commands(self, params: JSONDict) -> bool:
        self._commands.pop(self._command_key(params), None)
        return True

    def _set_text(self, field: str, params: JSONDict) -> bool:
        limits = {"description": 512, "short_description": 120, "name": 64}
        value = params.get(field) or ""
        if len(value) > limits[field]:
            raise _bad_request(f"{field} is too long")
        self._texts[(field, params.get("language_code") or "")] = value
        return True

    def _get_text(self, field: str, params: JSONDict) -> JSONDict:
        default = self.bot_user["first_name"] if field == "name" else ""
        return {field: self._texts.get((field, params.get("language_code") or ""), default)}

    def _send_chat_action(self, params: JSONDict) -> bool:
        chat = self._chat_for(params)
        if params.get("action") not in CHAT_ACTIONS:
            raise _bad_request("wrong parameter action in request")
        self._check_can_send(chat)
        return True

    def _get_chat(self, params: JSONDict) -> JSONDict:
        chat = self._chat_for(params)
        info: JSONDict = {
            **chat,
            "accent_color_id": 0,
            "max_reaction_count": 11,
            "accepted_gift_types": {
                "unlimited_gifts": False,
                "limited_gifts": False,
                "unique_gifts": False,
                "premium_subscription": False,
                "gifts_from_channels": False,
            },
        }
        if chat["type"] != "private":
            info["permissions"] = {"can_send_messages": True, "can_invite_users": True}
        return info

    def _member_object(self, user: JSONDict, status: str) -> JSONDict:
        member: JSONDict = {"user": user, "status": status}
        if status == "creator":
            member["is_anonymous"] = False
        elif status == "administrator":
            member.update(
                can_be_edited=False,
                is_anonymous=False,
                can_manage_chat=True,
                can_delete_messages=True,
                can_manage_video_chats=True,
                can_restrict_members=True,
                can_promote_members=False,
                can_change_info=True,
                can_invite_users=True,
                can_post_stories=True,
                can_edit_stories=True,
                can_delete_stories=True,
                can_pin_messages=True,
                can_manage_topics=False,
            )
        elif status == "restricted":
            member.update(
                {
                    "is_member": True,
                    "until_date": 0,
                    **dict.fromkeys(
                        (
                            "can_change_info",
                            "can_invite_users",
                            "can_pin_messages",
                            "can_send_messages",
                            "can_send_polls",
                            "can_send_other_messages",
                            "can_add_web_page_previews",
                            "can_manage_topics",
                            "can_send_audios",
                            "can_send_documents",
                            "can_send_photos",
                            "can_send_videos",
                            "can_send_video_notes",
                            "can_send_voice_notes",
                            "can_edit_tag",
                        ),
                        False,
                    ),
                }
            )
        elif status == "kicked":
            member["until_date"] = 0
        return member

    def _get_chat_member(self, params: JSONDict) -> JSONDict:
        chat = self._chat_for(params)
        user_id = params.get("user_id")
        if not isinstance(user_id, int) or user_id not in self._users:
            raise _bad_request("user not found")
        user = self._users[user_id]
        if chat["type"] == "private":
            if user_id not in (chat["id"], self.bot_id):
                raise _bad_request("user not found")
            return self._member_object(user, "member")
        return self._member_object(user, self._members.get(chat["id"], {}).get(user_id, "member"))

    def _get_chat_administrators(self, params: JSONDict) -> list[JSONDict]:
        chat = self._chat_for(params)
        if chat["type"] == "private":
            raise _bad_request("there are no administrators in the private chat")
        members = self._members.get(chat["id"], {})
        ordered = sorted(
            ((user_id, status) for user_id, status in members.items() if status in _ADMIN_STATUSES),
            key=lambda item: _ADMIN_STATUSES.index(item[1]),
        )
        return [self._member_object(self._users[user_id], status) for user_id, status in ordered]

    def _get_chat_member_count(self, params: JSONDict) -> int:
        chat = self._chat_for(params)
        if chat["type"] == "private":
            return 2
        return sum(status in _PRESENT_STATUSES for status in self._members.get(chat["id"], {}).values())
